"""Recovering rewards: arms whose reward drops after a pull and recovers with idle time.

Setting of Simchi-Levi, Zheng & Zhu, "Offline Planning and Online Learning under Recovering Rewards" (2021): each round
one arm is pulled; arm k pulled after z rounds of idling pays r_k(z) in expectation, r_k nondecreasing in z and constant
for z >= z_max (fully recovered). A stationary bandit algorithm (UCB1) keeps pulling the best-looking arm and lives on
its depleted reward r_k(1); purely periodic policies pull arm k every p_k rounds.

Offline planning (known r): choose periods p_k in {1..z_max} (or never) to maximise sum_k r_k(p_k)/p_k subject to
sum_k 1/p_k <= 1. We solve its Lagrangian relaxation, max_p (r_k(p) - lam)/p per arm with a bisection on lam, whose
dual value lam + sum_k max(0, max_p (r_k(p) - lam)/p) upper-bounds the long-run average reward of any periodic plan and
is the benchmark for regret. The plan is run by stride scheduling (the due arm with the earliest deadline; idle slots go
to the arm with the best current expected reward).

Online (unknown r): :class:`PeriodicUCB` keeps a UCB for every (arm, idle time) pair, made monotone in z (true curves are
nondecreasing), and re-plans with the optimistic curves at the start of epochs of doubling length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np

from recforge.bandits.env import ActionSpace, SimEnv
from recforge.bandits.policies.base import BanditPolicy
from recforge.config import check_choices
from recforge.errors import ConfigError


@runtime_checkable
class RecoveryCurves(Protocol):
    """An environment that declares its true recovery curves (what the periodic policies plan with)."""

    def recovery_curves(self) -> np.ndarray:
        """Expected reward r_k(z) of arm k pulled after z = 1..z_max idle rounds, shape (K, z_max)."""
        ...


@dataclass(frozen=True)
class RecoveringConfig:
    n_arms: int = 5
    z_max: int = 10  # idle rounds after which every arm is fully recovered
    noise: Literal["bernoulli", "gaussian"] = "bernoulli"  # rewards in {0, 1}, or Gaussian with std 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_arms < 2:
            raise ConfigError(f"n_arms must be >= 2, got {self.n_arms!r}")
        if self.z_max < 1:
            raise ConfigError(f"z_max must be >= 1, got {self.z_max!r}")
        check_choices(self)


class RecoveringEnv(SimEnv):
    """r_k(z) = mu_k * min(1, (z / d_k)^0.7) for idle time z >= 1 (capped at z_max), with peak mu_k ~ U(0.3, 0.9) and
    recovery time d_k ~ U{2..z_max}: the best arms recover slowly, so pulling them every round is poor."""

    sequential = True
    name = "recovering"
    config_class = RecoveringConfig

    def __init__(self, config: RecoveringConfig | None = None):
        self.config = c = config or RecoveringConfig()
        self.n_actions, self.len_list, self.dim = c.n_arms, 1, 0
        rng = np.random.default_rng(c.seed)
        self.mu = rng.uniform(0.3, 0.9, c.n_arms)
        self.recovery = rng.integers(2, c.z_max + 1, c.n_arms) if c.z_max >= 2 else np.ones(c.n_arms, dtype=int)
        z = np.arange(1, c.z_max + 1)
        self.curves = self.mu[:, None] * np.minimum(1.0, (z[None, :] / self.recovery[:, None]) ** 0.7)  # (K, z_max)
        self.idle = np.full(c.n_arms, c.z_max)  # all arms start recovered
        self.rng = np.random.default_rng(c.seed + 1)
        self._bound = plan_periods(self.curves)[1]

    def contexts(self, n: int) -> None:
        return None

    def recovery_curves(self) -> np.ndarray:
        """The true curves r_k(z), (K, z_max)."""
        return self.curves

    def current_means(self) -> np.ndarray:
        """Expected reward of pulling each arm now, (K,)."""
        return self.curves[np.arange(self.n_actions), np.minimum(self.idle, self.config.z_max) - 1]

    def step(self, context: np.ndarray | None, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = int(np.asarray(actions).ravel()[0])
        mean = float(self.current_means()[a])
        if self.config.noise == "bernoulli":
            r = float(self.rng.random() < mean)
        else:
            r = mean + 0.1 * float(self.rng.standard_normal())
        self.idle += 1
        self.idle[a] = 1  # idle time counts rounds since the last pull: pulled again next round means z = 1
        return np.array([[r]]), np.array([[mean]]), np.array([self._bound])


def plan_periods(curves: np.ndarray, iters: int = 60) -> tuple[np.ndarray, float]:
    """Offline plan for known recovery curves (K, z_max): periods (K,) (0 = never pull) and the dual upper bound on the
    average reward per round."""
    k_arms, z_max = curves.shape
    p = np.arange(1, z_max + 1, dtype=np.float64)

    def best(lam: float) -> tuple[np.ndarray, np.ndarray]:
        gain = (curves - lam) / p[None, :]  # (K, z_max): per-round gain of period p at price lam per unit of rate
        arg = gain.argmax(axis=1)
        val = gain[np.arange(k_arms), arg]
        return np.where(val > 0, arg + 1, 0), np.maximum(val, 0.0)

    lo, hi = 0.0, float(curves.max())
    for _ in range(iters):  # smallest lam whose plan uses at most one pull per round
        lam = 0.5 * (lo + hi)
        periods, _ = best(lam)
        rate = np.sum(np.where(periods > 0, 1.0 / np.maximum(periods, 1), 0.0))
        if rate > 1.0:
            lo = lam
        else:
            hi = lam
    periods, _ = best(hi)
    # dual function g(lam) = lam + sum_k max(0, max_p (r_k(p) - lam)/p) is convex: minimise it on a grid for the bound
    grid = np.linspace(0.0, float(curves.max()), 401)
    bound = min(lam + best(lam)[1].sum() for lam in grid)
    return periods, float(bound)


class _Scheduled(BanditPolicy):
    """Stride scheduling of a periodic plan; idle slots go to the arm with the best current (estimated) reward."""

    state_arrays = ("idle", "periods", "due")
    state_scalars = ("t", "z_max")

    def __init__(self, *args, z_max: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        if self.len_list != 1:
            raise ConfigError("recovering-reward policies pull one arm per round (len_list=1)")
        self.z_max = z_max
        self.idle = np.full(self.n_actions, z_max)
        self.periods = np.zeros(self.n_actions, dtype=int)
        self.due = np.zeros(self.n_actions)

    @staticmethod
    def _curves_of(env: SimEnv | ActionSpace, name: str) -> np.ndarray:
        if not isinstance(env, RecoveryCurves):
            raise ConfigError(f"policy {name!r} needs an environment that declares its recovery curves "
                              f"(e.g. 'recovering'), got {type(env).__name__}")
        return env.recovery_curves()

    def set_plan(self, periods: np.ndarray) -> None:
        self.periods = periods.astype(int)
        self.due = np.where(self.periods > 0, self.t + np.arange(self.n_actions) % np.maximum(self.periods, 1), np.inf)

    def fill_score(self) -> np.ndarray:
        raise NotImplementedError

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        if n != 1:
            raise ConfigError("recovering-reward policies select one round at a time (batch_size=1)")
        ready = self.due <= self.t
        if ready.any():
            arm = int(np.flatnonzero(ready)[np.argmin(self.due[ready])])
        else:
            arm = int(np.argmax(self.fill_score()))
        return np.array([[arm]])

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        a = int(np.asarray(actions).ravel()[0])
        if self.periods[a] > 0 and self.due[a] <= self.t:
            self.due[a] += self.periods[a]
        self.observe(a, float(np.asarray(rewards).ravel()[0]), int(min(self.idle[a], self.z_max)))
        self.idle += 1
        self.idle[a] = 1
        self.t += 1

    def observe(self, arm: int, reward: float, z: int) -> None:
        """Record a reward of ``arm`` pulled after idle time z (1..z_max)."""


class PeriodicOracle(_Scheduled):
    """The purely periodic offline policy, planned with the true recovery curves (K, z_max)."""

    name = "periodic"
    state_arrays = _Scheduled.state_arrays + ("curves",)

    @classmethod
    def from_env(cls, env: SimEnv | ActionSpace, config: Any = None, seed: int = 0) -> Self:
        """Planned with the environment's true curves (an oracle)."""
        return cls(env.n_actions, len_list=env.len_list, config=config, seed=seed, curves=cls._curves_of(env, cls.name))

    @classmethod
    def _load_kwargs(cls, scalars: dict, arrays: dict) -> dict:
        return {"curves": arrays["curves"]}

    def __init__(self, *args, curves: np.ndarray, **kwargs):
        super().__init__(*args, z_max=curves.shape[1], **kwargs)
        self.curves = np.asarray(curves, dtype=np.float64)
        self.set_plan(plan_periods(self.curves)[0])

    def fill_score(self) -> np.ndarray:
        return self.curves[np.arange(self.n_actions), np.minimum(self.idle, self.z_max) - 1]


@dataclass(frozen=True)
class PeriodicUCBConfig:
    c: float = 2.0  # exploration constant of the UCBs
    first_epoch: int = 0  # length of the first epoch; 0 = n_arms * z_max
    r_max: float = 1.0  # optimistic value of unseen (arm, idle time) pairs

    def __post_init__(self) -> None:
        if self.c < 0 or self.first_epoch < 0 or self.r_max <= 0:
            raise ConfigError(f"need c >= 0, first_epoch >= 0, r_max > 0; got {self.c!r}, {self.first_epoch!r}, {self.r_max!r}")


class PeriodicUCB(_Scheduled):
    """Online periodic policy: UCBs of r_k(z) for every (arm, idle time), re-planned at epochs of doubling length."""

    name = "periodic-ucb"
    config_class = PeriodicUCBConfig
    state_arrays = _Scheduled.state_arrays + ("counts", "sums")
    state_scalars = _Scheduled.state_scalars + ("epoch_len", "next_plan")

    @classmethod
    def from_env(cls, env: SimEnv | ActionSpace, config: Any = None, seed: int = 0) -> Self:
        """Knows only the environment's full-recovery time z_max (the setting's assumption), not its curves."""
        z_max = cls._curves_of(env, cls.name).shape[1]
        return cls(env.n_actions, len_list=env.len_list, config=config, seed=seed, z_max=z_max)

    @classmethod
    def _load_kwargs(cls, scalars: dict, arrays: dict) -> dict:
        return {"z_max": int(scalars["z_max"])}

    def __init__(self, *args, z_max: int = 10, **kwargs):
        super().__init__(*args, z_max=z_max, **kwargs)
        self.counts = np.zeros((self.n_actions, z_max))
        self.sums = np.zeros((self.n_actions, z_max))
        self.epoch_len = self.config.first_epoch or self.n_actions * z_max
        self.next_plan = 0

    def ucb(self) -> np.ndarray:
        """Optimistic recovery curves (K, z_max), made nondecreasing in z by a suffix minimum (true curves are)."""
        t = max(self.t, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.sums / self.counts + np.sqrt(self.config.c * np.log(t) / self.counts)
        u = np.where(self.counts > 0, np.minimum(u, self.config.r_max), self.config.r_max)
        return np.minimum.accumulate(u[:, ::-1], axis=1)[:, ::-1]

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        if self.t >= self.next_plan:
            self.set_plan(plan_periods(self.ucb())[0])
            self.next_plan = self.t + self.epoch_len
            self.epoch_len *= 2
        return super().select(context, n)

    def fill_score(self) -> np.ndarray:
        return self.ucb()[np.arange(self.n_actions), np.minimum(self.idle, self.z_max) - 1]

    def observe(self, arm: int, reward: float, z: int) -> None:
        self.counts[arm, z - 1] += 1
        self.sums[arm, z - 1] += reward
