"""A slate simulator with users: planted user-dependent preferences and a multinomial-logit (softmax) click model.

Each round a random user is shown a slate of ``len_list`` distinct items and clicks at most one of them: the
"no click" option competes with the slate's items, as in the choice model of Eide & Zhou (2021),

    P(click slot k | user u, slate s) = exp(w_{u, s_k}) / (exp(w_0) + sum_j exp(w_{u, s_j})),

with utilities w_{u,i} = scale * <z_{g(u)}, v_i> where users belong to one of ``n_groups`` taste groups (prototype z_g
plus small per-user noise) and items have random unit vectors v_i. Without knowing the user, no single slate is good
for everyone, so a policy must infer each user's taste from their own click history.

The context passed to policies is the user id as a float column, shape (n, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforge.bandits.env import SimEnv
from recforge.errors import ConfigError


@dataclass(frozen=True)
class UserSlateConfig:
    n_users: int = 100
    n_items: int = 30
    len_list: int = 3
    n_groups: int = 4  # taste groups: users of a group share a preference prototype
    latent_dim: int = 4
    scale: float = 4.0  # utility scale: larger = sharper preferences
    no_click: float = 3.0  # utility of the "no click" option w_0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_users < 1:
            raise ConfigError(f"n_users must be >= 1, got {self.n_users!r}")
        if self.n_items < 2:
            raise ConfigError(f"n_items must be >= 2, got {self.n_items!r}")
        if not 1 <= self.len_list <= self.n_items:
            raise ConfigError(f"len_list must be in [1, n_items={self.n_items}], got {self.len_list!r}")
        if self.n_groups < 1 or self.latent_dim < 1:
            raise ConfigError(f"n_groups and latent_dim must be >= 1, got {self.n_groups!r}, {self.latent_dim!r}")
        if self.scale < 0:
            raise ConfigError(f"scale must be >= 0, got {self.scale!r}")


class UserSlateEnv(SimEnv):
    """Users with planted group tastes; one softmax-with-no-click choice per slate (slot rewards are one-hot or zero)."""

    name = "user-slate"
    config_class = UserSlateConfig

    def __init__(self, config: UserSlateConfig | None = None):
        self.config = config or UserSlateConfig()
        c = self.config
        self.n_actions, self.len_list, self.dim = c.n_items, c.len_list, 1  # the context is the user id
        rng = np.random.default_rng(c.seed)
        protos = rng.standard_normal((c.n_groups, c.latent_dim))
        protos /= np.linalg.norm(protos, axis=1, keepdims=True)
        self.group = rng.integers(0, c.n_groups, c.n_users)
        users = protos[self.group] + 0.1 * rng.standard_normal((c.n_users, c.latent_dim))
        items = rng.standard_normal((c.n_items, c.latent_dim))
        items /= np.linalg.norm(items, axis=1, keepdims=True)
        self.utility = c.scale * users @ items.T  # (n_users, n_items)
        # for a softmax choice with an outside option the best slate is the top-L items by utility
        best = np.sort(self.utility, axis=1)[:, -c.len_list :]
        self.best = np.exp(best).sum(1) / (np.exp(c.no_click) + np.exp(best).sum(1))  # (n_users,)
        self.rng = np.random.default_rng(c.seed + 1)

    def contexts(self, n: int) -> np.ndarray:
        """User ids of n rounds as floats, (n, 1)."""
        return self.rng.integers(0, self.config.n_users, n).astype(np.float64)[:, None]

    def slot_click_probs(self, users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """users (n,), slates (n, L) -> click probability per slot (n, L)."""
        e = np.exp(np.take_along_axis(self.utility[users], slates, axis=1))
        return e / (np.exp(self.config.no_click) + e.sum(axis=1, keepdims=True))

    def step(self, context: np.ndarray | None, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if context is None:
            raise ConfigError("the user-slate environment needs the user ids it handed out as contexts")
        users = context[:, 0].astype(np.int64)
        slates = np.asarray(actions).reshape(-1, self.len_list)
        probs = self.slot_click_probs(users, slates)
        # one draw per slate over (slots..., no click)
        u = self.rng.random((len(slates), 1))
        slot = (u > np.cumsum(probs, axis=1)).sum(axis=1)  # == L means no click
        clicks = (np.arange(self.len_list)[None, :] == slot[:, None]).astype(np.float64)
        return clicks, probs, self.best[users]
