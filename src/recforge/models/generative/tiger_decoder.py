"""``tiger_decoder``: generative retrieval with a causal decoder over semantic-ID tokens (TIGER's idea, decoder-only).

Each item is its semantic ID, T tokens (``semantic_ids``). A history of the last ``max_items`` items becomes T x
max_items tokens; a causal transformer predicts the next token at EVERY position (all next items of a window from one
pass), with a softmax over the values of the next token's level. Recommending = decoding the next item's ID:

- ``beam``: beam search constrained by the prefix trie of valid IDs (only real items; ``beam`` >= k); items outside
  the beam score a floor (they rank after every beam item, by the tie rule);
- ``exact``: every item's full-ID likelihood (small catalogues, and to check beam search);
- ``projection`` (with ``head = "projection"``, Lite-LLM4Rec's head): one product of the final hidden state with an
  item table trained beside the token loss — no decoding.

Item likelihoods renormalise each level over the trie's valid children, so ``log_prob`` (the sum of the target ID's
token log-probabilities) is normalised over the catalogue; ``differentiable_log_prob`` is the same with gradients (a
``TrainableLogProb``, what preference alignment trains). The model records the hash of the SID table it was trained
on (and checks the table against the training split at fit; the stored codes against the recorded hash at load).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
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
from recforge.nn.attention import FeedForward
from recforge.nn.losses import full_ce
from recforge.protocols import Histories
from recforge.train.trainer import TrainConfig

log = logging.getLogger(__name__)

#: histories decoded per forward pass at inference
SCORE_BATCH = 256
#: the score of an item outside the beam (finite, below any log-likelihood a beam can hold)
FLOOR = -1.0e9

Head = Literal["tokens", "projection"]
Decoding = Literal["beam", "exact", "projection"]


@dataclass(frozen=True)
class TigerDecoderConfig:
    """TIGER-style causal decoder over semantic IDs."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dim": ("choice", (64, 128)), "n_layers": ("int", 1, 3), "dropout": ("float", 0.0, 0.3),
        "train.lr": ("log", 1e-4, 1e-2)}

    sid: str = ""  # folder of a SID table (`recforge sid build`); "" builds one from the training split (sid_config)
    sid_config: SidConfig = field(default_factory=SidConfig)  # how to build the table when sid = ""
    dim: int = 128  # hidden size
    n_layers: int = 3  # decoder layers
    n_heads: int = 4  # attention heads (must divide dim)
    dropout: float = 0.1  # dropout on embeddings, attention and feed-forward
    max_items: int = 20  # the history is truncated to its last max_items items
    head: Head = "tokens"  # tokens | projection (an item table trained beside the token loss)
    decoding: Decoding = "beam"  # beam | exact | projection (needs head = projection)
    beam: int = 20  # beam width (>= the k asked of topk)
    train: TrainConfig = field(default_factory=TrainConfig)  # the Trainer's settings

    def __post_init__(self) -> None:
        check_choices(self)
        if self.dim < 1 or self.n_layers < 1 or self.max_items < 1 or self.beam < 1:
            raise ConfigError(f"dim, n_layers, max_items and beam must be >= 1 (dim={self.dim}, "
                              f"n_layers={self.n_layers}, max_items={self.max_items}, beam={self.beam})")
        if self.n_heads < 1 or self.dim % self.n_heads:
            raise ConfigError(f"n_heads must divide dim (dim={self.dim}, n_heads={self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.decoding == "projection" and self.head != "projection":
            raise ConfigError("decoding = 'projection' needs head = 'projection' (the item table is trained with it)")


@dataclass
class _Context:
    """A history run once: per-layer keys/values (B, H, S, dh), key validity (B, S), final hidden state (B, D)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor
    last: torch.Tensor


class _Block(nn.Module):
    """Pre-norm causal self-attention + feed-forward, with an ``extend`` path that attends to a cached context."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.h = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = FeedForward(dim, 4 * dim, dropout)
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., L, D) -> q, k, v (..., H, L, dh)."""
        *lead, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(*lead, length, 3, self.h, d // self.h)
        q, k, v = qkv.movedim(-3, 0).unbind(0)
        return q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, S, D), mask (B, 1, S, S) -> (new x, keys, values (B, H, S, dh))."""
        q, k, v = self._split(x)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(att.transpose(1, 2).flatten(2)))
        return x + self.drop(self.ffn(self.norm2(x))), k, v

    def extend(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor
               ) -> torch.Tensor:
        """Continuations x (B, M, t, D) attending to the cached context (B, H, S, dh) and causally to themselves."""
        q, k, v = self._split(x)  # (B, M, H, t, dh)
        scale = q.shape[-1] ** -0.5
        s_ctx = torch.einsum("bmhtd,bhsd->bmhts", q, keys) * scale
        s_ctx = s_ctx.masked_fill(~valid[:, None, None, None, :], -torch.inf)
        s_new = torch.einsum("bmhtd,bmhud->bmhtu", q, k) * scale
        t = x.shape[2]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        s_new = s_new.masked_fill(~causal, -torch.inf)
        w = torch.softmax(torch.cat([s_ctx, s_new], -1), -1)
        s = keys.shape[2]
        att = torch.einsum("bmhts,bhsd->bmhtd", w[..., :s], values) + torch.einsum("bmhtu,bmhud->bmhtd",
                                                                                  w[..., s:], v)
        x = x + self.out(att.transpose(2, 3).flatten(3))
        return x + self.ffn(self.norm2(x))


class TigerDecoderNet(nn.Module):
    """Token, level and item-position embeddings, causal blocks, tied per-level output heads (+ an item head).

    Vocabulary: 0 = padding, then each level's values in their own block (level t value c -> offset_t + c + 1).
    Positions count items from the right: the item being predicted is 0, the most recent history item 1."""

    def __init__(self, codes: torch.Tensor, sizes: tuple[int, ...], n_items: int, cfg: TigerDecoderConfig):
        super().__init__()
        self.depth, self.sizes, self.n_items = codes.shape[1], sizes, n_items
        offsets = torch.tensor([0, *np.cumsum(sizes)[:-1].tolist()], dtype=torch.int64) + 1
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("vocab_codes", torch.where(
            torch.arange(n_items + 1)[:, None] > 0, codes + offsets[None], 0), persistent=False)
        vocab = int(sum(sizes)) + 1
        self.tok = nn.Embedding(vocab, cfg.dim, padding_idx=0)
        self.level = nn.Embedding(self.depth, cfg.dim)
        self.pos = nn.Embedding(cfg.max_items + 1, cfg.dim)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.item_head = nn.Embedding(n_items + 1, cfg.dim) if cfg.head == "projection" else None
        if self.item_head is not None:
            nn.init.normal_(self.item_head.weight, std=cfg.dim ** -0.5)
        for emb in (self.tok, self.level, self.pos):  # one scale: N(0, 1) level/position rows would drown the tokens
            nn.init.normal_(emb.weight, std=0.02)
        level_of = torch.cat([torch.full((s,), t) for t, s in enumerate(sizes)])
        self.register_buffer("level_of_vocab", torch.cat([torch.tensor([-1]), level_of]), persistent=False)

    # ----------------------------------------------------------------------------------------------- inputs
    def tokens_of(self, items: torch.Tensor) -> torch.Tensor:
        """Left-padded item windows (B, I) -> vocabulary tokens (B, I*T) (0 for padding)."""
        return self.vocab_codes[items].flatten(1)

    def _embed(self, tokens: torch.Tensor, first_pos: int) -> torch.Tensor:
        """Tokens (B, S) (S a multiple of T, aligned to whole items) -> embeddings (B, S, D); the last item has
        position ``first_pos``."""
        s = tokens.shape[1]
        j = torch.arange(s, device=tokens.device)
        n_items_in = (s + self.depth - 1) // self.depth
        pos = (n_items_in - 1 - j // self.depth + first_pos).clamp_max(self.pos.num_embeddings - 1)
        return self.drop(self.tok(tokens) + self.level(j % self.depth) + self.pos(pos))

    def _run(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        s = tokens.shape[1]
        valid = tokens > 0
        mask = (valid[:, None, None, :] & torch.ones(s, s, dtype=torch.bool, device=x.device).tril()) | torch.eye(
            s, dtype=torch.bool, device=x.device)
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block(x, mask)
            keys.append(k)
            values.append(v)
        return self.norm(x), keys, values

    # ----------------------------------------------------------------------------------------------- training
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-token cross-entropy over every position (+ the item head's full softmax at item boundaries)."""
        items = batch["items"]  # (B, I) left-padded windows, the last item is the final target
        tokens = self.tokens_of(items)
        inp, tgt = tokens[:, :-1], tokens[:, 1:]
        # the input holds the target item's first T-1 tokens: its items are positioned so that that item is 0
        hidden, _, _ = self._run(self._embed(F.pad(inp, (0, 1)), 0)[:, :-1], inp)
        keep = tgt > 0
        h, t = hidden[keep], tgt[keep]
        logits = h @ self.tok.weight.T + self.bias
        logits = logits.masked_fill(self.level_of_vocab[None, :] != self.level_of_vocab[t][:, None], -torch.inf)
        loss = F.cross_entropy(logits.float(), t)
        if self.item_head is not None:
            # positions whose next token starts an item: the last token of each input item
            ends = torch.arange(inp.shape[1], device=inp.device) % self.depth == self.depth - 1
            nxt = items[:, 1:]  # the item each boundary predicts, from a real (non-padding) item
            real = (nxt > 0) & (items[:, :-1] > 0)
            if real.any():
                loss = loss + full_ce(hidden[:, ends][real], nxt[real], self.item_head.weight, self.n_items)
        return loss

    # ----------------------------------------------------------------------------------------------- decoding
    def context(self, tokens: torch.Tensor) -> _Context:
        """History tokens (B, S) -> the cached context; ``last`` predicts the next item's first token."""
        hidden, keys, values = self._run(self._embed(tokens, 1), tokens)
        return _Context(keys=keys, values=values, valid=tokens > 0, last=hidden[:, -1])

    def extend(self, ctx: _Context, seq: torch.Tensor) -> torch.Tensor:
        """Continuations (B, M, t) of level values -> hidden states (B, M, t, D) (the continued item is position 0)."""
        t = seq.shape[2]
        tokens = seq + self.offsets[:t]
        levels = torch.arange(t, device=seq.device)
        x = self.tok(tokens) + self.level(levels) + self.pos.weight[0]
        for block, k, v in zip(self.blocks, ctx.keys, ctx.values):
            x = block.extend(x, k, v, ctx.valid)
        return self.norm(x)

    def level_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        """Hidden states (..., D) -> logits (..., K_level) of the token at ``level``."""
        lo = int(self.offsets[level])
        hi = lo + self.sizes[level]
        return hidden @ self.tok.weight[lo:hi].T + self.bias[lo:hi]

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Projection head: (B, D) -> (B, n_items+1)."""
        return hidden @ self.item_head.weight.T


class _Windows:
    """Training windows for the Trainer: (W, max_items+1) left-padded items, batches cut to their longest row."""

    def __init__(self, windows: torch.Tensor):
        self.windows = windows
        self.lengths = (windows > 0).sum(1)

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
        items = self.windows[rows]
        width = int((items > 0).sum(1).max())
        return {"items": items[:, -max(width, 2):]}


def training_windows(items: np.ndarray, offsets: np.ndarray, size: int) -> torch.Tensor:
    """Windows of ``size`` items ending at each user's last item and every ``size - 1`` items before it, so that
    every training item is a target once: jagged histories -> (W, size) int64 left-padded (rows of >= 2 items)."""
    ends = offsets[1:].astype(np.int64)
    starts = offsets[:-1].astype(np.int64)
    out = []
    step = size - 1
    cur = ends.copy()
    while True:
        ok = cur - starts >= 2
        if not ok.any():
            break
        idx = cur[ok, None] - size + np.arange(size)[None, :]
        valid = idx >= starts[ok, None]
        win = np.zeros(idx.shape, np.int64)
        win[valid] = items[idx[valid]]
        out.append(win)
        cur = cur - step
    return torch.from_numpy(np.concatenate(out) if out else np.zeros((0, size), np.int64))


class TigerDecoder(HistoryScoring, TrainerFit):
    """Generative retrieval: a causal decoder names the next item's semantic ID (beam / exact / projection)."""

    name = "tiger_decoder"
    config_class = TigerDecoderConfig
    #: small and fast, for the shared contract tests
    test_config = TigerDecoderConfig(
        sid_config=SidConfig(levels=2, codebook_size=16, dim=16, collisions="dedup"), dim=32, n_layers=1, n_heads=2, max_items=10,
        beam=20, train=TrainConfig(epochs=20, batch_size=64, lr=1e-2, threads=1))

    net_: TigerDecoderNet | None = None

    # ---------------------------------------------------------------------------------------------- fitting
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        if cfg.sid:
            sids = SemanticIds.load(cfg.sid)
            sids.check_train(train)
        else:
            sids = build_semantic_ids(train, cfg.sid_config)
        self._set_sids(sids.codes, sids.sizes, sids.hash, sids.train_fingerprint)
        torch.manual_seed(cfg.train.seed)
        self.net_ = TigerDecoderNet(self.codes_, self.sizes_, train.n_items, cfg)
        items, offsets = train.sequences()
        self._store_sequences(items, offsets)
        data = _Windows(training_windows(items, offsets, cfg.max_items + 1))
        evaluate_fn = early_stopping_metric(self, train, valid, cfg.train.eval_metric, cfg.train.eval_users,
                                            cfg.train.seed)

        log.info("tiger_decoder: SID table %s %s, %d windows, %d parameters", self.sid_hash_, self.sizes_,
                 len(data), sum(p.numel() for p in self.net_.parameters()))
        self._train(self.net_, data, evaluate_fn)

    def _set_sids(self, codes: np.ndarray, sizes: tuple[int, ...], sid_hash: str, fingerprint: str) -> None:
        check_unique(codes[1:], "the SID table's IDs")
        self.codes_ = torch.from_numpy(np.asarray(codes, dtype=np.int64))
        self.sizes_ = tuple(int(s) for s in sizes)
        self.sid_hash_, self.sid_fingerprint_ = sid_hash, fingerprint
        self.trie_ = PrefixTrie.build(self.codes_.numpy(), self.sizes_)

    def _store_sequences(self, items: np.ndarray, offsets: np.ndarray) -> None:
        self.seq_items_ = torch.from_numpy(np.array(items, dtype=np.int64))
        self.seq_offsets_ = torch.from_numpy(np.array(offsets, dtype=np.int64))

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

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """(B, n_items+1): beam log-likelihoods (items outside the beam at FLOOR; the history's own items are not
        decoded), every item's exact log-likelihood, or the projection head's scores."""
        self.net_.eval()
        out = []
        for s in range(0, len(offsets) - 1, SCORE_BATCH):
            sub_items, sub_off = gather_jagged(items, offsets, np.arange(s, min(s + SCORE_BATCH, len(offsets) - 1)))
            out.append(self._decode(sub_items, sub_off))
        return torch.cat(out) if out else torch.zeros((0, self.n_items + 1))

    @torch.inference_mode()
    def _decode(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        tokens = self._tokens(items, offsets)
        mode = self.config.decoding
        if mode == "exact":
            return exact_log_likelihood(self.net_, self.trie_, tokens, self.n_items)
        if mode == "projection":
            return self.net_.item_scores(self.net_.context(tokens).last)
        found, score = self.beam_items(items, offsets, tokens)
        out = torch.full((len(found), self.n_items + 1), FLOOR)
        hit = found > 0
        out[torch.nonzero(hit, as_tuple=True)[0], found[hit]] = score[hit]
        return out

    def beam_items(self, items: np.ndarray, offsets: np.ndarray, tokens: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Constrained beam search for jagged histories: (items int64 (B, beam), log-likelihoods (B, beam)), best
        first, the histories' own items never decoded; 0 / -inf pad a row with fewer valid IDs."""
        tokens = self._tokens(items, offsets) if tokens is None else tokens
        b = len(offsets) - 1
        banned = torch.zeros((b, self.n_items + 1), dtype=torch.bool)
        rows = np.repeat(np.arange(b), np.diff(offsets))
        banned[torch.from_numpy(rows), torch.from_numpy(items.astype(np.int64))] = True
        return beam_search(self.net_, self.trie_, tokens, self.config.beam, banned)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        items, offsets = gather_jagged(self.seq_items_.numpy(), self.seq_offsets_.numpy(), users)
        return self._score_histories(items, offsets)

    def history(self, dense_user: int) -> np.ndarray:
        """A training user's items in time order, dense ids int64 (n,); empty for the unknown user 0."""
        self._check_fitted()
        if dense_user == 0:
            return np.zeros(0, np.int64)
        s, e = int(self.seq_offsets_[dense_user]), int(self.seq_offsets_[dense_user + 1])
        return self.seq_items_[s:e].numpy().astype(np.int64)

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
        scores = self.score(users)
        if self.config.decoding == "beam":
            scores = scores.masked_fill(scores <= FLOOR, -torch.inf)
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
        """The decoder network: every parameter ``differentiable_log_prob`` depends on."""
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
            out.append(target_log_likelihood(self.net_, self.trie_, self._tokens(sub_items, sub_off), self.codes_,
                                             torch.from_numpy(items[rows])))
        return torch.cat(out) if out else torch.zeros((0, items.shape[1] if items.ndim == 2 else 0))

    # ---------------------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        meta = json.dumps({"hash": self.sid_hash_, "train_fingerprint": self.sid_fingerprint_,
                           "sizes": list(self.sizes_)}).encode()
        state.update({"sid.codes": self.codes_, "sid.meta": torch.frombuffer(bytearray(meta), dtype=torch.uint8),
                      "seq.items": self.seq_items_, "seq.offsets": self.seq_offsets_})
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
        self.net_ = TigerDecoderNet(self.codes_, self.sizes_, len(self.item_vocab), self.config)
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
