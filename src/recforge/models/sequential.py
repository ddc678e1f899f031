"""What GRU4Rec, SASRec, BERT4Rec and HSTU share: their common config and the Recommender adapter around a net.

A sequential model file defines its config (a subclass of :class:`SequentialConfig`, or of :class:`AttentionConfig`
for the transformers), an ``nn.Module`` implementing :class:`SequenceNet`, and a subclass of
:class:`SequentialRecommender` that says how to build the net. Fitting builds the training tensors once
(``recforge.data.batches``) and hands the net to the one :class:`~recforge.train.trainer.Trainer`; scoring a user
or an ad-hoc history runs the net on the last ``max_len`` items and scores every item from the final position.
Sequential models are ``HistoryScorer`` and ``LogProb`` (a softmax over items); HSTU is a ``TimedHistoryScorer``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.config import check_choices
from recforge.data.batches import SequenceData, build_sequence_data, last_window
from recforge.data.interactions import Interactions
from recforge.data.jagged import gather_jagged
from recforge.errors import ConfigError, UnknownIdError
from recforge.models.base import HistoryScoring, TrainerFit
from recforge.models.validation import early_stopping_metric
from recforge.nn.losses import NEGATIVES_FOR, prior_logit, sequence_loss
from recforge.protocols import Histories, TimedHistoryScorer
from recforge.train.trainer import TrainConfig

log = logging.getLogger(__name__)

#: users scored per forward pass at inference (bounds memory by SCORE_BATCH x n_items)
SCORE_BATCH = 1024
#: at most this many history positions (rows x width) per forward pass at inference
SCORE_TOKENS = 8192


Loss = Literal["ce", "bce", "sampled_softmax", "gbce"]
Sampler = Literal["uniform", "popularity"]


@dataclass(frozen=True)
class SequentialConfig:
    """The hyper-parameters every sequential model has; each model's config extends it with its own fields (the
    fields stay at the top level, so ``--set dropout=0.3`` or ``--set sliding=true`` works for all four models)."""

    #: hyper-parameter search space shared by the sequential models (see recforge.experiments.tune); keys are
    #: config fields, ``train.*`` the Trainer's
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dim": ("choice", (32, 64, 128)), "n_layers": ("int", 1, 3), "dropout": ("float", 0.0, 0.5),
        "train.lr": ("log", 1e-4, 1e-2), "train.weight_decay": ("choice", (0.0, 1e-4, 1e-2))}

    dim: int = 64  # embedding / hidden size
    n_layers: int = 2  # stacked layers (transformer blocks, GRU layers, HSTU layers)
    dropout: float = 0.2  # dropout on embeddings and layer outputs
    max_len: int = 50  # history truncated to the last max_len items
    loss: Loss = "ce"  # ce (full softmax) | bce | sampled_softmax | gbce
    n_negatives: int = 256  # negatives for sampled losses (bce uses at most 8 per position)
    sampler: Sampler = "uniform"  # negative sampler: uniform | popularity (with logQ correction)
    gbce_t: float = 0.75  # gBCE calibration parameter t
    temperature: float = 0.0  # > 0: cosine scores / temperature (L2-normalised states and items); 0: dot
    sliding: bool = False  # sliding-window augmentation for histories longer than max_len
    train: TrainConfig = field(default_factory=TrainConfig)  # the Trainer's settings

    def __post_init__(self) -> None:
        check_choices(self)
        if self.dim < 1 or self.max_len < 1 or self.n_layers < 1:
            raise ConfigError(f"dim, max_len and n_layers must be >= 1 (dim={self.dim}, max_len={self.max_len}, "
                              f"n_layers={self.n_layers})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_negatives < 1:
            raise ConfigError(f"n_negatives must be >= 1, got {self.n_negatives}")
        if not 0.0 <= self.gbce_t <= 1.0:
            raise ConfigError(f"gbce_t must be in [0, 1], got {self.gbce_t}")
        if not self.temperature >= 0.0:
            raise ConfigError(f"temperature must be >= 0 (0 = dot-product scores), got {self.temperature}")


@dataclass(frozen=True)
class AttentionConfig(SequentialConfig):
    """:class:`SequentialConfig` plus the attention heads of the transformer models (SASRec, BERT4Rec, HSTU)."""

    n_heads: int = 2  # attention heads (must divide dim)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_heads < 1 or self.dim % self.n_heads:
            raise ConfigError(f"n_heads must divide dim (dim={self.dim}, n_heads={self.n_heads})")


def _chunks(widths: np.ndarray) -> Iterator[tuple[int, int]]:
    """Row ranges [s, e) over ascending ``widths`` (B,) with at most SCORE_BATCH rows and (rows x widest) at most
    SCORE_TOKENS positions (a single row may exceed it)."""
    s = 0
    while s < len(widths):
        cand = widths[s : s + SCORE_BATCH]
        # cost of taking the first r rows is r * cand[r-1], increasing in r: count the r that fit
        fits = int(np.searchsorted(np.arange(1, len(cand) + 1) * cand, SCORE_TOKENS, side="right"))
        e = s + max(1, fits)
        yield s, e
        s = e


class SequenceNet(nn.Module):
    """A next-item network. Subclasses implement :meth:`encode` and :attr:`item_weight` (the tied output table).

    ``forward(batch) -> loss`` so that DistributedDataParallel sees the whole training computation.
    With ``temperature`` > 0 the output head scores cos(state, item) / temperature (both L2-normalised, as HSTU's
    and its SASRec baseline's published configurations do) instead of the dot product; the per-item bias is kept.
    """

    def __init__(self, n_items: int, loss: str, gbce_t: float, temperature: float = 0.0):
        super().__init__()
        self.n_items, self.loss_name, self.gbce_t, self.temperature = n_items, loss, gbce_t, temperature
        self.out_bias = nn.Parameter(torch.zeros(n_items + 1))

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """items (B, L) left-padded, times (B, L) or None -> hidden states (B, L, D)."""
        raise NotImplementedError

    @property
    def item_weight(self) -> torch.Tensor:
        """Output table (>= n_items+1, D): row i scores item i; tied to the input item embeddings."""
        raise NotImplementedError

    def score_space(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (..., D), output table (V, D)) as the scores use them: their dot products are the logits."""
        if not self.temperature:
            return hidden, self.item_weight
        return (F.normalize(hidden, dim=-1, eps=1e-6) / self.temperature,
                F.normalize(self.item_weight, dim=-1, eps=1e-6))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden, weight = self.score_space(self.encode(batch["input"], batch.get("time")))
        return sequence_loss(self.loss_name, hidden, batch, weight, self.n_items, self.out_bias, self.gbce_t)

    def last_hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state after each left-padded history: items (B, L) (+ times) -> (B, D). Models may override it
        to skip work whose result only feeds the other positions."""
        return self.encode(items, times)[:, -1]

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-item scores from hidden states: (B, D) -> (B, n_items+1)."""
        hidden, weight = self.score_space(hidden)
        # addmm: one (B, n_items+1) allocation; "@ then + bias" makes two (50 MB each for 1,024 Beauty users)
        return torch.addmm(self.out_bias.to(hidden.dtype), hidden, weight[: self.n_items + 1].T)


class SequentialRecommender(HistoryScoring, TrainerFit):
    """Recommender adapter for a :class:`SequenceNet`: training through the Trainer, scoring from histories, and
    ``log_prob`` (the next-item softmax over items)."""

    config: SequentialConfig
    net_: SequenceNet | None = None

    # ------------------------------------------------------------------ to implement per model
    def _build_net(self, n_items: int) -> SequenceNet:
        raise NotImplementedError

    def _objective(self, n_items: int) -> dict[str, Any]:
        """The training objective's arguments of ``build_sequence_data``: causal next-item pairs by default (BERT4Rec
        overrides it with cloze masking)."""
        return {"objective": "next"}

    # ------------------------------------------------------------------ training
    @property
    def _timed(self) -> bool:
        """True for models that declare timestamps (TimedHistoryScorer): training windows then carry times."""
        return isinstance(self, TimedHistoryScorer)

    def training_data(self, train: Interactions) -> SequenceData:
        """The pre-built training tensors for ``train`` (windows of max_len + 1 items)."""
        cfg = self.config
        items, offsets = train.sequences()
        prob = None
        if cfg.sampler == "popularity":
            prob = torch.from_numpy(train.item_counts().astype(np.float64))
        return build_sequence_data(
            items, offsets, train.n_items, cfg.max_len,
            times=train.time if self._timed else None,
            sliding=cfg.sliding,
            **self._objective(train.n_items),
            negatives=NEGATIVES_FOR[cfg.loss],
            n_negatives=cfg.n_negatives if cfg.loss != "bce" else min(cfg.n_negatives, 8),
            sample_prob=prob,
        )

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        torch.manual_seed(cfg.train.seed)  # initial weights are part of what the seed fixes
        self.net_ = self._build_net(train.n_items)
        self._store_sequences(train)
        data = self.training_data(train)
        with torch.no_grad():  # binary losses start in balance (see prior_logit); a no-op for the softmax ones
            self.net_.out_bias.fill_(prior_logit(cfg.loss, data.n_negatives, train.n_items, cfg.gbce_t))
        evaluate_fn = early_stopping_metric(self, train, valid, cfg.train.eval_metric, cfg.train.eval_users,
                                            cfg.train.seed)

        log.info("%s: %d training windows of %d items, %d parameters", self.name, len(data), cfg.max_len + 1,
                 sum(p.numel() for p in self.net_.parameters()))
        self._train(self.net_, data, evaluate_fn)

    def _store_sequences(self, train: Interactions) -> None:
        items, offsets = train.sequences()
        self.seq_items_ = torch.from_numpy(np.array(items, dtype=np.int64))
        self.seq_offsets_ = torch.from_numpy(np.array(offsets, dtype=np.int64))
        self.seq_times_ = torch.from_numpy(np.array(train.time, dtype=np.int64))

    # ------------------------------------------------------------------ scoring
    def _device(self) -> torch.device:
        return next(self.net_.parameters()).device

    def _run(self, window: np.ndarray, times: np.ndarray | None) -> torch.Tensor:
        """Left-padded windows (B, L) (+ times) -> scores (B, n_items+1) on CPU."""
        with torch.inference_mode():
            return self.net_.scores(self._hidden(window, times)).float().cpu()

    def _hidden(self, window: np.ndarray, times: np.ndarray | None) -> torch.Tensor:
        """Left-padded windows (B, L) (+ times) -> the hidden state after each window (B, D), on the net's device.

        Rows are processed in length order, in chunks of at most SCORE_BATCH rows and SCORE_TOKENS positions, each
        chunk cut to its longest history plus one padding column: positions are counted from the right, so this is
        the same computation with less padding. With short histories (Amazon: ~8 items in a 50-item window) this
        skips most of the encoder's work; the token budget keeps one long history from widening a whole chunk.
        """
        self.net_.eval()
        dev = self._device()
        lengths = (window > 0).sum(1)
        order = np.argsort(lengths, kind="stable")
        widths = np.minimum(window.shape[1], lengths[order] + 1)
        # (B, D), filled chunk by chunk; every net's hidden size is its output table's width
        hidden = torch.empty((len(window), self.net_.item_weight.shape[1]), device=dev)
        with torch.inference_mode():
            for s, e in _chunks(widths):
                rows, width = order[s:e], int(widths[e - 1])  # rows are sorted: the last is the widest
                w = torch.from_numpy(window[rows, -width:]).to(dev)
                t = torch.from_numpy(times[rows, -width:]).to(dev) if times is not None else None
                hidden[torch.from_numpy(rows).to(dev)] = self.net_.last_hidden(w, t)
        return hidden

    def _window(self, items: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return last_window(items, offsets, self.config.max_len)

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray, times: np.ndarray | None = None
                         ) -> torch.Tensor:
        return self._run(self._window(items, offsets), self._window(times, offsets) if times is not None else None)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self._run(*self._user_windows(users))

    def _user_windows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Training users (U,) -> their last windows (U, L) and, for timed models, the windows' times (U, L)."""
        offs = self.seq_offsets_.numpy()
        items, sub = gather_jagged(self.seq_items_.numpy(), offs, users)
        times = None
        if self._timed:
            t, _ = gather_jagged(self.seq_times_.numpy(), offs, users)
            times = self._window(t, sub)
        return self._window(items, sub), times

    # ------------------------------------------------------------------ Embedder
    # Scores are state . item + bias[item] (cosine / temperature for nets with a temperature). Appending a 1 to
    # the state and the bias to each item vector makes them one inner product, so an index can serve the model.
    @torch.inference_mode()
    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        """Training users (U,) -> query vectors (U, D+1): the state after their training sequence in score space,
        then 1. ``user_embeddings(u) @ item_embeddings().T`` equals ``score(u)`` on items 1..n_items."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 1 or users.max() > self.n_users):
            raise UnknownIdError(f"dense user ids must be in 1..{self.n_users}")
        state, _ = self.net_.score_space(self._hidden(*self._user_windows(users)))
        return torch.cat([state, torch.ones_like(state[:, :1])], dim=1).float().cpu()

    @torch.inference_mode()
    def item_embeddings(self) -> torch.Tensor:
        """Item vectors (n_items+1, D+1): the output table in score space, then the item's bias; row 0 is padding."""
        self._check_fitted()
        probe = torch.zeros((1, self.net_.item_weight.shape[1]), device=self._device())
        _, weight = self.net_.score_space(probe)
        n = self.n_items + 1
        return torch.cat([weight[:n], self.net_.out_bias[:n, None].to(weight.dtype)], dim=1).float().cpu()

    def history(self, dense_user: int) -> np.ndarray:
        """A training user's items in time order, dense ids int64 (n,); empty for the unknown user 0."""
        self._check_fitted()
        if dense_user == 0:
            return np.zeros(0, np.int64)
        start, stop = int(self.seq_offsets_[dense_user]), int(self.seq_offsets_[dense_user + 1])
        return self.seq_items_[start:stop].numpy().astype(np.int64)

    @torch.inference_mode()
    def log_prob(self, histories: Histories, targets: np.ndarray) -> torch.Tensor:
        """log p(target | history) under the softmax of the next-item scores over items 1..n_items (the padding
        column 0 is excluded): B histories and dense target ids (B,) -> (B,) float32."""
        targets = np.asarray(targets, dtype=np.int64)
        scores = self.score_histories(histories)  # column 0 is -inf: it takes no probability mass
        if targets.shape != (scores.shape[0],):
            raise ConfigError(f"targets must have one id per history ({scores.shape[0]}), got shape {targets.shape}")
        if targets.size and (targets.min() < 1 or targets.max() > self.n_items):
            raise UnknownIdError(f"dense item ids must be in 1..{self.n_items}")
        return torch.log_softmax(scores, dim=1)[torch.arange(len(targets)), torch.from_numpy(targets)]

    def log_prob_module(self) -> nn.Module:
        """The network (TrainableLogProb): alignment updates its parameters in place."""
        self._check_fitted()
        return self.net_

    def differentiable_log_prob(self, histories: Histories, items: np.ndarray) -> torch.Tensor:
        """log p(items[b, m] | history b) under the next-item softmax over 1..n_items, with gradients: B histories,
        dense ids (B, M) -> (B, M), in the net's current mode on its device (timestamps are not used)."""
        hist, offsets = self._jagged(histories)
        items = np.asarray(items, dtype=np.int64)
        if items.ndim != 2 or items.shape[0] != len(offsets) - 1:
            raise ConfigError(f"items must have shape ({len(offsets) - 1}, M), got {items.shape}")
        if items.size and (items.min() < 1 or items.max() > self.n_items):
            raise UnknownIdError(f"dense item ids must be in 1..{self.n_items}")
        dev = self._device()
        window = torch.from_numpy(self._window(hist, offsets)).to(dev)
        logits = self.net_.scores(self.net_.last_hidden(window))[:, 1:]  # (B, n_items): the padding column dropped
        return torch.log_softmax(logits.float(), dim=1).gather(1, torch.from_numpy(items - 1).to(dev))

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        state.update({"seq.items": self.seq_items_, "seq.offsets": self.seq_offsets_, "seq.times": self.seq_times_})
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net_ = self._build_net(len(self.item_vocab))
        # assign: the parameters become the loaded tensors instead of copies, so weights a server memory-maps
        # (load_artifact(mmap=True)) stay shared between its worker processes
        self.net_.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")}, assign=True)
        self.net_.eval()
        self.seq_items_, self.seq_offsets_, self.seq_times_ = state["seq.items"], state["seq.offsets"], state["seq.times"]
