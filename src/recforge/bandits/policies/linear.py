"""Contextual policies with one linear model per action ("disjoint" models): LinUCB, linear and logistic Thompson sampling.

Per action a: A_a = reg I + sum x x^T (d, d) and b_a = sum r x (d,); theta_a = A_a^{-1} b_a. Updates are batched: the
sufficient statistics of a whole batch are added with one einsum and the K inverses are refreshed once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforge.bandits.policies.base import BanditPolicy
from recforge.errors import ConfigError


@dataclass(frozen=True)
class LinearConfig:
    alpha: float = 1.0  # LinUCB: width of the confidence bonus; linear TS: posterior scale v
    reg: float = 1.0  # ridge regulariser (prior precision)

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"alpha must be >= 0, got {self.alpha!r}")
        if self.reg <= 0:
            raise ConfigError(f"reg must be > 0, got {self.reg!r}")


class _Ridge(BanditPolicy):
    needs_context = True
    config_class = LinearConfig
    state_arrays = ("A", "b")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        d, k = self.dim, self.n_actions
        self.A = np.tile(np.eye(d) * self.config.reg, (k, 1, 1))  # (K, d, d)
        self.b = np.zeros((k, d))
        self._refresh()

    def _refresh(self) -> None:
        self.A_inv = np.linalg.inv(self.A)  # (K, d, d)
        self.theta = np.einsum("kij,kj->ki", self.A_inv, self.b)  # (K, d)

    def _after_load(self) -> None:
        self._refresh()

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        n = len(actions)
        x = self._check_context(context, n)
        a = np.asarray(actions).reshape(n, -1)
        r = np.asarray(rewards, dtype=np.float64).reshape(n, -1)
        outer = (x[:, :, None] * x[:, None, :]).reshape(n, -1)  # (n, d*d)
        for slot in range(a.shape[1]):
            # group the batch by action with a one-hot matrix: two BLAS matmuls instead of a Python loop per round
            onehot = np.zeros((self.n_actions, n))
            onehot[a[:, slot], np.arange(n)] = 1.0
            self.A += (onehot @ outer).reshape(self.A.shape)
            self.b += onehot @ (r[:, slot, None] * x)
        self.t += n
        self._refresh()


def quad_form(x: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """x_n^T M_k x_n for every row and matrix: x (n, d), mats (K, d, d) -> (n, K), as one (n, d^2) @ (d^2, K) matmul."""
    n, d = x.shape
    outer = (x[:, :, None] * x[:, None, :]).reshape(n, d * d)
    return np.maximum(outer @ mats.reshape(len(mats), d * d).T, 0.0)


class LinUCB(_Ridge):
    """LinUCB with disjoint models (Li, Chu, Langford & Schapire 2010): score x theta_a + alpha sqrt(x^T A_a^{-1} x)."""

    name = "linucb"

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        x = self._check_context(context, n)
        mean = x @ self.theta.T  # (n, K)
        width = np.sqrt(quad_form(x, self.A_inv))
        # tiny noise breaks the exact ties of untried actions at random, so a batch spreads over them
        return self._ranked(mean + self.config.alpha * width + 1e-9 * self.rng.random(mean.shape))


class LinearTS(_Ridge):
    """Linear Thompson sampling (Agrawal & Goyal 2013): theta~_a ~ N(theta_a, alpha^2 A_a^{-1}) per round, play the best
    x theta~_a. Sampling uses x^T theta~_a ~ N(x theta_a, alpha^2 x^T A_a^{-1} x), the same law at O(d^2) per pair."""

    name = "linear-ts"

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        x = self._check_context(context, n)
        mean = x @ self.theta.T
        var = quad_form(x, self.A_inv)
        return self._ranked(mean + self.config.alpha * np.sqrt(var) * self.rng.standard_normal(mean.shape))


@dataclass(frozen=True)
class LogisticTSConfig:
    reg: float = 1.0  # prior precision of the weights
    n_steps: int = 3  # Newton steps per batch update
    scale: float = 1.0  # multiplies the posterior standard deviation (exploration)

    def __post_init__(self) -> None:
        if self.reg <= 0:
            raise ConfigError(f"reg must be > 0, got {self.reg!r}")
        if self.n_steps < 1:
            raise ConfigError(f"n_steps must be >= 1, got {self.n_steps!r}")
        if self.scale < 0:
            raise ConfigError(f"scale must be >= 0, got {self.scale!r}")


class LogisticTS(BanditPolicy):
    """Logistic Thompson sampling with an online Laplace approximation (Chapelle & Li 2011, full covariance): per action
    the posterior N(m_a, P_a^{-1}) is updated on each batch by Newton steps on the batch log-likelihood plus the Gaussian
    prior from the previous batch; P_a becomes the Hessian at the new mode. Rewards are clicks in {0, 1}."""

    name = "logistic-ts"
    needs_context = True
    config_class = LogisticTSConfig
    state_arrays = ("m", "P", "cov")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        d, k = self.dim, self.n_actions
        self.m = np.zeros((k, d))
        self.P = np.tile(np.eye(d) * self.config.reg, (k, 1, 1))
        self.cov = np.linalg.inv(self.P)

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        x = self._check_context(context, n)
        mean = x @ self.m.T
        var = quad_form(x, self.cov)
        return self._ranked(mean + self.config.scale * np.sqrt(var) * self.rng.standard_normal(mean.shape))

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        n = len(actions)
        x = self._check_context(context, n)
        a, r = np.asarray(actions).reshape(n, -1), np.asarray(rewards, dtype=np.float64).reshape(n, -1)
        xs, acts, rs = np.repeat(x, a.shape[1], axis=0), a.ravel(), r.ravel()
        for k in np.unique(acts):
            sel = acts == k
            xk, rk, m0, p0 = xs[sel], rs[sel], self.m[k], self.P[k]
            w = m0.copy()
            for _ in range(self.config.n_steps):
                p = 1.0 / (1.0 + np.exp(-(xk @ w)))
                grad = p0 @ (w - m0) - xk.T @ (rk - p)
                hess = p0 + (xk * (p * (1 - p))[:, None]).T @ xk
                w = w - np.linalg.solve(hess, grad)
            p = 1.0 / (1.0 + np.exp(-(xk @ w)))
            self.m[k], self.P[k] = w, p0 + (xk * (p * (1 - p))[:, None]).T @ xk
            self.cov[k] = np.linalg.inv(self.P[k])
        self.t += n
