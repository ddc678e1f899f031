"""The policy contract: batched ``select`` / ``update``.

A policy chooses ``len_list`` distinct actions per round (a slate; ``len_list=1`` is the classic bandit). Both methods work on
a batch of rounds so simulators and replays are vectorised: ``select(context (n, d) or None, n) -> (n, len_list)`` actions,
``update(context, actions (n, len_list), rewards (n, len_list))``. With batches of size 1 this is the fully online protocol;
larger batches are the "batched bandit" setting (parameters are refreshed once per batch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file

from recforge.config import from_dict, to_dict
from recforge.errors import ConfigError, DataError
from recforge.registry import resolve


@dataclass(frozen=True)
class PolicyConfig:
    """A policy with nothing to tune."""


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first. scores: (n, K) -> (n, k)."""
    if k == 1:
        return scores.argmax(axis=1)[:, None]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


class Policy:
    """Base class. Subclasses set ``name`` and ``config_class`` and implement :meth:`select` and :meth:`update`."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = PolicyConfig
    needs_context: ClassVar[bool] = False
    state_arrays: ClassVar[tuple[str, ...]] = ()  # learned arrays written by save()
    state_scalars: ClassVar[tuple[str, ...]] = ("t",)  # learned ints/floats written by save()

    def __init__(self, n_actions: int, dim: int = 0, len_list: int = 1, config: Any = None, seed: int = 0):
        if n_actions < 1:
            raise ConfigError(f"n_actions must be >= 1, got {n_actions}")
        if not 1 <= len_list <= n_actions:
            raise ConfigError(f"len_list must be in [1, n_actions={n_actions}], got {len_list}")
        if self.needs_context and dim < 1:
            raise ConfigError(f"policy {self.name!r} needs contexts (dim >= 1), got dim={dim}")
        self.n_actions, self.dim, self.len_list = int(n_actions), int(dim), int(len_list)
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ConfigError(f"policy {self.name!r} expects a {self.config_class.__name__}, got {type(self.config).__name__}")
        self.rng = np.random.default_rng(seed)
        self.t = 0  # rounds seen by update

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        """Choose actions for n rounds. context: (n, d) or None. Returns (n, len_list) int64, distinct per row."""
        raise NotImplementedError

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from n rounds. actions, rewards: (n, len_list)."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write ``policy.json`` (name, sizes, config, scalars) and ``policy.safetensors`` (learned arrays) into ``path``.
        The random generator's state is not saved: a loaded policy draws from the seed given to :func:`load_policy`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"policy": self.name, "n_actions": self.n_actions, "dim": self.dim, "len_list": self.len_list,
                "config": to_dict(self.config), "scalars": {k: _plain(getattr(self, k)) for k in self.state_scalars}}
        (path / "policy.json").write_text(json.dumps(meta), encoding="utf-8")
        save_file({k: np.ascontiguousarray(getattr(self, k)) for k in self.state_arrays}, str(path / "policy.safetensors"))
        return path

    @classmethod
    def _load_kwargs(cls, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """Extra constructor arguments rebuilt from saved state (e.g. the recovery curves of the periodic oracle)."""
        return {}

    def _after_load(self) -> None:
        """Recompute derived quantities after the saved arrays were restored."""

    def _check_context(self, context: np.ndarray | None, n: int) -> np.ndarray:
        if context is None or context.shape != (n, self.dim):
            got = None if context is None else context.shape
            raise ConfigError(f"policy {self.name!r} needs contexts of shape ({n}, {self.dim}), got {got}")
        return context

    def _ranked(self, scores: np.ndarray) -> np.ndarray:
        return top_k(scores, self.len_list)


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def load_policy(path: str | Path, seed: int = 0) -> Policy:
    """Load a policy written by :meth:`Policy.save` (safetensors + JSON, no pickle)."""

    path = Path(path)
    meta_file, arrays_file = path / "policy.json", path / "policy.safetensors"
    if not meta_file.is_file() or not arrays_file.is_file():
        raise DataError(f"not a saved policy (need policy.json and policy.safetensors): {path}")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        arrays = load_file(str(arrays_file))
        cls = resolve("policy", meta["policy"])
        config = from_dict(cls.config_class, meta["config"])
        scalars = meta["scalars"]
        policy = cls(meta["n_actions"], dim=meta["dim"], len_list=meta["len_list"], config=config, seed=seed,
                     **cls._load_kwargs(scalars, arrays))
    except (KeyError, json.JSONDecodeError, OSError, ValueError) as exc:
        raise DataError(f"corrupt policy artifact in {path}: {exc}") from None
    missing = sorted(set(cls.state_arrays) - set(arrays))
    if missing:
        raise DataError(f"corrupt policy artifact in {path}: missing arrays {missing}")
    for k in cls.state_arrays:
        setattr(policy, k, arrays[k])
    for k in cls.state_scalars:
        setattr(policy, k, scalars[k])
    policy._after_load()
    return policy


class UniformRandom(Policy):
    """Uniformly random slates (the logging policy of the Open Bandit Dataset's "random" campaign)."""

    name = "uniform"

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        return self._ranked(self.rng.random((n, self.n_actions)))

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.t += len(actions)
