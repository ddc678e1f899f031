"""The policy contract: batched ``select`` / ``update`` (``recforge.protocols.Policy``), persisted as an artifact.

A policy chooses ``len_list`` distinct actions per round (a slate; ``len_list=1`` is the classic bandit). Both methods work on
a batch of rounds so simulators and replays are vectorised: ``select(context (n, d) or None, n) -> (n, len_list)`` actions,
``update(context, actions (n, len_list), rewards (n, len_list))``. With batches of size 1 this is the fully online protocol;
larger batches are the "batched bandit" setting (parameters are refreshed once per batch). Actions are indices
0..n_actions-1 into a fixed action set (see ``recforge.data.feedback``); ``action_vocab`` names them when the policy
learned from a logged file.

A saved policy is a ``recforge.artifacts`` artifact of table "policy": its config, sizes, learned scalars and action
vocabulary in ``extra``, its learned arrays as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from recforge.artifacts import load_artifact, save_artifact
from recforge.bandits.env import ActionSpace, SimEnv
from recforge.config import from_dict, to_dict
from recforge.data.vocab import Vocab
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


class BanditPolicy:
    """Base class of the registered policies (a ``recforge.protocols.Policy``). Subclasses set ``name`` and
    ``config_class`` and implement :meth:`select` and :meth:`update`."""

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
        self.action_vocab: Vocab | None = None  # external ids of the actions, when learned from a logged file

    @classmethod
    def from_env(cls, env: SimEnv | ActionSpace, config: Any = None, seed: int = 0) -> Self:
        """A policy sized for ``env`` (a simulator, or the bare action space of a log). A policy that needs more of its
        environment (an oracle's true reward curves) overrides this and says which declared capability it needs."""
        return cls(env.n_actions, dim=env.dim, len_list=env.len_list, config=config, seed=seed)

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        """Choose actions for n rounds. context: (n, d) or None. Returns (n, len_list) int64, distinct per row."""
        raise NotImplementedError

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from n rounds. actions, rewards: (n, len_list)."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the policy as an artifact (table "policy") into directory ``path`` and return ``path``.

        The random generator's state is not saved: a loaded policy draws from the seed given to :func:`load_policy`."""
        extra: dict[str, Any] = {"n_actions": self.n_actions, "dim": self.dim, "len_list": self.len_list,
                                 "scalars": {k: _plain(getattr(self, k)) for k in self.state_scalars}}
        if self.action_vocab is not None:
            extra["action_vocab"] = self.action_vocab.to_json()
        return save_artifact(path, table="policy", name=self.name, config=to_dict(self.config),
                             tensors={k: np.ascontiguousarray(getattr(self, k)) for k in self.state_arrays}, extra=extra)

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


def load_policy(path: str | Path, seed: int = 0) -> BanditPolicy:
    """Load a policy written by :meth:`BanditPolicy.save`, verified: the weights' sha256, the registry name, the
    config, the sizes and every learned array's shape. A missing, corrupt or tampered artifact is a one-line DataError."""
    path = Path(path)
    art = load_artifact(path, table="policy")
    arrays = {k: t.numpy() for k, t in art.tensors.items()}
    try:
        cls = resolve("policy", art.name)
        config = from_dict(cls.config_class, art.config)
        extra = art.extra
        scalars = dict(extra["scalars"])
        policy = cls(int(extra["n_actions"]), dim=int(extra["dim"]), len_list=int(extra["len_list"]), config=config,
                     seed=seed, **cls._load_kwargs(scalars, arrays))
        vocab = Vocab.from_json(extra["action_vocab"]) if "action_vocab" in extra else None
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"corrupt policy artifact in {path}: {exc}") from None
    missing = sorted(set(cls.state_arrays) - set(arrays)) + sorted(set(cls.state_scalars) - set(scalars))
    if missing:
        raise DataError(f"corrupt policy artifact in {path}: missing state {missing}")
    if vocab is not None and len(vocab) != policy.n_actions:
        raise DataError(f"corrupt policy artifact in {path}: {len(vocab)} action ids for n_actions={policy.n_actions}")
    for k in cls.state_arrays:
        fresh = np.asarray(getattr(policy, k))
        saved = arrays[k]
        # arrays that start empty along their first axis grow with the data (per-user histories); the rest are fixed
        fixed = fresh.shape if fresh.shape[:1] != (0,) else (saved.shape[0], *fresh.shape[1:])
        if saved.shape != fixed:
            raise DataError(f"corrupt policy artifact in {path}: {k} has shape {saved.shape}, expected {fixed}")
        setattr(policy, k, saved.astype(fresh.dtype, copy=False))
    for k in cls.state_scalars:
        setattr(policy, k, scalars[k])
    policy.action_vocab = vocab
    policy._after_load()
    return policy


class UniformRandom(BanditPolicy):
    """Uniformly random slates (the logging policy of the Open Bandit Dataset's "random" campaign)."""

    name = "uniform"

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        return self._ranked(self.rng.random((n, self.n_actions)))

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.t += len(actions)
