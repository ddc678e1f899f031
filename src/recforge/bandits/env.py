"""The base of recforge's simulators: a :class:`recforge.protocols.Environment` with the facts its users read declared.

A simulator draws its world (true parameters) once from its config's ``seed`` and keeps a separate random stream
(``rng``) for contexts and reward noise, so independent repetitions in the same world only reseed that stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


class SimEnv:
    """Base class of the registered environments (``recforge.registry.ENVIRONMENTS``).

    Subclasses set ``config_class`` and, in ``__init__``, ``config``, ``n_actions``, ``len_list``, ``dim`` and ``rng``;
    they implement :meth:`contexts` and :meth:`step` (the ``Environment`` protocol)."""

    name: ClassVar[str] = "env"  # the registry key (recforge.registry.ENVIRONMENTS)
    config_class: ClassVar[type]
    #: True when the state changes every round (recovering arms): :func:`~recforge.bandits.simulators.simulate` then
    #: runs round by round whatever batch size it is given.
    sequential: ClassVar[bool] = False

    config: Any
    n_actions: int
    len_list: int
    #: Context dimension d of :meth:`contexts` (0: a context-free world); policies are sized with it.
    dim: int
    #: The stream of contexts and reward noise (the world itself is fixed by the config's seed).
    rng: np.random.Generator

    def contexts(self, n: int) -> np.ndarray | None:
        """The next n rounds' contexts (n, dim), or None for a context-free world."""
        raise NotImplementedError

    def step(self, context: np.ndarray | None, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Actions (n, len_list) -> (rewards (n, len_list), expected rewards (n, len_list), best expected (n,))."""
        raise NotImplementedError

    def reseed(self, seed: int) -> None:
        """Restart the context / noise stream from ``seed``: an independent repetition in the same world."""
        self.rng = np.random.default_rng(seed)


@dataclass(frozen=True)
class ActionSpace:
    """What a policy is sized by, without a simulator behind it (e.g. a logged file replayed offline)."""

    n_actions: int
    dim: int  # context dimension (0: no contexts)
    len_list: int
