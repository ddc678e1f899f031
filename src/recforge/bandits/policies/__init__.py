"""Bandit policies (select / update). Registered by name in ``recforge.registry.POLICIES``."""
