"""Context-free multi-armed bandit policies: epsilon-greedy, UCB1, Bernoulli and Gaussian Thompson sampling.

All keep per-action counts and reward sums; with ``len_list > 1`` they fill a slate with their top-``len_list`` actions
(each slot's reward updates the action shown there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforge.bandits.policies.base import BanditPolicy
from recforge.errors import ConfigError


class _Counting(BanditPolicy):
    state_arrays = ("counts", "sums")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts = np.zeros(self.n_actions)
        self.sums = np.zeros(self.n_actions)

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        a, r = np.asarray(actions).ravel(), np.asarray(rewards, dtype=np.float64).ravel()
        self.counts += np.bincount(a, minlength=self.n_actions)
        self.sums += np.bincount(a, weights=r, minlength=self.n_actions)
        self.t += len(actions)

    def means(self) -> np.ndarray:
        """Empirical mean reward per action, 0 for unplayed actions. Shape (K,)."""
        return np.divide(self.sums, self.counts, out=np.zeros(self.n_actions), where=self.counts > 0)


@dataclass(frozen=True)
class EpsilonGreedyConfig:
    epsilon: float = 0.1  # probability of a uniformly random slate

    def __post_init__(self) -> None:
        if not 0 <= self.epsilon <= 1:
            raise ConfigError(f"epsilon must be in [0, 1], got {self.epsilon!r}")


class EpsilonGreedy(_Counting):
    """With probability epsilon a random slate, else the actions with the best empirical means (ties broken at random)."""

    name = "epsilon-greedy"
    config_class = EpsilonGreedyConfig

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        noise = self.rng.random((n, self.n_actions))
        greedy = self.means()[None, :] + 1e-9 * noise  # tiny noise = random tie-breaking
        explore = self.rng.random(n) < self.config.epsilon
        scores = np.where(explore[:, None], noise, greedy)
        return self._ranked(scores)

    def action_dist(self) -> np.ndarray:
        """Probability of each action in the first slot (ties counted as equal), shape (K,). For OPE of this policy."""
        m = self.means()
        best = np.isclose(m, m.max())
        return self.config.epsilon / self.n_actions + (1 - self.config.epsilon) * best / best.sum()


@dataclass(frozen=True)
class UCB1Config:
    c: float = 2.0  # exploration constant in sqrt(c log t / n_a); 2 is Auer et al.'s choice for rewards in [0, 1]

    def __post_init__(self) -> None:
        if self.c < 0:
            raise ConfigError(f"c must be >= 0, got {self.c!r}")


class UCB1(_Counting):
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002): play argmax_a mean_a + sqrt(c log t / n_a); unplayed actions first.
    Regret O(sum_a log T / gap_a) for rewards in [0, 1]."""

    name = "ucb1"
    config_class = UCB1Config

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        t = max(self.t, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(self.config.c * np.log(t) / self.counts)
        # unplayed actions get a huge score (played first); the small noise breaks ties at random
        ucb = np.where(self.counts > 0, self.means() + bonus, 1e6)
        scores = ucb[None, :] + 1e-6 * self.rng.random((n, self.n_actions))
        return self._ranked(scores)


@dataclass(frozen=True)
class BetaPriorConfig:
    alpha: float = 1.0  # Beta prior successes
    beta: float = 1.0  # Beta prior failures

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ConfigError(f"alpha and beta must be > 0, got alpha={self.alpha!r}, beta={self.beta!r}")


class BernoulliTS(_Counting):
    """Bernoulli Thompson sampling (Thompson 1933; Agrawal & Goyal 2012): theta_a ~ Beta(alpha + s_a, beta + f_a), play
    the top-len_list sampled theta. Rewards must be in [0, 1] (fractional rewards update fractionally)."""

    name = "bernoulli-ts"
    config_class = BetaPriorConfig
    state_arrays = _Counting.state_arrays + ("prior_alpha", "prior_beta")

    def __init__(self, *args, prior_alpha: np.ndarray | None = None, prior_beta: np.ndarray | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.prior_alpha = np.full(self.n_actions, self.config.alpha) if prior_alpha is None else np.asarray(prior_alpha, float)
        self.prior_beta = np.full(self.n_actions, self.config.beta) if prior_beta is None else np.asarray(prior_beta, float)
        if self.prior_alpha.shape != (self.n_actions,) or self.prior_beta.shape != (self.n_actions,):
            raise ConfigError(f"prior_alpha/prior_beta must have shape ({self.n_actions},)")

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Beta posterior parameters, each (K,)."""
        return self.prior_alpha + self.sums, self.prior_beta + self.counts - self.sums

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        a, b = self.posterior()
        return self._ranked(self.rng.beta(a, b, size=(n, self.n_actions)))

    def action_dist(self, n_sim: int = 100_000, chunk: int = 10_000) -> np.ndarray:
        """Monte-Carlo probability that each action lands in each slot, shape (K, len_list): the evaluation policy of
        this (fixed) posterior, as used for off-policy evaluation of a Thompson-sampling policy."""
        counts = np.zeros((self.n_actions, self.len_list))
        done = 0
        while done < n_sim:
            m = min(chunk, n_sim - done)
            slates = self.select(None, m)
            for k in range(self.len_list):
                counts[:, k] += np.bincount(slates[:, k], minlength=self.n_actions)
            done += m
        return counts / n_sim


@dataclass(frozen=True)
class GaussianTSConfig:
    prior_mean: float = 0.0
    prior_var: float = 1.0  # prior variance of each action's mean reward
    noise_var: float = 1.0  # assumed (known) reward noise variance

    def __post_init__(self) -> None:
        if not (self.prior_var > 0 and self.noise_var > 0):
            raise ConfigError(f"prior_var and noise_var must be > 0, got {self.prior_var!r}, {self.noise_var!r}")


class GaussianTS(_Counting):
    """Gaussian Thompson sampling with a conjugate Normal prior and known noise variance: posterior precision
    1/prior_var + n_a/noise_var, mean (prior_mean/prior_var + sum_a/noise_var) / precision."""

    name = "gaussian-ts"
    config_class = GaussianTSConfig

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        c = self.config
        prec = 1.0 / c.prior_var + self.counts / c.noise_var
        mean = (c.prior_mean / c.prior_var + self.sums / c.noise_var) / prec
        theta = mean + self.rng.standard_normal((n, self.n_actions)) / np.sqrt(prec)
        return self._ranked(theta)
