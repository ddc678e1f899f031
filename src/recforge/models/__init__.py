"""Models: one file each (config dataclass, optional nn.Module, Recommender adapter). See ``recforge.registry``."""
