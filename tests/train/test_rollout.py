"""The rollout loop on a planted-truth toy world: a corridor whose goal is at a known end."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.errors import ConfigError
from recforge.train.rollout import (
    Episode,
    ReplayBuffer,
    StepResult,
    Transition,
    discounted_returns,
    play,
    run_rollouts,
)

LENGTH = 5  # cells 0..5; the goal is cell 5 for task "right", cell -5 for task "left"
STEP_COST, GOAL, MAX_STEPS = -0.1, 1.0, 12


class Corridor:
    """Start at 0; action +1 / -1 moves; the goal of the task ("right" or "left") pays GOAL, every other step costs
    STEP_COST; the episode also ends after MAX_STEPS. The agent sees (position, task side)."""

    def reset(self, task: str, rng: np.random.Generator) -> tuple[int, int]:
        self.side = 1 if task == "right" else -1
        self.pos, self.steps = 0, 0
        return self.pos, self.side

    def step(self, action: int) -> StepResult:
        self.pos += action
        self.steps += 1
        if self.pos == self.side * LENGTH:
            return StepResult((self.pos, self.side), GOAL, True, outcome=("goal", self.steps))
        done = self.steps >= MAX_STEPS
        return StepResult((self.pos, self.side), STEP_COST, done, feedback=self.pos, outcome=("timeout", self.steps))


class TabularQ:
    """Epsilon-greedy over Q[(position, side), action]; the memo is the (state, action index) it decided on."""

    def __init__(self, epsilon: float):
        self.q = np.zeros((2 * LENGTH + 1, 2, 2))
        self.epsilon, self.calls = epsilon, []

    def begin(self, state, rng):
        self.rng = rng
        self.calls.append("begin")

    def decide(self, state):
        pos, side = state
        key = (pos + LENGTH, (side + 1) // 2)
        a = int(self.rng.integers(2)) if self.rng.random() < self.epsilon else int(np.argmax(self.q[key]))
        return (-1, 1)[a], (key, a)

    def observe(self, state, action, feedback):
        self.calls.append(("observe", feedback))

    def end(self, state, outcome):
        self.calls.append(("end", outcome[0]))


def test_discounted_returns_hand_table():
    assert np.allclose(discounted_returns([1.0, 0.0, 2.0], 0.5), [1.5, 1.0, 2.0])
    assert discounted_returns([], 0.9).shape == (0,)
    ep = Episode([Transition(None, 1, -0.1, False), Transition(None, 1, 1.0, True)])
    assert np.allclose(ep.returns(1.0), [0.9, 1.0]) and ep.rewards == [-0.1, 1.0] and len(ep) == 2


def test_play_order_and_transitions():
    agent = TabularQ(epsilon=0.0)
    agent.q[:, 1, 1] = 1.0  # always step right on the "right" task: reaches the goal in LENGTH steps
    episode = play(Corridor(), agent, "right", np.random.default_rng(0))
    assert episode.outcome == ("goal", LENGTH)
    assert [t.action for t in episode.transitions] == [1] * LENGTH
    assert episode.rewards == [STEP_COST] * (LENGTH - 1) + [GOAL]
    assert [t.done for t in episode.transitions] == [False] * (LENGTH - 1) + [True]
    # observe after every step but the last, then end
    assert agent.calls == ["begin", *[("observe", p) for p in range(1, LENGTH)], ("end", "goal")]


def test_timeout_and_step_guard():
    agent = TabularQ(epsilon=0.0)  # argmax of zeros: always action index 0 = left, never reaches the right goal
    episode = play(Corridor(), agent, "right", np.random.default_rng(0))
    assert episode.outcome == ("timeout", MAX_STEPS) and len(episode) == MAX_STEPS
    with pytest.raises(RuntimeError, match="did not end within 3 steps"):
        play(Corridor(), agent, "right", np.random.default_rng(0), max_steps=3)


def _train(seed: int) -> tuple[TabularQ, list]:
    """Monte-Carlo Q learning from a replay buffer: the planted truth is 'walk towards the task's side'."""
    agent = TabularQ(epsilon=0.3)
    buffer: ReplayBuffer[tuple[tuple[int, int], int, float]] = ReplayBuffer(500)
    rng = np.random.default_rng(seed)
    tasks = ["right" if t else "left" for t in np.random.default_rng(seed).integers(0, 2, 300)]
    schedule = []

    def before(n: int) -> None:
        agent.epsilon = 0.3 * (1 - n / len(tasks))
        schedule.append(n)

    def update(n: int, task: str, episode: Episode) -> None:
        buffer.extend((t.memo[0], t.memo[1], g) for t, g in zip(episode.transitions, episode.returns(0.95)))
        for key, a, g in buffer.sample(32, rng):
            agent.q[key][a] += 0.1 * (g - agent.q[key][a])

    outcomes = run_rollouts(Corridor(), agent, tasks, lambda n, _: np.random.default_rng([seed, n]), update, before)
    assert schedule == list(range(len(tasks))) and len(outcomes) == len(tasks)
    return agent, outcomes


def test_learns_the_planted_direction():
    agent, outcomes = _train(seed=0)
    assert sum(o[0] == "goal" for o in outcomes[-50:]) >= 45  # late episodes reach the goal
    agent.epsilon = 0.0
    for task in ("right", "left"):
        episode = play(Corridor(), agent, task, np.random.default_rng(1))
        assert episode.outcome == ("goal", LENGTH), task  # the shortest path: every step towards the goal


def test_rollouts_are_reproducible():
    a, out_a = _train(seed=3)
    b, out_b = _train(seed=3)
    assert out_a == out_b and np.array_equal(a.q, b.q)


def test_replay_buffer_is_bounded_and_uniform():
    buf: ReplayBuffer[int] = ReplayBuffer(3)
    buf.extend(range(5))
    buf.add(9)
    assert len(buf) == 3
    draws = buf.sample(3000, np.random.default_rng(0))
    assert set(draws) == {3, 4, 9}
    assert all(abs(draws.count(x) / 3000 - 1 / 3) < 0.04 for x in (3, 4, 9))
    assert buf.sample(5, np.random.default_rng(7)) == buf.sample(5, np.random.default_rng(7))
    with pytest.raises(ConfigError, match="empty"):
        ReplayBuffer(2).sample(1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="capacity"):
        ReplayBuffer(0)
