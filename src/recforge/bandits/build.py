"""Build environments and policies by registry name from plain parameter dicts (used by the CLI and benchmarks)."""

from __future__ import annotations

from typing import Any

from recforge.config import from_dict
from recforge.errors import ConfigError
from recforge.registry import resolve


def make_env(name: str, params: dict[str, Any] | None = None) -> Any:
    """Environment ``name`` (``recforge.registry.ENVIRONMENTS``) with its config built strictly from ``params``."""
    env_cls = resolve("environment", name)
    return env_cls(from_dict(env_cls.config_class, params or {}))


def make_policy(name: str, env: Any, params: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """Policy ``name`` (``recforge.registry.POLICIES``) sized for ``env``; ``params`` fill its config dataclass.

    "periodic" is planned with the environment's true recovery curves (an oracle), "periodic-ucb" gets its z_max."""
    cls = resolve("policy", name)
    config = from_dict(cls.config_class, params or {})
    kwargs: dict[str, Any] = {"config": config, "seed": seed, "len_list": env.len_list, "dim": env.dim}
    if name in ("periodic", "periodic-ucb"):
        if not hasattr(env, "curves"):
            raise ConfigError(f"policy {name!r} needs the 'recovering' environment")
        kwargs["curves" if name == "periodic" else "z_max"] = env.curves if name == "periodic" else env.config.z_max
    return cls(env.n_actions, **kwargs)
