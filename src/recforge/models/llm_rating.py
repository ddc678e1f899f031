"""Rating prediction with a language model, beside the baselines the LLM rating-prediction study compares it with
(Kang et al., 2023: zero- and few-shot LLMs against collaborative filtering and a text-embedding regressor).

Three predictors with one interface, ``fit(train)`` then ``predict(users, items) -> ratings``:

- :class:`BiasCF`: the global mean plus regularised user and item biases (alternating closed-form updates);
- :class:`TextMLP`: :class:`BiasCF` plus an MLP over [item text vector, the user's rating-weighted profile of the text
  vectors of the items they rated, their product] that predicts the residual (text vectors from any
  ``TextEmbedder``: MiniLM, or hashing offline);
- :class:`LLMRating`: the ``rate`` prompt through an :class:`~recforge.protocols.LLMToolkit`: zero-shot (``shots`` = 0,
  no history) or few-shot (the user's ``shots`` most recent ratings in the prompt); an answer without a number
  falls back to :class:`BiasCF` (counted in ``fallbacks``).

They are rating predictors, not rankers: they are not in the model registry (which holds recommenders) and are used
from Python and ``bench/llm_rating.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, NotFittedError
from recforge.protocols import LLMToolkit
from recforge.threads import single_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BiasCFConfig:
    reg: float = 5.0
    """L2 penalty of the biases (in rating counts)."""
    iterations: int = 10
    """Alternating updates of user and item biases."""


class BiasCF:
    """rating ~ mean + b_user + b_item (regularised; unknown users or items have bias 0)."""

    def __init__(self, config: BiasCFConfig | None = None):
        self.config = config or BiasCFConfig()
        self.mean_: float | None = None

    def fit(self, train: Interactions) -> BiasCF:
        r = np.asarray(train.value, np.float64)
        if not len(r):
            raise ConfigError("cannot fit rating predictors on an empty log")
        self.mean_ = float(r.mean())
        u, i = np.asarray(train.user), np.asarray(train.item)
        self.bu_, self.bi_ = np.zeros(train.n_users + 1), np.zeros(train.n_items + 1)
        nu = np.bincount(u, minlength=train.n_users + 1) + self.config.reg
        ni = np.bincount(i, minlength=train.n_items + 1) + self.config.reg
        for _ in range(self.config.iterations):
            self.bi_ = np.bincount(i, r - self.mean_ - self.bu_[u], minlength=len(ni)) / ni
            self.bu_ = np.bincount(u, r - self.mean_ - self.bi_[i], minlength=len(nu)) / nu
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Dense user and item ids (n,) -> predicted ratings float64 (n,)."""
        if self.mean_ is None:
            raise NotFittedError("BiasCF is not fitted: call fit() first")
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        return self.mean_ + self.bu_[users] + self.bi_[items]


@dataclass(frozen=True)
class TextMLPConfig:
    hidden: int = 64
    epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 1024
    seed: int = 0


class TextMLP:
    """BiasCF plus an MLP on text vectors predicting the residual; ``item_vectors`` (n_items+1, d) aligned to the
    training log's dense item ids (row 0 padding)."""

    def __init__(self, item_vectors: np.ndarray, config: TextMLPConfig | None = None):
        self.vectors = torch.as_tensor(np.asarray(item_vectors, np.float32))
        self.config = config or TextMLPConfig()
        self.cf = BiasCF()
        self.net_: nn.Module | None = None

    def _features(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
        item = self.vectors[torch.tensor(items)]
        user = self.profiles_[torch.tensor(users)]
        return torch.cat([item, user, item * user], dim=1)

    def fit(self, train: Interactions) -> TextMLP:
        if self.vectors.shape[0] != train.n_items + 1:
            raise ConfigError(f"item_vectors has {self.vectors.shape[0]} rows, the log has n_items+1="
                              f"{train.n_items + 1}")
        cfg = self.config
        self.cf.fit(train)
        u, i = np.array(train.user, np.int64), np.array(train.item, np.int64)
        resid = np.asarray(train.value, np.float64) - self.cf.predict(u, i)
        weight = torch.from_numpy(np.asarray(train.value, np.float32) - self.cf.mean_)  # liked (+) / disliked (-)
        prof = torch.zeros(train.n_users + 1, self.vectors.shape[1])
        prof.index_add_(0, torch.from_numpy(u), self.vectors[torch.from_numpy(i)] * weight[:, None])
        self.profiles_ = nn.functional.normalize(prof, dim=1)
        torch.manual_seed(cfg.seed)
        d = self.vectors.shape[1] * 3
        self.net_ = nn.Sequential(nn.Linear(d, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
        opt = torch.optim.AdamW(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        x, y = self._features(u, i), torch.from_numpy(resid.astype(np.float32))
        gen = torch.Generator().manual_seed(cfg.seed)
        with single_thread():  # a small MLP: one thread is faster than two contended ones
            for _ in range(cfg.epochs):
                for rows in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
                    loss = nn.functional.mse_loss(self.net_(x[rows]).squeeze(1), y[rows])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        self.net_.eval()
        return self

    @torch.inference_mode()
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.net_ is None:
            raise NotFittedError("TextMLP is not fitted: call fit() first")
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        return self.cf.predict(users, items) + self.net_(self._features(users, items)).squeeze(1).double().numpy()


@dataclass(frozen=True)
class LLMRatingConfig:
    shots: int = 10
    """Most recent rated items shown in the prompt (0 = zero-shot)."""
    clip: bool = True
    """Clip predictions to [1, 5]."""

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise ConfigError(f"shots must be >= 0, got {self.shots}")


class LLMRating:
    """Zero- or few-shot rating prediction through ``toolkit.rate``; unparsed answers fall back to :class:`BiasCF`."""

    def __init__(self, toolkit: LLMToolkit, config: LLMRatingConfig | None = None):
        if toolkit.client is None:
            raise ConfigError("LLMRating needs a toolkit with a language model")
        self.toolkit, self.config = toolkit, config or LLMRatingConfig()
        self.cf = BiasCF()
        self.fallbacks = 0
        self.offsets_: np.ndarray | None = None

    def fit(self, train: Interactions) -> LLMRating:
        self.cf.fit(train)
        self.items_, self.offsets_ = (np.asarray(a) for a in train.sequences())
        self.values_ = np.asarray(train.value, np.float64)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.offsets_ is None:
            raise NotFittedError("LLMRating is not fitted: call fit() first")
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        k = self.config.shots
        hists, rates = [], []
        for u in users:
            s, e = self.offsets_[u], self.offsets_[u + 1]
            s = max(s, e - k)
            hists.append(self.items_[s:e] if k else self.items_[:0])
            rates.append(self.values_[s:e] if k else self.values_[:0])
        pred = self.toolkit.rate(hists, rates, items)
        missing = np.isnan(pred)
        self.fallbacks += int(missing.sum())
        pred[missing] = self.cf.predict(users[missing], items[missing])
        return np.clip(pred, 1.0, 5.0) if self.config.clip else pred


def rmse_mae(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """{"rmse", "mae"} of predictions against true ratings (n,)."""
    err = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
