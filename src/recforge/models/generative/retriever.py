"""What every semantic-ID retriever shares (``tiger_decoder``, ``tiger``): the SID table, training windows, the three
decodings, list generation, preference steering, the likelihood protocols and persistence.

A network (:class:`SidNet`) names the next item token by token; this module turns it into a recommender:

- **decoding** (``decoding``): ``beam`` (beam search constrained by the prefix trie; the history's own items are never
  decoded; items outside the beam score :data:`FLOOR`), ``exact`` (every item's full-ID likelihood) or ``projection``
  (one product of the final hidden state with an item table trained beside the token loss, ``head = "projection"``);
- **list mode** (:meth:`SidRetriever.generate`): the next m items as one token sequence, each item decoded by the
  constrained beam after the ones already generated, never repeating an item;
- **prefix tokens**: a hashed user token (``tiger``'s ``user_buckets``) and **preference tokens** (Mender): with
  ``preference = "genre"`` the attribute values of that group (from the SID table, which ``recforge sid build`` fills
  from the item catalogue) are prepended to the input — at training the target item's own values, dropped with
  probability ``preference_drop``; at inference the values given to :meth:`SidRetriever.steer`;
- **sparse MoE** (``experts`` > 0): every feed-forward is a top-2 mixture of experts (``nn.moe``) whose
  load-balancing loss joins the training loss with weight ``moe_weight``.

Shapes: B histories, S history tokens, P prefix tokens, T tokens per ID, D hidden size.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from recforge.config import check_choices
from recforge.data.batches import last_window
from recforge.data.interactions import Interactions
from recforge.data.jagged import gather_jagged
from recforge.errors import ConfigError, DataError, UnknownIdError
from recforge.models.base import HistoryScoring, TrainerFit
from recforge.models.generative.decoding import (
    PrefixTrie,
    beam_search,
    exact_log_likelihood,
    target_log_likelihood,
)
from recforge.models.generative.semantic_ids import SemanticIds, SidConfig, build_semantic_ids, check_unique
from recforge.models.rank import top_k_candidates
from recforge.models.validation import early_stopping_metric
from recforge.protocols import Histories
from recforge.train.trainer import TrainConfig

log = logging.getLogger(__name__)

#: histories decoded per forward pass at inference
SCORE_BATCH = 256
#: histories per batch under exact decoding: its per-level table is (B, prefixes, K) floats (on Amazon Beauty about
#: 10 MB a history; 256 histories took the process to 3.9 GB)
EXACT_BATCH = 32
#: the score of an item outside the beam (finite, below any log-likelihood a beam can hold)
FLOOR = -1.0e9
#: preference tokens kept per item (an item with more attribute values of the group keeps its first ones)
MAX_PREFERENCE = 6

Head = Literal["tokens", "projection"]
Decoding = Literal["beam", "exact", "projection"]


@dataclass(frozen=True)
class SidModelConfig:
    """Settings every semantic-ID retriever shares."""

    sid: str = ""  # folder of a SID table (`recforge sid build`); "" builds one from the training split (sid_config)
    sid_config: SidConfig = field(default_factory=SidConfig)  # how to build the table when sid = ""
    dim: int = 128  # hidden size
    n_layers: int = 3  # transformer layers (per stack)
    n_heads: int = 4  # attention heads (must divide dim)
    dropout: float = 0.1  # dropout on embeddings, attention and feed-forward
    max_items: int = 20  # the history is truncated to its last max_items items
    head: Head = "tokens"  # tokens | projection (an item table trained beside the token loss)
    decoding: Decoding = "beam"  # beam | exact | projection (needs head = projection)
    beam: int = 20  # beam width (>= the k asked of topk)
    experts: int = 0  # sparse-MoE feed-forward: experts per layer, top-2 routing (0 = a dense feed-forward)
    moe_weight: float = 0.01  # weight of the MoE load-balancing loss
    preference: str = ""  # attribute group to steer on ("genre"; "*" = every attribute; "" = no steering)
    preference_drop: float = 0.5  # training: probability that an example's preference tokens are dropped
    train: TrainConfig = field(default_factory=TrainConfig)  # the Trainer's settings

    def __post_init__(self) -> None:
        check_choices(self)
        if self.dim < 1 or self.n_layers < 1 or self.max_items < 1 or self.beam < 1:
            raise ConfigError(f"dim, n_layers, max_items and beam must be >= 1 (dim={self.dim}, "
                              f"n_layers={self.n_layers}, max_items={self.max_items}, beam={self.beam})")
        if self.n_heads < 1 or self.dim % self.n_heads:
            raise ConfigError(f"n_heads must divide dim (dim={self.dim}, n_heads={self.n_heads})")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.preference_drop <= 1.0:
            raise ConfigError(f"dropout must be in [0, 1) and preference_drop in [0, 1], got {self.dropout}, "
                              f"{self.preference_drop}")
        if self.decoding == "projection" and self.head != "projection":
            raise ConfigError("decoding = 'projection' needs head = 'projection' (the item table is trained with it)")
        if self.experts == 1 or self.experts < 0 or self.moe_weight < 0:
            raise ConfigError(f"experts must be 0 (dense) or >= 2 and moe_weight >= 0, got experts={self.experts}, "
                              f"moe_weight={self.moe_weight}")


class SidNet(nn.Module):
    """What a retriever network provides (besides ``forward(batch) -> loss``, what the Trainer calls):

    - ``tokens_of(items (B, I)) -> (B, I*T)`` vocabulary tokens of left-padded item windows;
    - ``context(tokens (B, S), prefix (B, P) | None, first_pos) -> ctx`` with ``ctx.last`` (B, D), the hidden state
      that predicts the first token of the next item (``first_pos`` items are generated after the history);
    - ``extend(ctx, seq (B, M, t)) -> (B, M, t, D)`` (``seq`` may span several items in list mode);
    - ``level_logits(hidden, level)`` and ``item_scores(hidden (B, D)) -> (B, n_items+1)`` (projection head).

    Subclasses call :meth:`_register_vocabulary` and own ``tok`` (vocabulary embedding), ``bias`` (vocab,) and
    ``item_head`` (or None); the token layout and the output heads are shared here."""

    offsets: torch.Tensor
    vocab_codes: torch.Tensor
    tok: nn.Embedding
    bias: nn.Parameter
    item_head: nn.Embedding | None

    def _register_vocabulary(self, codes: torch.Tensor, sizes: tuple[int, ...], n_items: int) -> int:
        """Vocabulary: 0 = padding, then each level's values in their own block (level t value c -> offset_t + c + 1).
        Registers ``offsets`` (T,), ``vocab_codes`` (n_items+1, T) and ``level_of_vocab`` (vocab,) -> the vocabulary
        size."""
        self.depth, self.sizes, self.n_items = codes.shape[1], sizes, n_items
        offsets = torch.tensor([0, *np.cumsum(sizes)[:-1].tolist()], dtype=torch.int64) + 1
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("vocab_codes", torch.where(
            torch.arange(n_items + 1)[:, None] > 0, codes + offsets[None], 0), persistent=False)
        level_of = torch.cat([torch.full((s,), t) for t, s in enumerate(sizes)])
        self.register_buffer("level_of_vocab", torch.cat([torch.tensor([-1]), level_of]), persistent=False)
        return int(sum(sizes)) + 1

    def tokens_of(self, items: torch.Tensor) -> torch.Tensor:
        """Left-padded item windows (B, I) -> vocabulary tokens (B, I*T) (0 for padding)."""
        return self.vocab_codes[items].flatten(1)

    def level_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        """Hidden states (..., D) -> logits (..., K_level) of the token at ``level``."""
        lo = int(self.offsets[level])
        hi = lo + self.sizes[level]
        return hidden @ self.tok.weight[lo:hi].T + self.bias[lo:hi]

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Projection head: (B, D) -> (B, n_items+1)."""
        return hidden @ self.item_head.weight.T  # type: ignore[union-attr]  (only called with head="projection")


def hashed_user(users: torch.Tensor, buckets: int) -> torch.Tensor:
    """Dense user ids (B,) -> bucket tokens in 1..buckets (a multiplicative hash; 0 for the unknown user 0)."""
    h = (users.to(torch.int64) * 2654435761) % (2**32) % buckets + 1
    return torch.where(users > 0, h, 0)


class Windows:
    """Training rows for the Trainer: ``windows`` (W, C) left-padded items, ``users`` (W,) their dense users and
    ``target_col`` the column of each row's target item (whose attributes become its preference tokens).

    A batch is ``{"items": (B, w) [, "target": (B, C - split)], "prefix": (B, P)}``: with ``split`` the first
    ``split`` columns are the history (cut to the batch's longest) and the rest the targets; without it the whole
    window is cut to its longest row (a decoder reads and predicts the same sequence)."""

    def __init__(self, windows: torch.Tensor, users: torch.Tensor, target_col: int, split: int | None,
                 prefix_fn: Any):
        self.windows, self.users, self.target_col, self.split = windows, users, target_col, split
        self.prefix_fn = prefix_fn
        hist = windows if split is None else windows[:, :split]
        self.lengths = (hist > 0).sum(1)

    def __len__(self) -> int:
        return len(self.windows)

    def order(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A random order, sorted by length inside blocks of 50 batches (less padding per batch)."""
        perm = torch.randperm(len(self), generator=generator)
        block = 50 * batch_size
        parts = []
        for s in range(0, len(perm), block):
            chunk = perm[s : s + block]
            parts.append(chunk[torch.argsort(self.lengths[chunk], stable=True)])
        return torch.cat(parts)

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        win = self.windows[rows]
        out = {"prefix": self.prefix_fn(self.users[rows], win[:, self.target_col], generator)}
        if self.split is None:
            width = int((win > 0).sum(1).max())
            out["items"] = win[:, -max(width, 2):]
        else:
            hist = win[:, : self.split]
            width = max(int((hist > 0).sum(1).max()), 1)
            out["items"], out["target"] = hist[:, -width:], win[:, self.split :]
        return out


class SidRetriever(HistoryScoring, TrainerFit):
    """Base of the semantic-ID retrievers; a subclass builds its network (:meth:`_make_net`) and its training rows
    (:meth:`_training_rows`)."""

    net_: nn.Module | None = None
    #: how many items :meth:`generate` may produce at most (a subclass trained on lists bounds it)
    max_generated: int | None = None

    # ------------------------------------------------------------------------------------------ subclass hooks
    def _make_net(self, n_items: int, n_prefix: int) -> nn.Module:
        """The network for ``n_items`` items and ``n_prefix`` prefix-token values (0 = padding excluded)."""
        raise NotImplementedError

    def _training_rows(self, items: np.ndarray, offsets: np.ndarray) -> Windows:
        """Training rows from the jagged training sequences."""
        raise NotImplementedError

    @property
    def user_buckets(self) -> int:
        """Hashed user-token buckets (0 = no user token)."""
        return 0

    # ---------------------------------------------------------------------------------------------- fitting
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        if cfg.sid:
            sids = SemanticIds.load(cfg.sid)
            sids.check_train(train)
        else:
            sids = build_semantic_ids(train, cfg.sid_config)
        self._set_sids(sids.codes, sids.sizes, sids.hash, sids.train_fingerprint)
        self._set_preferences(*preference_table(sids, cfg.preference))
        torch.manual_seed(cfg.train.seed)
        self.net_ = self._make_net(train.n_items, self._n_prefix())
        items, offsets = train.sequences()
        self._store_sequences(items, offsets)
        data = self._training_rows(items, offsets)
        evaluate_fn = early_stopping_metric(self, train, valid, cfg.train.eval_metric, cfg.train.eval_users,
                                            cfg.train.seed)
        log.info("%s: SID table %s %s, %d training rows, %d parameters, %d preference values", self.name,
                 self.sid_hash_, self.sizes_, len(data), sum(p.numel() for p in self.net_.parameters()),
                 len(self.pref_names_))
        self._train(self.net_, data, evaluate_fn)

    def _set_sids(self, codes: np.ndarray, sizes: tuple[int, ...], sid_hash: str, fingerprint: str) -> None:
        check_unique(codes[1:], "the SID table's IDs")
        self.codes_ = torch.from_numpy(np.asarray(codes, dtype=np.int64))
        self.sizes_ = tuple(int(s) for s in sizes)
        self.sid_hash_, self.sid_fingerprint_ = sid_hash, fingerprint
        self.trie_ = PrefixTrie.build(self.codes_.numpy(), self.sizes_)

    def _set_preferences(self, table: np.ndarray, names: list[str]) -> None:
        self.pref_table_ = torch.from_numpy(np.asarray(table, dtype=np.int64))  # (n_items+1, P) values 1..len(names)
        self.pref_names_ = list(names)
        self._prefer: torch.Tensor | None = None

    def _n_prefix(self) -> int:
        return len(self.pref_names_) + self.user_buckets

    def _store_sequences(self, items: np.ndarray, offsets: np.ndarray) -> None:
        self.seq_items_ = torch.from_numpy(np.array(items, dtype=np.int64))
        self.seq_offsets_ = torch.from_numpy(np.array(offsets, dtype=np.int64))

    def _training_prefix(self, users: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
                         ) -> torch.Tensor:
        """Prefix tokens of training rows: the target's preference values (dropped with probability
        ``preference_drop``, row-wise) then the hashed user token: (B,) users, (B,) targets -> (B, P)."""
        parts = []
        if self.pref_names_:
            pref = self.pref_table_[targets]
            drop = torch.rand(len(targets), generator=generator) < self.config.preference_drop
            parts.append(pref.masked_fill(drop[:, None], 0))
        if self.user_buckets:
            parts.append(self._user_tokens(users)[:, None])
        return torch.cat(parts, 1) if parts else torch.zeros((len(users), 0), dtype=torch.int64)

    def _user_tokens(self, users: torch.Tensor) -> torch.Tensor:
        tok = hashed_user(users, self.user_buckets)
        return torch.where(tok > 0, tok + len(self.pref_names_), 0)

    def _inference_prefix(self, users: np.ndarray | None, b: int) -> torch.Tensor | None:
        """Prefix tokens at inference: the steered preference (if any) and the users' tokens (known users only)."""
        parts = []
        if self.pref_names_:
            pref = self._prefer if self._prefer is not None else torch.zeros(self.pref_table_.shape[1], dtype=torch.int64)
            parts.append(pref[None].expand(b, -1))
        if self.user_buckets:
            u = torch.zeros(b, dtype=torch.int64) if users is None else torch.from_numpy(np.asarray(users, np.int64))
            parts.append(self._user_tokens(u)[:, None])
        return torch.cat(parts, 1) if parts else None

    # ---------------------------------------------------------------------------------------------- steering
    def preference_values(self) -> list[str]:
        """The preference values this model was trained to steer on ("genre=Comedy", ...); empty without steering."""
        self._check_fitted()
        return list(self.pref_names_)

    @contextlib.contextmanager
    def steer(self, preference: Sequence[str]) -> Iterator[None]:
        """Within the block, every score, top-k and generation is conditioned on ``preference`` (values such as
        "genre=Comedy", or "Comedy" when unambiguous). An unknown value, or a model trained without
        ``preference``, is a ConfigError."""
        self._check_fitted()
        ids = self._preference_ids(preference)
        width = self.pref_table_.shape[1]
        if len(ids) > width:
            raise ConfigError(f"at most {width} preference values at once, got {len(ids)}")
        before = self._prefer
        self._prefer = torch.tensor(ids + [0] * (width - len(ids)), dtype=torch.int64)
        try:
            yield
        finally:
            self._prefer = before

    def _preference_ids(self, preference: Sequence[str]) -> list[int]:
        if not self.pref_names_:
            raise ConfigError(f"this {self.name} model was trained without preference tokens: train it with "
                              "preference=<attribute group> on a SID table built with the item catalogue")
        index = {n: i + 1 for i, n in enumerate(self.pref_names_)}
        by_value: dict[str, list[int]] = {}
        for n, i in index.items():
            by_value.setdefault(n.split("=", 1)[-1], []).append(i)
        ids = []
        for value in preference:
            if value in index:
                ids.append(index[value])
            elif len(by_value.get(value, [])) == 1:
                ids.append(by_value[value][0])
            else:
                shown = ", ".join(self.pref_names_[:12]) + (", ..." if len(self.pref_names_) > 12 else "")
                raise ConfigError(f"unknown preference value {value!r} (known: {shown})")
        return ids

    # ---------------------------------------------------------------------------------------------- scoring
    def _tokens(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """Jagged histories -> history tokens (B, S) cut to the longest row; an empty history is a DataError."""
        lengths = np.diff(offsets)
        if len(lengths) and lengths.min() == 0:
            raise DataError(f"an empty history cannot be decoded ({int((lengths == 0).sum())} of {len(lengths)} "
                            "histories are empty): a generative retriever needs at least one item")
        window = last_window(items, offsets, self.config.max_items)
        width = int(min(self.config.max_items, lengths.max(initial=1)))
        return self.net_.tokens_of(torch.from_numpy(window[:, -width:]))

    def _context(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None, first_pos: int = 1) -> Any:
        tokens = self._tokens(items, offsets)
        return self.net_.context(tokens, self._inference_prefix(users, len(tokens)), first_pos)

    @torch.inference_mode()
    def _score_histories(self, items: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None,
                         exclude: list[np.ndarray] | None = None) -> torch.Tensor:
        """(B, n_items+1): beam log-likelihoods (items outside the beam at FLOOR; the history's own items and
        ``exclude[b]`` (dense ids) are not decoded), every item's exact log-likelihood, or the projection head's
        scores (every history's final hidden state first, then one product with the item table)."""
        self.net_.eval()
        n = len(offsets) - 1
        mode = self.config.decoding
        # batches of similar length: a batch is padded to its longest history, and on Amazon Beauty a random batch
        # of 256 nearly always holds a 20-item history while the mean is 7 (2.8x the tokens of sorted batches)
        order = np.argsort(np.minimum(np.diff(offsets), self.config.max_items), kind="stable")
        out = torch.full((n, self.n_items + 1), FLOOR) if mode != "projection" else torch.empty(0)
        last = []
        step = EXACT_BATCH if mode == "exact" else SCORE_BATCH
        for s in range(0, n, step):
            rows = order[s : s + step]
            sub_items, sub_off = gather_jagged(items, offsets, rows)
            ctx = self._context(sub_items, sub_off, None if users is None else users[rows])
            r = torch.from_numpy(rows)
            if mode == "projection":
                last.append(ctx.last)
            elif mode == "exact":
                out[r] = exact_log_likelihood(self.net_, self.trie_, ctx, self.n_items)
            else:
                banned = self._banned(sub_items, sub_off, None if exclude is None else [exclude[i] for i in rows])
                found, score = beam_search(self.net_, self.trie_, ctx, self.config.beam, banned)
                hit = found > 0
                out[r[:, None].expand_as(found)[hit], found[hit]] = score[hit]
        if mode != "projection":
            return out
        if not last:
            return torch.zeros((0, self.n_items + 1))
        hidden = torch.empty((n, last[0].shape[1]))
        hidden[torch.from_numpy(order)] = torch.cat(last)
        return self.net_.item_scores(hidden)

    def _banned(self, items: np.ndarray, offsets: np.ndarray, exclude: list[np.ndarray] | None = None
                ) -> torch.Tensor:
        """(B, n_items+1) bool: each history's own items, and ``exclude[b]`` (dense ids) when given."""
        b = len(offsets) - 1
        banned = torch.zeros((b, self.n_items + 1), dtype=torch.bool)
        rows = np.repeat(np.arange(b), np.diff(offsets))
        banned[torch.from_numpy(rows), torch.from_numpy(items.astype(np.int64))] = True
        for row, ban in enumerate(exclude or []):
            ban = np.asarray(ban, dtype=np.int64)
            banned[row, torch.from_numpy(ban[(ban > 0) & (ban <= self.n_items)])] = True
        return banned

    def _score(self, users: np.ndarray) -> torch.Tensor:
        items, offsets = gather_jagged(self.seq_items_.numpy(), self.seq_offsets_.numpy(), users)
        return self._score_histories(items, offsets, users)

    def history(self, dense_user: int) -> np.ndarray:
        """A training user's items in time order, dense ids int64 (n,); empty for the unknown user 0."""
        self._check_fitted()
        if dense_user == 0:
            return np.zeros(0, np.int64)
        s, e = int(self.seq_offsets_[dense_user]), int(self.seq_offsets_[dense_user + 1])
        return self.seq_items_[s:e].numpy().astype(np.int64)

    # ---------------------------------------------------------------------------------------------- list mode
    @torch.inference_mode()
    def generate(self, histories: Histories, m: int) -> np.ndarray:
        """List mode: the next ``m`` items of each history as one generated token sequence, item after item (each
        by the constrained beam, conditioned on the items generated before it; no item twice, none of the
        history's): B histories -> dense ids (B, m), 0 where the catalogue runs out."""
        self._check_fitted()
        limit = self.max_generated if self.max_generated is not None else self.config.max_items
        if not 1 <= m <= limit:
            raise ConfigError(f"m must be in 1..{limit} (items generated as one sequence), got {m}")
        self.net_.eval()
        items, offsets = self._jagged(histories)
        out = []
        for s in range(0, len(offsets) - 1, SCORE_BATCH):
            sub_items, sub_off = gather_jagged(items, offsets, np.arange(s, min(s + SCORE_BATCH, len(offsets) - 1)))
            ctx = self._context(sub_items, sub_off, None, first_pos=m)
            banned = self._banned(sub_items, sub_off)
            b = len(sub_off) - 1
            seq = torch.zeros((b, 0), dtype=torch.int64)
            chosen = []
            for _ in range(m):
                found, _ = beam_search(self.net_, self.trie_, ctx, self.config.beam, banned, generated=seq)
                pick = found[:, 0]
                chosen.append(pick)
                banned[torch.arange(b), pick] = True
                banned[:, 0] = False
                seq = torch.cat([seq, self.codes_[pick]], 1)
            out.append(torch.stack(chosen, 1))
        return torch.cat(out).numpy() if out else np.zeros((0, m), np.int64)

    # ---------------------------------------------------------------------------------------------- protocols
    def topk(self, users: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Dense users (U,) -> (items (U, k), scores (U, k)) best first, 0 / -inf padding: the beam's items (``beam``
        must be >= k) or the top of the exact / projection scores, ``exclude[u]`` left out. The scores are those of
        :meth:`score`."""
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if self.config.decoding == "beam" and self.config.beam < k:
            raise ConfigError(f"beam ({self.config.beam}) must be >= k ({k}): a beam of width b decodes b items")
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 1 or users.max() > self.n_users):
            raise UnknownIdError(f"dense user ids must be in 1..{self.n_users}")
        if self.config.decoding == "beam":  # the excluded items never take a place in the beam
            items, offsets = gather_jagged(self.seq_items_.numpy(), self.seq_offsets_.numpy(), users)
            scores = self._score_histories(items, offsets, users, exclude)
            scores = scores.masked_fill(scores <= FLOOR, -torch.inf)
        else:
            scores = self.score(users)
        ranked = top_k_candidates(torch.arange(scores.shape[1]).expand_as(scores), scores, k, exclude)
        return ranked.items.numpy().astype(np.int64), ranked.scores.numpy().astype(np.float32)

    @torch.inference_mode()
    def log_prob(self, histories: Histories, targets: np.ndarray) -> torch.Tensor:
        """log p(target | history) = the sum of the target ID's token log-probabilities, each level renormalised over
        the valid IDs: B histories and dense targets (B,) -> (B,) float32 (normalised over items 1..n_items)."""
        targets = np.asarray(targets, dtype=np.int64)
        self.net_.eval()
        if targets.ndim != 1:
            raise ConfigError(f"targets must be one id per history, got shape {targets.shape}")
        return self._target_log_prob(histories, targets[:, None])[:, 0]

    def log_prob_module(self) -> nn.Module:
        """The network: every parameter ``differentiable_log_prob`` depends on."""
        self._check_fitted()
        return self.net_

    def differentiable_log_prob(self, histories: Histories, items: np.ndarray) -> torch.Tensor:
        """log p(items[b, m] | history b) as :meth:`log_prob` computes it, with gradients, in the network's current
        mode: B histories and dense ids (B, M) -> (B, M)."""
        return self._target_log_prob(histories, np.asarray(items, dtype=np.int64))

    def _target_log_prob(self, histories: Histories, items: np.ndarray) -> torch.Tensor:
        hist, offsets = self._jagged(histories)
        if items.ndim != 2 or items.shape[0] != len(offsets) - 1:
            raise ConfigError(f"targets must have one row per history ({len(offsets) - 1}), got shape {items.shape}")
        if items.size and (items.min() < 1 or items.max() > self.n_items):
            raise UnknownIdError(f"dense item ids must be in 1..{self.n_items}")
        out = []
        for s in range(0, len(items), SCORE_BATCH):
            rows = np.arange(s, min(s + SCORE_BATCH, len(items)))
            sub_items, sub_off = gather_jagged(hist, offsets, rows)
            ctx = self._context(sub_items, sub_off, None)
            out.append(target_log_likelihood(self.net_, self.trie_, ctx, self.codes_, torch.from_numpy(items[rows])))
        return torch.cat(out) if out else torch.zeros((0, items.shape[1] if items.ndim == 2 else 0))

    # ---------------------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        meta = json.dumps({"hash": self.sid_hash_, "train_fingerprint": self.sid_fingerprint_,
                           "sizes": list(self.sizes_), "preference_names": self.pref_names_}).encode()
        state.update({"sid.codes": self.codes_, "sid.meta": torch.frombuffer(bytearray(meta), dtype=torch.uint8),
                      "seq.items": self.seq_items_, "seq.offsets": self.seq_offsets_,
                      "preference.table": self.pref_table_})
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        meta = json.loads(bytes(state["sid.meta"].numpy().tobytes()).decode())
        codes = state["sid.codes"].numpy()
        sids = SemanticIds(config=self.config.sid_config, codes=codes, sizes=tuple(meta["sizes"]), raw_codes=codes,
                           train_fingerprint=meta["train_fingerprint"], popularity=np.zeros(len(codes), np.float32))
        if sids.hash != meta["hash"]:
            raise DataError(f"the stored SID table does not match the hash the model was trained with "
                            f"({sids.hash} != {meta['hash']})")
        self._set_sids(codes, sids.sizes, meta["hash"], meta["train_fingerprint"])
        # a model saved before preference steering existed holds no preference table: it loads unsteerable
        pref = state.get("preference.table", torch.zeros((len(codes), 0), dtype=torch.int64))
        self._set_preferences(pref.numpy(), meta.get("preference_names", []))
        self.net_ = self._make_net(len(self.item_vocab), self._n_prefix())
        self.net_.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        self.net_.eval()
        self.seq_items_, self.seq_offsets_ = state["seq.items"], state["seq.offsets"]

    def check_sid_table(self, path: str | Path) -> None:
        """DataError unless the SID table at ``path`` is the one this model was trained on (its hash)."""
        self._check_fitted()
        other = SemanticIds.load(path).hash
        if other != self.sid_hash_:
            raise DataError(f"the SID table at {path} ({other}) is not the one this model was trained on "
                            f"({self.sid_hash_})")


def preference_table(sids: SemanticIds, group: str) -> tuple[np.ndarray, list[str]]:
    """Per-item preference tokens from the SID table's catalogue attributes: (table int64 (n_items+1, P) of values
    1..V (0 = none), the V value names "group=value"). ``group`` "" -> no steering (an (n+1, 0) table); "*" -> every
    attribute. A table without attributes, or a group it does not hold, is a DataError."""
    n1 = sids.n_items + 1
    if not group:
        return np.zeros((n1, 0), np.int64), []
    if sids.attributes is None or sids.attribute_names is None:
        raise DataError("preference steering needs item attributes: build the SID table with `recforge sid build` "
                        "on a dataset with an item catalogue (its attributes are stored in the table)")
    names = list(sids.attribute_names)
    cols = [j for j, n in enumerate(names) if j > 0 and (group == "*" or n.split("=", 1)[0] == group)]
    if not cols:
        groups = sorted({n.split("=", 1)[0] for n in names[1:]})
        raise DataError(f"preference group {group!r} is not among the SID table's attribute groups {groups}")
    remap = np.zeros(len(names), np.int64)
    remap[cols] = np.arange(1, len(cols) + 1)
    a = sids.attributes.tocsr()
    table = np.zeros((n1, MAX_PREFERENCE), np.int64)
    width = 0
    for i in range(1, n1):
        vals = remap[a.indices[a.indptr[i] : a.indptr[i + 1]]]
        vals = vals[vals > 0][:MAX_PREFERENCE]
        table[i, : len(vals)] = vals
        width = max(width, len(vals))
    return table[:, : max(width, 1)], [names[j] for j in cols]
