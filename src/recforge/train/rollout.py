"""The rollout loop: an agent plays episodes in an environment; transitions are collected for learning.

This is what environment-driven learning shares (conversational policies, future RL agents), next to the supervised
:mod:`recforge.train.trainer`:

- an :class:`EpisodicEnvironment` (a simulator: ``reset(task, rng)`` then ``step(action)`` until done; the environment
  owns the rewards),
- an :class:`Agent` acting in it (``begin``, ``decide``, ``observe``, ``end``): ``decide`` returns the action *and* a
  memo of the decision (its features, the chosen index, ...) that learning keeps in the :class:`Transition`,
- :func:`play`, one episode, and :func:`run_rollouts`, a sequence of episodes with an ``update`` callback after each
  (the learning step: a policy-gradient update, filling a :class:`ReplayBuffer` and sampling from it, ...),
- :func:`discounted_returns` and the :class:`ReplayBuffer` (uniform sampling with a caller-given generator, so
  training is reproducible).

Everything is seeded by the caller: episode ``n`` gets the generator ``rng_of(n, task)``, used first by the environment's
``reset`` and then by the agent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from recforge.errors import ConfigError

S = TypeVar("S")  # the environment's state, as the agent sees it
A = TypeVar("A")  # an action
T = TypeVar("T")  # a task: what one episode is about (e.g. a dialogue's (user, target) pair)
M = TypeVar("M")  # what the replay buffer holds


@dataclass(frozen=True)
class StepResult(Generic[S]):
    """What the environment answers to one action: the new state, the reward, whether the episode ended, and the
    feedback the agent observes (e.g. the user's answer); ``outcome`` summarises a finished episode."""

    state: S
    reward: float
    done: bool
    feedback: Any = None
    outcome: Any = None


class EpisodicEnvironment(Protocol[S, A, T]):
    """A world that plays episodes (a user simulator, a long-term-value simulator)."""

    def reset(self, task: T, rng: np.random.Generator) -> S:
        """Start the episode about ``task``; the environment draws its randomness from ``rng`` first."""
        ...

    def step(self, action: A) -> StepResult[S]:
        """Apply one action."""
        ...


class Agent(Protocol[S, A]):
    """What acts in an environment: a policy, during evaluation or training."""

    def begin(self, state: S, rng: np.random.Generator) -> None:
        """A new episode starts in ``state``; ``rng`` is the episode's generator (after the environment's reset)."""
        ...

    def decide(self, state: S) -> tuple[A, Any]:
        """The action, and a memo of the decision that learning keeps (None when the agent does not learn)."""
        ...

    def observe(self, state: S, action: A, feedback: Any) -> None:
        """After a step that did not end the episode: ``state`` is the new state, ``feedback`` the environment's."""
        ...

    def end(self, state: S, outcome: Any) -> None:
        """The episode ended with ``outcome``."""
        ...


@dataclass(frozen=True)
class Transition:
    """One step: the agent's memo of its decision, the action, the reward and whether the episode ended there."""

    memo: Any
    action: Any
    reward: float
    done: bool


@dataclass
class Episode:
    """A finished episode: its transitions (in order) and the environment's outcome."""

    transitions: list[Transition] = field(default_factory=list)
    outcome: Any = None

    def __len__(self) -> int:
        return len(self.transitions)

    @property
    def rewards(self) -> list[float]:
        return [t.reward for t in self.transitions]

    def returns(self, gamma: float) -> np.ndarray:
        """(T,) discounted return from each step to the end."""
        return discounted_returns(self.rewards, gamma)


def discounted_returns(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """(T,) rewards of one episode -> (T,) float64 discounted return from each step to its end."""
    out, acc = np.zeros(len(rewards)), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def play(env: EpisodicEnvironment[S, A, T], agent: Agent[S, A], task: T, rng: np.random.Generator,
         max_steps: int = 10_000) -> Episode:
    """One episode of ``agent`` in ``env`` about ``task``: reset, then decide/step/observe until the environment says
    done (``max_steps`` guards against an environment that never ends). ``agent.end`` is called with the outcome."""
    state = env.reset(task, rng)
    agent.begin(state, rng)
    episode = Episode()
    for _ in range(max_steps):
        action, memo = agent.decide(state)
        result = env.step(action)
        episode.transitions.append(Transition(memo, action, float(result.reward), result.done))
        state = result.state
        if result.done:
            episode.outcome = result.outcome
            agent.end(state, result.outcome)
            return episode
        agent.observe(state, action, result.feedback)
    raise RuntimeError(f"episode did not end within {max_steps} steps")


def run_rollouts(env: EpisodicEnvironment[S, A, T], agent: Agent[S, A], tasks: Iterable[T],
                 rng_of: Callable[[int, T], np.random.Generator],
                 update: Callable[[int, T, Episode], None] | None = None,
                 before: Callable[[int], None] | None = None) -> list[Any]:
    """Play one episode per task, in order; returns the episodes' outcomes.

    ``before(n)`` runs before episode ``n`` (schedules: exploration rates, phase switches); ``update(n, task, episode)``
    after it (the learning step). Episode ``n`` uses the generator ``rng_of(n, task)``.
    """
    outcomes = []
    for n, task in enumerate(tasks):
        if before is not None:
            before(n)
        episode = play(env, agent, task, rng_of(n, task))
        outcomes.append(episode.outcome)
        if update is not None:
            update(n, task, episode)
    return outcomes


class ReplayBuffer(Generic[M]):
    """A bounded FIFO of experience (transitions, or anything learning stores) with uniform sampling."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ConfigError(f"replay capacity must be >= 1, got {capacity}")
        self._items: deque[M] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: M) -> None:
        self._items.append(item)

    def extend(self, items: Iterable[M]) -> None:
        self._items.extend(items)

    def sample(self, n: int, rng: np.random.Generator) -> list[M]:
        """``n`` items drawn uniformly with replacement (``rng.integers(0, len, n)``)."""
        if not self._items:
            raise ConfigError("cannot sample from an empty replay buffer")
        return [self._items[i] for i in rng.integers(0, len(self._items), n)]
