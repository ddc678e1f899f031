"""Simulators with known ground truth: a contextual bandit, a slate environment (position-based or cascade clicks), and
the :func:`simulate` loop shared with the recovering-reward and user-slate environments.

Every simulator is a :class:`~recforge.bandits.env.SimEnv`, i.e. a ``recforge.protocols.Environment`` (batched like the
policies): ``contexts(n) -> (n, d) or None``; ``step(context, actions (n, L)) -> (rewards (n, L), expected rewards of
the chosen slots (n, L), best expected slate reward (n,))``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from threadpoolctl import threadpool_limits

from recforge.bandits.env import SimEnv
from recforge.bandits.policies.base import BanditPolicy
from recforge.config import check_choices
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError
from recforge.protocols import Policy

logger = logging.getLogger(__name__)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class ContextualConfig:
    n_actions: int = 10
    dim: int = 5
    reward: Literal["linear", "bernoulli"] = "bernoulli"  # linear: Gaussian noise around x.theta_a; bernoulli: click
    noise_std: float = 0.1  # linear rewards only
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_actions < 2:
            raise ConfigError(f"n_actions must be >= 2, got {self.n_actions!r}")
        if self.dim < 1:
            raise ConfigError(f"dim must be >= 1, got {self.dim!r}")
        check_choices(self)
        if self.noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std!r}")


class ContextualBanditEnv(SimEnv):
    """Contexts x ~ N(0, I_d) (plus a constant 1 in the last coordinate); q(x, a) = x.theta_a (linear) or
    sigmoid(x.theta_a) (Bernoulli), theta_a ~ N(0, I/d) drawn once from ``seed``. Ground truth q is exposed for OPE tests."""

    name = "contextual"
    config_class = ContextualConfig

    def __init__(self, config: ContextualConfig | None = None):
        self.config = config or ContextualConfig()
        c = self.config
        self.n_actions, self.dim, self.len_list = c.n_actions, c.dim, 1
        rng = np.random.default_rng(c.seed)
        self.theta = rng.standard_normal((c.n_actions, c.dim)) / np.sqrt(c.dim)
        if c.reward == "bernoulli":
            self.theta[:, -1] -= 1.5  # intercept: click rates around sigmoid(-1.5) ~ 0.18, like a real CTR-ish task
        self.rng = np.random.default_rng(c.seed + 1)

    def contexts(self, n: int) -> np.ndarray:
        x = self.rng.standard_normal((n, self.dim))
        x[:, -1] = 1.0
        return x

    def expected_rewards(self, context: np.ndarray) -> np.ndarray:
        """q(x, a) for all actions: (n, d) -> (n, K)."""
        z = context @ self.theta.T
        return _sigmoid(z) if self.config.reward == "bernoulli" else z

    def step(self, context: np.ndarray | None, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = self.expected_rewards(context)
        a = np.asarray(actions).reshape(len(q), -1)[:, 0]
        qa = q[np.arange(len(q)), a]
        if self.config.reward == "bernoulli":
            r = (self.rng.random(len(q)) < qa).astype(np.float64)
        else:
            r = qa + self.config.noise_std * self.rng.standard_normal(len(q))
        return r[:, None], qa[:, None], q.max(axis=1)

    def softmax_policy(self, beta: float) -> Callable[[np.ndarray], np.ndarray]:
        """Policy x -> softmax(beta * q(x, .)): (n, d) -> (n, K). beta = 0 is uniform, large beta is near-greedy."""
        return lambda x: _softmax(beta * self.expected_rewards(x))

    def log(self, n: int, behaviour: Callable[[np.ndarray], np.ndarray]) -> LoggedFeedback:
        """Log n rounds of the behaviour policy (a function contexts (n, d) -> action probabilities (n, K))."""
        x = self.contexts(n)
        p = behaviour(x)
        cum = p.cumsum(axis=1)
        a = np.minimum((cum < self.rng.random(n)[:, None]).sum(axis=1), self.n_actions - 1)
        r, _, _ = self.step(x, a[:, None])
        return LoggedFeedback(action=a, reward=r[:, 0], pscore=p[np.arange(n), a], n_actions=self.n_actions, context=x)

    def policy_value(self, policy: Callable[[np.ndarray], np.ndarray], n: int = 200_000, seed: int = 12345) -> float:
        """Ground-truth value E_x sum_a pi(a|x) q(x, a) by Monte Carlo over n fresh contexts (independent stream)."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, self.dim))
        x[:, -1] = 1.0
        return float(np.einsum("nk,nk->n", policy(x), self.expected_rewards(x)).mean())


@dataclass(frozen=True)
class SlateConfig:
    n_items: int = 8
    len_list: int = 3
    click_model: Literal["pbm", "cascade"] = "pbm"  # position-based model or cascade (click stops the scan)
    eta: float = 1.0  # position bias of the PBM: P(examine slot k) = 1 / (k + 1)^eta
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_items < 2:
            raise ConfigError(f"n_items must be >= 2, got {self.n_items!r}")
        if not 1 <= self.len_list <= self.n_items:
            raise ConfigError(f"len_list must be in [1, n_items={self.n_items}], got {self.len_list!r}")
        check_choices(self)
        if self.eta < 0:
            raise ConfigError(f"eta must be >= 0, got {self.eta!r}")


class SlateEnv(SimEnv):
    """Context-free slates of ``len_list`` distinct items with item attractiveness a_i ~ U(0.05, 0.5).

    PBM: slot k is clicked with probability b_k a_{s_k}, b_k = 1/(k+1)^eta (position bias, independent slots).
    Cascade: the user scans top-down and clicks the first attractive item, then stops: P(click k) = a_{s_k} prod_{j<k}(1-a_{s_j}).
    The reward of a slate is its number of clicks; its slot rewards are the per-slot clicks.
    """

    name = "slate"
    config_class = SlateConfig

    def __init__(self, config: SlateConfig | None = None):
        self.config = config or SlateConfig()
        c = self.config
        self.n_actions, self.len_list, self.dim = c.n_items, c.len_list, 0
        rng = np.random.default_rng(c.seed)
        self.attractiveness = rng.uniform(0.05, 0.5, c.n_items)
        self.position_bias = 1.0 / (np.arange(c.len_list) + 1.0) ** c.eta
        self.rng = np.random.default_rng(c.seed + 1)
        self._slates: np.ndarray | None = None

    def contexts(self, n: int) -> None:
        return None

    def slot_click_probs(self, slates: np.ndarray) -> np.ndarray:
        """Expected click per slot, (n, L) -> (n, L)."""
        a = self.attractiveness[slates]
        if self.config.click_model == "pbm":
            return a * self.position_bias[None, :]
        survive = np.cumprod(np.concatenate([np.ones((len(a), 1)), 1.0 - a[:, :-1]], axis=1), axis=1)
        return a * survive

    def step(self, context: np.ndarray | None, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        slates = np.asarray(actions).reshape(-1, self.len_list)
        if self.config.click_model == "pbm":
            probs = self.slot_click_probs(slates)
            clicks = (self.rng.random(probs.shape) < probs).astype(np.float64)
        else:
            attractive = self.rng.random(slates.shape) < self.attractiveness[slates]
            first = np.where(attractive.any(axis=1), attractive.argmax(axis=1), -1)
            clicks = (np.arange(self.len_list)[None, :] == first[:, None]).astype(np.float64)
        return clicks, self.slot_click_probs(slates), np.full(len(slates), self.best_value())

    def best_value(self) -> float:
        """Expected clicks of the best slate (most attractive items, best first: optimal for both click models)."""
        best = np.argsort(-self.attractiveness)[: self.len_list]
        return float(self.slot_click_probs(best[None, :]).sum())

    def all_slates(self, max_slates: int = 200_000) -> np.ndarray:
        """Every ordered slate of distinct items, (S, L); S = n!/(n-L)! must not exceed ``max_slates``."""
        if self._slates is None:
            n, k = self.n_actions, self.len_list
            count = int(np.prod(np.arange(n - k + 1, n + 1)))
            if count > max_slates:
                raise ConfigError(f"{count} ordered slates exceed max_slates={max_slates}; use fewer items or slots")
            self._slates = np.array(list(itertools.permutations(range(n), k)), dtype=np.int64)
        return self._slates


@dataclass(frozen=True)
class SlatePolicyProbs:
    """Exact probabilities of a Plackett-Luce slate policy (items drawn without replacement with prob. ~ exp(logit)).

    slate (S,): P(slate); prefix (S, L): P(first k+1 slots); marginal (K, L): P(item i in slot k)."""

    slates: np.ndarray
    slate: np.ndarray
    prefix: np.ndarray
    marginal: np.ndarray

    @classmethod
    def plackett_luce(cls, logits: np.ndarray, slates: np.ndarray) -> SlatePolicyProbs:
        logits = np.asarray(logits, dtype=np.float64)
        w = np.exp(logits - logits.max())
        s_count, length = slates.shape
        step_probs = np.empty((s_count, length))
        remaining = np.full(s_count, w.sum())
        for k in range(length):
            wk = w[slates[:, k]]
            step_probs[:, k] = wk / remaining
            remaining = remaining - wk
        prefix = np.cumprod(step_probs, axis=1)
        marginal = np.zeros((len(w), length))
        for k in range(length):
            marginal[:, k] = np.bincount(slates[:, k], weights=prefix[:, -1], minlength=len(w))
        return cls(slates, prefix[:, -1], prefix, marginal)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Indices into ``slates`` of n sampled slates, (n,)."""
        return rng.choice(len(self.slate), size=n, p=self.slate / self.slate.sum())


def log_slates(env: SlateEnv, behaviour: SlatePolicyProbs, n_slates: int) -> tuple[LoggedFeedback, np.ndarray]:
    """Log n_slates slates of a Plackett-Luce behaviour policy in long format (n_slates * L rows).

    Returns the feedback (pscore = marginal, pscore_slate, pscore_cascade = prefix) and the slate index of every logged
    slate (n_slates,) for looking up evaluation probabilities."""
    idx = behaviour.sample(n_slates, env.rng)
    slates = behaviour.slates[idx]
    clicks, _, _ = env.step(None, slates)
    length = env.len_list
    pos = np.tile(np.arange(length), n_slates)
    actions = slates.ravel()
    fb = LoggedFeedback(
        action=actions,
        reward=clicks.ravel(),
        pscore=behaviour.marginal[actions, pos],
        n_actions=env.n_actions,
        position=pos,
        len_list=length,
        slate_id=np.repeat(np.arange(n_slates), length),
        pscore_slate=np.repeat(behaviour.slate[idx], length),
        pscore_cascade=behaviour.prefix[idx].ravel(),
    )
    return fb, idx


def slate_policy_value(env: SlateEnv, policy: SlatePolicyProbs) -> float:
    """Exact expected clicks per slate: sum over all slates of P(slate) * expected clicks(slate)."""
    return float(policy.slate @ env.slot_click_probs(policy.slates).sum(axis=1))


@dataclass
class SimResult:
    """Per-round curves of a simulation, each (T,): observed reward (summed over slots), expected reward of the chosen
    slate, and the best achievable expected reward. Regret uses expected rewards (no sampling noise)."""

    reward: np.ndarray
    expected: np.ndarray
    best: np.ndarray
    policy: str
    env: str

    @property
    def cumulative_regret(self) -> np.ndarray:
        return np.cumsum(self.best - self.expected)

    @property
    def cumulative_reward(self) -> np.ndarray:
        return np.cumsum(self.reward)

    def summary(self) -> dict:
        return {"policy": self.policy, "env": self.env, "rounds": len(self.reward), "mean_reward": float(self.reward.mean()),
                "mean_expected_reward": float(self.expected.mean()), "cumulative_regret": float(self.cumulative_regret[-1])}


def simulate(
    env: SimEnv, policy: Policy, n_rounds: int, batch_size: int = 1, env_name: str = "env", noise_seed: int | None = None
) -> SimResult:
    """Run ``policy`` on ``env`` for n_rounds, selecting and updating once per batch (batch_size=1 is fully online).

    State-dependent environments (``env.sequential``) always run round by round. ``noise_seed`` reseeds the
    environment's context/noise stream (independent repetitions in the same world)."""
    if n_rounds < 1:
        raise ConfigError(f"n_rounds must be >= 1, got {n_rounds}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if policy.n_actions != env.n_actions or policy.len_list != env.len_list:
        raise ConfigError(
            f"policy has n_actions={policy.n_actions}, len_list={policy.len_list} but the environment has "
            f"n_actions={env.n_actions}, len_list={env.len_list}"
        )
    if env.sequential:
        batch_size = 1
    if noise_seed is not None:
        env.reseed(noise_seed)
    reward, expected, best = np.empty(n_rounds), np.empty(n_rounds), np.empty(n_rounds)
    # one BLAS thread: the per-batch matmuls are small (batch x arms x d), thread hand-offs cost more than they gain
    with threadpool_limits(1, user_api="blas"):
        for start in range(0, n_rounds, batch_size):
            m = min(batch_size, n_rounds - start)
            x = env.contexts(m)
            actions = policy.select(x, m)
            r, e, b = env.step(x, actions)
            policy.update(x, actions, r)
            reward[start : start + m] = r.sum(axis=1)
            expected[start : start + m] = e.sum(axis=1)
            best[start : start + m] = b
    name = policy.name if isinstance(policy, BanditPolicy) else type(policy).__name__
    return SimResult(reward, expected, best, name, env_name)
