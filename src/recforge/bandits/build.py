"""Build environments and policies from specs ``{"name": <registry key>, **config fields}`` (the CLI, benchmarks and
run configs spell every registered thing this way; ``recforge.registry.configured`` resolves it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recforge.bandits.env import ActionSpace, SimEnv
from recforge.bandits.policies.base import BanditPolicy
from recforge.registry import configured


def make_env(spec: Mapping[str, Any]) -> SimEnv:
    """The environment ``spec["name"]`` (``recforge.registry.ENVIRONMENTS``) with its config built strictly from the
    other fields, e.g. ``{"name": "contextual", "n_actions": 10}``."""
    cls, config = configured("environment", spec, prefix="env.")
    return cls(config)


def make_policy(spec: Mapping[str, Any], env: SimEnv | ActionSpace, seed: int = 0) -> BanditPolicy:
    """The policy ``spec["name"]`` (``recforge.registry.POLICIES``) with its config from the other fields, sized for
    ``env`` by the policy's own :meth:`~recforge.bandits.policies.base.BanditPolicy.from_env`."""
    cls, config = configured("policy", spec, prefix=f"{spec.get('name', 'policy')}.")
    return cls.from_env(env, config, seed=seed)
