"""Preference learning: reward models (Bradley–Terry, general preference model, multi-objective re-weighting),
their calibration, synthetic preference worlds, and DPO-style alignment of any model with a likelihood over items."""
