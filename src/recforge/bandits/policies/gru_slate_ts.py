"""GRU user model + in-slate Thompson sampling (Eide, Leslie & Frigessi, "Dynamic Slate Recommendation with Gated Recurrent
Units and Thompson Sampling", 2021), small and online.

Model. A GRU reads a user's recent interactions, one step per shown slate: its input is the embedding of the clicked
item (or of a "no click" token) concatenated with the mean embedding of the slate's items (so non-clicks are informative).
The user state h (H,) is mapped to a user vector u = [W h + c, 1] (d+1,). Item i has a vector v_i (d+1,) whose last
coordinate acts as an item bias. A slate s with the no-click option competing gets the softmax choice probabilities

    P(click slot k | h, s) = exp(<u, v_{s_k}>) / (exp(b_0) + sum_j exp(<u, v_{s_j}>)),   P(no click) = exp(b_0) / (...).

Uncertainty. The item vectors have a diagonal Gaussian variational posterior q(v_i) = N(mu_i, diag(sigma_i^2)) with prior
N(0, prior_std^2 I), fitted by Bayes by backprop (one reparameterised draw per gradient step, loss = mean NLL + KL / N).
The GRU, W, c, b_0 and the input embeddings are point estimates.

Thompson sampling in the slate (``sample_per="slot"``, in-slate TS as recforge's Beta-posterior ``in-slate-ts`` does it):
the slate is filled slot by slot; for every slot a fresh draw of all item vectors is taken and the item of highest
sampled utility not already in the slate goes in, so one slate explores several posterior draws. ``sample_per="slate"`` is ordinary Thompson sampling: one draw per
slate, filled greedily, which under the softmax-with-no-click model is the top-L of the sampled utilities (the slate's
click probability grows with every utility in it).

Training is incremental: ``update`` appends the rounds to per-user histories (the last ``max_history`` slates) and every
``train_every`` rounds runs ``n_steps`` Adam steps on minibatches of user histories; user states are then recomputed.

Context: the user id as a float column, shape (n, 1) (what :class:`~recforge.bandits.user_slates.UserSlateEnv` hands out).
New user ids grow the tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from recforge.bandits.policies.base import BanditPolicy
from recforge.config import check_choices
from recforge.errors import ConfigError
from recforge.threads import single_thread

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GRUSlateTSConfig:
    dim: int = 8  # item / user vector size d (plus one bias coordinate)
    hidden: int = 32  # GRU state size H
    max_history: int = 30  # slates kept per user (the GRU window)
    train_every: int = 100  # rounds between training passes
    n_steps: int = 5  # Adam steps per training pass
    batch_users: int = 64  # user histories per Adam step
    lr: float = 0.01
    prior_std: float = 1.0
    init_std: float = 0.1  # initial posterior standard deviation of item vectors
    sample_per: Literal["slot", "slate"] = "slot"  # a fresh posterior draw per slot (in-slate TS) or one per slate

    def __post_init__(self) -> None:
        for k in ("dim", "hidden", "max_history", "train_every", "n_steps", "batch_users"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)!r}")
        for k in ("lr", "prior_std", "init_std"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"{k} must be > 0, got {getattr(self, k)!r}")
        check_choices(self)


class _Net(nn.Module):
    """GRU user encoder + variational item vectors. Item index n_items is the "no click" token of the GRU input."""

    def __init__(self, n_items: int, cfg: GRUSlateTSConfig):
        super().__init__()
        self.n_items = n_items
        self.embed = nn.Embedding(n_items + 1, cfg.dim)  # GRU input embeddings (+ no-click token)
        self.gru = nn.GRU(2 * cfg.dim, cfg.hidden, batch_first=True)
        self.to_user = nn.Linear(cfg.hidden, cfg.dim)
        self.mu = nn.Parameter(cfg.init_std * torch.randn(n_items, cfg.dim + 1))
        # sigma = softplus(rho); start at init_std
        self.rho = nn.Parameter(torch.full((n_items, cfg.dim + 1), float(np.log(np.expm1(cfg.init_std)))))
        self.no_click = nn.Parameter(torch.zeros(()))

    def sigma(self) -> torch.Tensor:
        return nn.functional.softplus(self.rho)

    def sample_items(self, n: int | None = None) -> torch.Tensor:
        """One posterior draw of all item vectors: (n_items, d+1), or (n, n_items, d+1) for n independent draws."""
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        return self.mu + self.sigma() * torch.randn(shape)

    def step_inputs(self, slates: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
        """slates (B, T, L), clicks (B, T) with 0 = no click, k+1 = slot k -> GRU inputs (B, T, 2d)."""
        clicked = torch.where(clicks > 0, slates.gather(2, (clicks - 1).clamp(min=0)[..., None])[..., 0],
                              torch.full_like(clicks, self.n_items))
        return torch.cat([self.embed(clicked), self.embed(slates).mean(2)], dim=-1)

    def user_vectors(self, h: torch.Tensor) -> torch.Tensor:
        """GRU states (..., H) -> user vectors (..., d+1) with a constant 1 for the item bias."""
        u = self.to_user(h)
        return torch.cat([u, torch.ones_like(u[..., :1])], dim=-1)

    def states(self, slates: torch.Tensor, clicks: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Final user state after each (left-aligned) history: (B, T, L), (B, T), (B,) -> (B, H); empty -> zeros."""
        out, _ = self.gru(self.step_inputs(slates, clicks))  # (B, T, H)
        h = torch.cat([torch.zeros_like(out[:, :1]), out], dim=1)  # state before step 0 is h0 = 0
        return h[torch.arange(len(lengths)), lengths]


class GRUSlateTS(BanditPolicy):
    """GRU user state + variational item vectors; slates filled greedily from Thompson draws (see module docstring)."""

    name = "gru-slate-ts"
    config_class = GRUSlateTSConfig
    needs_context = True
    state_arrays: ClassVar[tuple[str, ...]] = ("weights", "hist_slates", "hist_clicks", "hist_len")
    state_scalars: ClassVar[tuple[str, ...]] = ("t", "last_train")

    def __init__(self, n_actions: int, dim: int = 1, len_list: int = 1, config: GRUSlateTSConfig | None = None,
                 seed: int = 0):
        if dim != 1:
            raise ConfigError(f"policy 'gru-slate-ts' takes the user id as a (n, 1) context, got dim={dim}")
        super().__init__(n_actions, dim=dim, len_list=len_list, config=config, seed=seed)
        cfg = self.config
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = _Net(n_actions, cfg)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.hist_slates = np.zeros((0, cfg.max_history, len_list), dtype=np.int64)  # (U, T, L)
        self.hist_clicks = np.zeros((0, cfg.max_history), dtype=np.int64)  # (U, T): 0 no click, k+1 slot k
        self.hist_len = np.zeros(0, dtype=np.int64)  # (U,)
        self.user_state = torch.zeros(0, cfg.hidden)  # (U, H), recomputed after updates
        self.last_train = 0

    # weights travel through save/load as one flat float32 vector
    @property
    def weights(self) -> np.ndarray:
        return nn.utils.parameters_to_vector(self.net.parameters()).detach().numpy().astype(np.float32)

    @weights.setter
    def weights(self, value: np.ndarray) -> None:
        nn.utils.vector_to_parameters(torch.as_tensor(np.asarray(value), dtype=torch.float32), self.net.parameters())

    def _after_load(self) -> None:
        with single_thread():
            self.user_state = self._states(np.arange(len(self.hist_len)))

    def _users(self, context: np.ndarray | None, n: int) -> np.ndarray:
        users = self._check_context(context, n)[:, 0]
        if np.any(users < 0) or np.any(users != np.round(users)):
            raise ConfigError("gru-slate-ts contexts must be non-negative integer user ids")
        users = users.astype(np.int64)
        self._grow(int(users.max()) + 1 if n else 0)
        return users

    def _grow(self, n_users: int) -> None:
        extra = n_users - len(self.hist_len)
        if extra <= 0:
            return
        c = self.config
        self.hist_slates = np.concatenate([self.hist_slates, np.zeros((extra, c.max_history, self.len_list), np.int64)])
        self.hist_clicks = np.concatenate([self.hist_clicks, np.zeros((extra, c.max_history), np.int64)])
        self.hist_len = np.concatenate([self.hist_len, np.zeros(extra, np.int64)])
        self.user_state = torch.cat([self.user_state, torch.zeros(extra, c.hidden)])

    @torch.no_grad()
    def _states(self, users: np.ndarray) -> torch.Tensor:
        """Current GRU states of ``users`` (B,) -> (B, H)."""
        if len(users) == 0:
            return torch.zeros(0, self.config.hidden)
        return self.net.states(torch.from_numpy(self.hist_slates[users]), torch.from_numpy(self.hist_clicks[users]),
                               torch.from_numpy(self.hist_len[users]))

    @torch.no_grad()
    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        with single_thread():
            return self._select(context, n)

    def _select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        users = self._users(context, n)
        u = self.net.user_vectors(self.user_state[users])  # (n, d+1)
        with torch.random.fork_rng():
            torch.manual_seed(int(self.rng.integers(2**62)))
            if self.config.sample_per == "slate":
                # one draw of every item vector per slate; its greedy fill is the top-L (see module docstring)
                return self._ranked(torch.einsum("nd,nid->ni", u, self.net.sample_items(n)).numpy())
            out = np.empty((n, self.len_list), dtype=np.int64)
            taken = torch.zeros(n, self.n_actions, dtype=torch.bool)
            rows = torch.arange(n)
            for slot in range(self.len_list):  # in-slate TS: a fresh draw for every slot
                scores = torch.einsum("nd,nid->ni", u, self.net.sample_items(n)).masked_fill(taken, -torch.inf)
                best = scores.argmax(dim=1)
                out[:, slot] = best.numpy()
                taken[rows, best] = True
        return out

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        with single_thread():
            self._update(context, actions, rewards)

    def _update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        users = self._users(context, len(actions))
        actions = np.asarray(actions, dtype=np.int64).reshape(len(users), self.len_list)
        rewards = np.asarray(rewards).reshape(len(users), self.len_list)
        # the choice model allows one click per slate: the first clicked slot is the target
        clicks = np.where(rewards.max(axis=1) > 0, rewards.argmax(axis=1) + 1, 0)
        T = self.config.max_history
        for user, slate, click in zip(users, actions, clicks, strict=True):
            k = self.hist_len[user]
            if k == T:  # drop the oldest slate
                self.hist_slates[user, :-1] = self.hist_slates[user, 1:]
                self.hist_clicks[user, :-1] = self.hist_clicks[user, 1:]
                k -= 1
            self.hist_slates[user, k], self.hist_clicks[user, k] = slate, click
            self.hist_len[user] = k + 1
        self.t += len(users)
        if self.t - self.last_train >= self.config.train_every:
            self._train()
            self.last_train = self.t
            self.user_state = self._states(np.arange(len(self.hist_len)))
        else:
            touched = np.unique(users)
            self.user_state[touched] = self._states(touched)

    def _train(self) -> None:
        """``n_steps`` Adam steps of Bayes by backprop on random minibatches of user histories.

        The weight draws come from torch's RNG seeded by the policy's own generator, so a seeded policy learns the
        same whatever else ran in the process before it.
        """
        with torch.random.fork_rng():
            torch.manual_seed(int(self.rng.integers(2**62)))
            self._train_steps()

    def _train_steps(self) -> None:
        c = self.config
        have = np.flatnonzero(self.hist_len > 0)
        n_obs = int(self.hist_len.sum())
        for _ in range(c.n_steps):
            batch = self.rng.choice(have, size=min(c.batch_users, len(have)), replace=False)
            slates = torch.from_numpy(self.hist_slates[batch])  # (B, T, L)
            clicks = torch.from_numpy(self.hist_clicks[batch])  # (B, T)
            lengths = torch.from_numpy(self.hist_len[batch])
            out, _ = self.net.gru(self.net.step_inputs(slates, clicks))  # (B, T, H): state after step t
            h = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)  # state before step t
            u = self.net.user_vectors(h)  # (B, T, d+1)
            v = self.net.sample_items()[slates]  # (B, T, L, d+1), one draw per step
            logits = torch.cat([self.net.no_click.expand(*u.shape[:2], 1), torch.einsum("btd,btld->btl", u, v)], -1)
            mask = torch.arange(c.max_history)[None, :] < lengths[:, None]  # (B, T) real steps
            nll = nn.functional.cross_entropy(logits[mask], clicks[mask])
            sigma = self.net.sigma()
            kl = (torch.log(c.prior_std / sigma) + (sigma**2 + self.net.mu**2) / (2 * c.prior_std**2) - 0.5).sum()
            loss = nll + kl / n_obs
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        logger.debug("gru-slate-ts t=%d nll=%.4f kl=%.2f", self.t, nll.item(), kl.item())
