"""Reward models over (history, item) pairs: Bradley–Terry (``rm_bt``) and the general preference model (``rm_gpm``).

Both read a history with the transformer encoder of :mod:`recforge.nn.attention` (the last ``max_len`` items, left
padded) and give the logit of "item a is preferred to item b after history h"::

    rm_bt:   logit(h, a, b) = r(h, a) - r(h, b),          r(h, i) = <u(h), e_i> + b_i
    rm_gpm:  logit(h, a, b) = v(h, a)^T R(h) v(h, b),     v in R^{2k}, R(h) = blockdiag(lambda_l(h) [[0, 1], [-1, 0]])

The GPM operator is skew-symmetric, so logit(h, a, b) = -logit(h, b, a) and logit(h, a, a) = 0, yet it is not a
difference of two scores: it represents cyclic preferences (rock < paper < scissors < rock) that Bradley–Terry
cannot (BT orders every item on one line).

``more = True`` (multi-objective reward modelling) re-weights the pair sources in every batch: each source's mean loss
is weighted in proportion to how well its gradient on the model's head agrees (cosine, clipped at 0) with the mean of
the sources' gradients, so a large or idiosyncratic source cannot dominate the preference the sources share. (The
min-norm MGDA weighting was tried first: on the multi-source synthetic world it put 73-94 % of the weight on the
noisiest source and raised the shared-preference ECE, see docs/alignment.md.)

``temperature`` (fitted on validation pairs by :func:`recforge.align.evaluation.fit_temperature`) divides every logit;
it is saved with the model. A fitted model is saved as an artifact of table ``reward_model``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.artifacts import load_artifact, save_artifact
from recforge.config import from_dict, to_dict
from recforge.data.batches import last_window
from recforge.data.jagged import as_jagged
from recforge.data.preferences import PreferencePairs
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError, NotFittedError, UnknownIdError
from recforge.nn.attention import TransformerEncoder
from recforge.protocols import Histories
from recforge.registry import resolve

log = logging.getLogger(__name__)

TABLE = "reward_model"
#: (history, item) rows per forward pass at inference
INFER_BATCH = 4096
#: lower bound of the GPM eigenvalues
LAMBDA_FLOOR = 1.0


@dataclass(frozen=True)
class RewardConfig:
    """Hyper-parameters shared by the reward models."""

    dim: int = 64  # embedding / hidden size of the history encoder and the items
    n_layers: int = 1  # transformer blocks of the history encoder
    n_heads: int = 2  # attention heads (must divide dim)
    dropout: float = 0.1  # dropout in the encoder during training
    max_len: int = 50  # histories truncated to their last max_len items
    k: int = 4  # rm_gpm: preference vectors have 2k dimensions (k skew-symmetric 2x2 blocks)
    more: bool = False  # multi-objective: per-source min-norm gradient re-weighting in every batch
    epochs: int = 10  # passes over the pairs (the epoch of lowest validation log loss is kept)
    batch_size: int = 512  # pairs per step
    lr: float = 2e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam weight decay
    patience: int = 3  # stop after this many epochs without a better validation log loss
    seed: int = 0  # initial weights and batch order

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_layers < 1 or self.max_len < 1 or self.k < 1:
            raise ConfigError(f"dim, n_layers, max_len and k must be >= 1 (dim={self.dim}, n_layers={self.n_layers}, "
                              f"max_len={self.max_len}, k={self.k})")
        if self.n_heads < 1 or self.dim % self.n_heads:
            raise ConfigError(f"n_heads must divide dim (dim={self.dim}, n_heads={self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ConfigError(f"epochs, batch_size and patience must be >= 1 (epochs={self.epochs}, "
                              f"batch_size={self.batch_size}, patience={self.patience})")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"lr must be > 0 and weight_decay >= 0 (lr={self.lr}, weight_decay={self.weight_decay})")


class _Net(nn.Module):
    """History encoder plus item table; subclasses define ``logits``."""

    def __init__(self, n_items: int, cfg: RewardConfig):
        super().__init__()
        self.encoder = TransformerEncoder(n_items + 1, cfg.max_len, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.dropout,
                                          causal=True)

    def history(self, window: torch.Tensor) -> torch.Tensor:
        """Left-padded windows (B, L) -> history vectors (B, D)."""
        return self.encoder(window, last_only=True)[:, -1]

    def logits(self, u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """History vectors (B, D), item ids a, b (B, M) -> logit of a preferred to b (B, M)."""
        raise NotImplementedError

    def head(self) -> list[nn.Parameter]:
        """The parameters MORE balances the sources' gradients on."""
        raise NotImplementedError


class _BTNet(_Net):
    def __init__(self, n_items: int, cfg: RewardConfig):
        super().__init__(n_items, cfg)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))

    def reward(self, u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, D), item ids (B, M) -> r(h, i) (B, M)."""
        e = self.encoder.item_emb(items)  # (B, M, D)
        return torch.einsum("bd,bmd->bm", self.proj(u), e) + self.bias[items]

    def logits(self, u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.reward(u, a) - self.reward(u, b)

    def head(self) -> list[nn.Parameter]:
        return [*self.proj.parameters(), self.bias]


class _GPMNet(_Net):
    def __init__(self, n_items: int, cfg: RewardConfig):
        super().__init__(n_items, cfg)
        self.k = cfg.k
        self.vec = nn.Sequential(nn.Linear(2 * cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, 2 * cfg.k))
        self.eig = nn.Linear(cfg.dim, cfg.k)

    def vectors(self, u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, D), item ids (B, M) -> preference vectors (B, M, k, 2), each 2-d block of unit length."""
        e = self.encoder.item_emb(items)
        x = torch.cat([u[:, None].expand_as(e) * e, e], dim=-1)
        return F.normalize(self.vec(x).view(*items.shape, self.k, 2), dim=-1, eps=1e-6)

    def logits(self, u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        va, vb = self.vectors(u, a), self.vectors(u, b)
        # (B, k) > 0: how strongly each block's cycle speaks for h; the floor keeps the blocks' directions learning
        # (with lambda -> 0 at random initial directions every gradient would vanish)
        lam = F.softplus(self.eig(u)) + LAMBDA_FLOOR
        cross = va[..., 0] * vb[..., 1] - va[..., 1] * vb[..., 0]  # (B, M, k): sin of the angle from a to b
        return (cross * lam[:, None]).sum(-1)

    def head(self) -> list[nn.Parameter]:
        return list(self.vec[-1].parameters()) + list(self.eig.parameters())


class RewardModel:
    """Base class of the reward models: fit on :class:`PreferencePairs`, then preference logits and win rates for
    ad-hoc histories. Ids are dense (1..n_items); histories are oldest first."""

    name: ClassVar[str] = "reward_model"
    config_class: ClassVar[type] = RewardConfig

    def __init__(self, config: RewardConfig | None = None, **overrides: Any):
        if config is None:
            config = from_dict(RewardConfig, overrides)
        elif overrides:
            config = from_dict(RewardConfig, {**to_dict(config), **overrides})
        if not isinstance(config, RewardConfig):
            raise ConfigError(f"{type(self).__name__} expects a RewardConfig, got {type(config).__name__}")
        self.config = config
        self.temperature = 1.0
        self.net_: _Net | None = None
        self.item_vocab: Vocab | None = None
        self.user_vocab: Vocab | None = None
        self.info: dict[str, Any] = {}  # split hash, pair fingerprint and sources of the training pairs
        self.history_: list[dict[str, float]] = []

    def _build(self, n_items: int) -> _Net:
        raise NotImplementedError

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.item_vocab)

    @property
    def split_hash(self) -> str | None:
        """Hash of the split whose training part the pairs came from (None for pairs of unknown origin)."""
        return self.info.get("split_hash")

    def _check_fitted(self) -> None:
        if self.net_ is None:
            raise NotFittedError(f"reward model {self.name!r} is not fitted")

    # ------------------------------------------------------------------------------------------------ training
    def fit(self, pairs: PreferencePairs, valid: PreferencePairs | None = None) -> Self:
        """Fit on ``pairs`` (every rejected column is one comparison); ``valid`` picks the epoch (lowest log loss)
        and stops early. Returns self."""
        cfg = self.config
        if valid is not None and valid.item_vocab != pairs.item_vocab:
            raise DataError("validation pairs use another item vocabulary than the training pairs")
        torch.manual_seed(cfg.seed)
        self.item_vocab, self.user_vocab = pairs.item_vocab, pairs.user_vocab
        self.temperature = 1.0
        self.net_ = net = self._build(len(pairs.item_vocab))
        self.info = {"split_hash": pairs.meta.get("split_hash"), "pairs": pairs.fingerprint(),
                     "sources": list(pairs.sources), "n_pairs": len(pairs)}
        window, chosen, rejected = self._tensors(pairs)
        source = torch.from_numpy(np.array(pairs.source))
        weight = torch.ones(len(pairs)) if pairs.weight is None else torch.from_numpy(np.array(pairs.weight))
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        best, best_state, stale = np.inf, None, 0
        self.history_ = []
        for epoch in range(cfg.epochs):
            net.train()
            order = torch.randperm(len(pairs), generator=gen)
            total, n_seen = 0.0, 0
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                u = net.history(window[idx])
                c = chosen[idx, None].expand_as(rejected[idx])
                loss_rows = -F.logsigmoid(net.logits(u, c, rejected[idx])).mean(1) * weight[idx]  # (b,)
                loss = self._combine(loss_rows, source[idx], len(pairs.sources)) if cfg.more else loss_rows.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss_rows.sum().detach())
                n_seen += len(idx)
            row = {"epoch": epoch + 1, "train_loss": total / n_seen}
            if valid is not None:
                row["valid_loss"] = float(-F.logsigmoid(torch.from_numpy(self.margins(valid))).mean())
            self.history_.append(row)
            log.info("%s epoch %d: %s", self.name, epoch + 1, row)
            score = row.get("valid_loss", row["train_loss"])
            if score < best - 1e-5:
                best, best_state, stale = score, copy.deepcopy(net.state_dict()), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return self

    def _combine(self, loss_rows: torch.Tensor, source: torch.Tensor, n_sources: int) -> torch.Tensor:
        """MORE: the per-source mean losses weighted by :func:`agreement_weights` of their gradients on the head."""
        present = torch.unique(source)
        if len(present) < 2:
            return loss_rows.mean()
        losses = torch.stack([loss_rows[source == s].mean() for s in present])
        head = self.net_.head()
        grads = []
        for loss_s in losses:
            g = torch.autograd.grad(loss_s, head, retain_graph=True)
            grads.append(torch.cat([x.reshape(-1) for x in g]))
        w = agreement_weights(torch.stack(grads).detach())
        return (w * losses).sum()  # weights sum to 1: a mean loss on the scale of the uniform one

    def _tensors(self, pairs: PreferencePairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if pairs.item_vocab != self.item_vocab:
            raise DataError("the pairs use another item vocabulary than the reward model")
        window = torch.from_numpy(last_window(pairs.history, pairs.history_offsets, self.config.max_len))
        return window, torch.from_numpy(np.array(pairs.chosen)), torch.from_numpy(np.array(pairs.rejected))

    # ------------------------------------------------------------------------------------------------ inference
    def _checked(self, histories: Histories, *arrays: np.ndarray) -> tuple[torch.Tensor, list[np.ndarray]]:
        """Windows (B, L) of the histories and the id arrays (B, M) as int64, ids checked."""
        self._check_fitted()
        items, offsets = as_jagged(histories)
        arrays = [np.array(x, dtype=np.int64) for x in arrays]
        n = len(offsets) - 1
        if any(x.ndim != 2 or x.shape != arrays[0].shape or x.shape[0] != n for x in arrays):
            raise ConfigError(f"item arrays must all have shape ({n}, M), got {[x.shape for x in arrays]}")
        for arr in (items, *arrays):
            if arr.size and (arr.min() < 1 or arr.max() > self.n_items):
                raise UnknownIdError(f"dense item ids must be in 1..{self.n_items}")
        return torch.from_numpy(last_window(items, offsets, self.config.max_len)), arrays

    @torch.inference_mode()
    def preference_logits(self, histories: Histories, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        """B histories, dense item ids a, b (B, M) -> float32 logits (B, M) of "a preferred to b", divided by the
        fitted temperature; antisymmetric in (a, b)."""
        window, (a, b) = self._checked(histories, a, b)
        self.net_.eval()
        out = torch.empty(a.shape)
        step = max(1, INFER_BATCH // max(1, a.shape[1]))
        for s in range(0, len(a), step):
            u = self.net_.history(window[s : s + step])
            out[s : s + step] = self.net_.logits(u, torch.from_numpy(a[s : s + step]), torch.from_numpy(b[s : s + step]))
        return out / self.temperature

    def margins(self, pairs: PreferencePairs) -> np.ndarray:
        """Logits of chosen over each rejected item (B, K), float64."""
        chosen = np.repeat(np.asarray(pairs.chosen)[:, None], pairs.k, axis=1)
        return self.preference_logits(pairs.histories(), chosen, pairs.rejected).double().numpy()

    def win_rate(self, histories: Histories, items: np.ndarray, against: np.ndarray) -> torch.Tensor:
        """Mean preference probability of each item over a set of others: items (B, M), against (B, J) ->
        (B, M) = mean_j sigmoid(logit(h, i, j)). The reward-model score of a recommendation list."""
        items, against = np.asarray(items, dtype=np.int64), np.asarray(against, dtype=np.int64)
        m, j = items.shape[1], against.shape[1]
        a = np.repeat(items, j, axis=1)
        b = np.tile(against, (1, m))
        return torch.sigmoid(self.preference_logits(histories, a, b)).view(len(items), m, j).mean(-1)

    # ------------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model as an artifact (table ``reward_model``); vocabularies, temperature and the training
        pairs' split hash and fingerprint go into ``extra``."""
        self._check_fitted()
        extra = {"item_vocab": self.item_vocab.to_json(), "user_vocab": self.user_vocab.to_json(),
                 "temperature": self.temperature, "info": self.info, "history": self.history_}
        return save_artifact(path, table=TABLE, name=self.name, config=to_dict(self.config),
                             tensors=dict(self.net_.state_dict()), extra=extra)


def load_reward_model(path: str | Path) -> RewardModel:
    """A reward model saved by :meth:`RewardModel.save` (sha256 verified). DataError naming the path otherwise."""
    art = load_artifact(path, table=TABLE)
    try:
        cls = resolve(TABLE, art.name)
        model = cls(from_dict(RewardConfig, art.config))
        model.item_vocab = Vocab.from_json(art.extra["item_vocab"])
        model.user_vocab = Vocab.from_json(art.extra["user_vocab"])
        model.temperature = float(art.extra["temperature"])
        model.info = dict(art.extra.get("info", {}))
        model.history_ = list(art.extra.get("history", []))
        model.net_ = model._build(len(model.item_vocab))
        model.net_.load_state_dict(art.tensors)
        model.net_.eval()
    except Exception as exc:  # unknown name, bad config, misshapen tensors: one line, never a traceback
        raise DataError(f"cannot load reward model from {art.path}: {type(exc).__name__}: {exc}") from None
    return model


class BradleyTerryRM(RewardModel):
    """Bradley–Terry: a scalar reward r(h, i); P(a > b | h) = sigmoid(r(h, a) - r(h, b))."""

    name: ClassVar[str] = "rm_bt"

    def _build(self, n_items: int) -> _Net:
        return _BTNet(n_items, self.config)

    @torch.inference_mode()
    def reward(self, histories: Histories, items: np.ndarray) -> torch.Tensor:
        """B histories, dense ids (B, M) -> rewards r(h, i) / temperature (B, M)."""
        window, (items,) = self._checked(histories, items)
        self.net_.eval()
        out = torch.empty(items.shape)
        step = max(1, INFER_BATCH // max(1, items.shape[1]))
        for s in range(0, len(items), step):
            out[s : s + step] = self.net_.reward(self.net_.history(window[s : s + step]),
                                                 torch.from_numpy(items[s : s + step]))
        return out / self.temperature


class GeneralPreferenceRM(RewardModel):
    """General preference model: 2k-dimensional preference vectors and a skew-symmetric operator whose k
    non-negative eigenvalues depend on the history; represents cyclic preferences."""

    name: ClassVar[str] = "rm_gpm"

    def _build(self, n_items: int) -> _Net:
        return _GPMNet(n_items, self.config)


def agreement_weights(grads: torch.Tensor) -> torch.Tensor:
    """Convex weights (S,) from per-source gradients (S, P): w_s proportional to max(0, cos(g_s, mean of the g's)),
    so the sources that pull along the shared direction count and an idiosyncratic one is muted (uniform when no
    source agrees)."""
    mean = grads.mean(0)
    cos = F.cosine_similarity(grads, mean[None], dim=1, eps=1e-12).clamp_min(0.0)
    if float(cos.sum()) <= 0:
        return torch.full((len(grads),), 1.0 / len(grads))
    return (cos / cos.sum()).float()
