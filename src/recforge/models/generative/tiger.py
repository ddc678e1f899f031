"""``tiger``: TIGER's T5-style encoder–decoder over semantic-ID tokens (Rajput et al., 2023).

The encoder reads the semantic-ID tokens of the user's last ``max_items`` (20) items, bidirectionally, after optional
prefix tokens: a hashed user token (``user_buckets`` > 0, as TIGER's 2,000 buckets) and preference tokens (Mender,
``preference``). The decoder starts from a BOS vector and names the next item's ID token by token, attending
causally to what it generated and through cross-attention to the encoder's output. In list mode (``list_size`` =
m > 1, OneRec's session-wise generation) the decoder's target is the next m items as one token sequence.

Training: one example per training event (the items before it as the history, it and the m-1 after it as the
target), cross-entropy over each target token's level (+ the projection head's full softmax on the BOS state with
``head = "projection"``; + the MoE load-balancing loss with ``experts``). Decoding (beam constrained by the prefix
trie, exact, projection), list generation, steering, the likelihood protocols and persistence are the shared ones
of ``retriever``; ``beam``/``exact`` reuse ``decoding`` against the cached encoder output.

Shapes: B histories, S encoder tokens (prefix + history), M continuations, t decoder tokens, D hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.errors import ConfigError
from recforge.models.generative.retriever import SidModelConfig, SidNet, SidRetriever, Windows
from recforge.models.generative.semantic_ids import SidConfig
from recforge.nn.losses import full_ce
from recforge.nn.moe import make_ffn, moe_aux_loss
from recforge.train.trainer import TrainConfig


@dataclass(frozen=True)
class TigerConfig(SidModelConfig):
    """TIGER encoder–decoder (``n_layers`` layers in each stack)."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dim": ("choice", (64, 128)), "n_layers": ("int", 1, 4), "dropout": ("float", 0.0, 0.3),
        "train.lr": ("log", 1e-4, 1e-2)}

    user_buckets: int = 0  # hashed user tokens read by the encoder (TIGER: 2000; 0 = none)
    list_size: int = 1  # items per decoder target (list mode, > 1: the next m items as one sequence)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.user_buckets < 0 or self.list_size < 1:
            raise ConfigError(f"user_buckets must be >= 0 and list_size >= 1, got {self.user_buckets}, "
                              f"{self.list_size}")


@dataclass
class _Memory:
    """The encoded history: per decoder layer cross-attention keys/values (B, H, S, dh), key validity (B, S), and the
    decoder's state after BOS (B, D), which predicts the first token."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor
    last: torch.Tensor


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(..., L, D) -> (..., H, L, dh)."""
    return x.unflatten(-1, (h, x.shape[-1] // h)).transpose(-3, -2)


class _EncoderBlock(nn.Module):
    """Pre-norm bidirectional self-attention + feed-forward: (B, S, D) -> (B, S, D)."""

    def __init__(self, dim: int, n_heads: int, dropout: float, experts: int):
        super().__init__()
        self.h, self.p = n_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = make_ffn(dim, 4 * dim, dropout, experts)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (_heads(t, self.h) for t in self.qkv(self.norm1(x)).chunk(3, -1))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(att.transpose(1, 2).flatten(2)))
        return x + self.drop(self.ffn(self.norm2(x)))


class _DecoderBlock(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the encoder output, feed-forward: (B, M, t, D) -> same."""

    def __init__(self, dim: int, n_heads: int, dropout: float, experts: int):
        super().__init__()
        self.h, self.p = n_heads, dropout
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.q_cross, self.kv_cross, self.out_cross = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.ffn = make_ffn(dim, 4 * dim, dropout, experts)
        self.drop = nn.Dropout(dropout)

    def memory(self, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (B, S, D) -> cross-attention keys, values (B, H, S, dh)."""
        k, v = self.kv_cross(enc).chunk(2, -1)
        return _heads(k, self.h), _heads(v, self.h)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor
                ) -> torch.Tensor:
        b, m, t, d = x.shape
        q, k, v = (_heads(z, self.h).flatten(0, 1) for z in self.qkv(self.norm1(x)).chunk(3, -1))  # (B*M, H, t, dh)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(att.unflatten(0, (b, m)).transpose(2, 3).flatten(3)))
        qc = _heads(self.q_cross(self.norm2(x)), self.h)  # (B, M, H, t, dh)
        s = torch.einsum("bmhtd,bhsd->bmhts", qc, keys) * qc.shape[-1] ** -0.5
        w = torch.softmax(s.masked_fill(~valid[:, None, None, None, :], -torch.inf), -1)
        att = torch.einsum("bmhts,bhsd->bmhtd", F.dropout(w, self.p, self.training), values)
        x = x + self.drop(self.out_cross(att.transpose(2, 3).flatten(3)))
        return x + self.drop(self.ffn(self.norm3(x)))


class TigerNet(SidNet):
    """Shared token embeddings (encoder input, decoder input, tied per-level output heads), level, history-position
    and list-slot embeddings, prefix-token embeddings, the two stacks (+ an item head).

    Vocabulary: 0 = padding, then each level's values in their own block (level t value c -> offset_t + c + 1)."""

    def __init__(self, codes: torch.Tensor, sizes: tuple[int, ...], n_items: int, cfg: TigerConfig,
                 n_prefix: int = 0):
        super().__init__()
        self.moe_weight = cfg.moe_weight
        vocab = self._register_vocabulary(codes, sizes, n_items)
        self.register_buffer("codes", codes.clone(), persistent=False)
        self.tok = nn.Embedding(vocab, cfg.dim, padding_idx=0)
        self.level = nn.Embedding(self.depth, cfg.dim)
        self.pos = nn.Embedding(cfg.max_items + 1, cfg.dim)
        self.slot = nn.Embedding(cfg.list_size, cfg.dim)
        self.prefix = nn.Embedding(n_prefix + 1, cfg.dim, padding_idx=0) if n_prefix else None
        self.bos = nn.Parameter(torch.zeros(cfg.dim))
        self.encoder = nn.ModuleList(_EncoderBlock(cfg.dim, cfg.n_heads, cfg.dropout, cfg.experts)
                                     for _ in range(cfg.n_layers))
        self.decoder = nn.ModuleList(_DecoderBlock(cfg.dim, cfg.n_heads, cfg.dropout, cfg.experts)
                                     for _ in range(cfg.n_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.item_head = nn.Embedding(n_items + 1, cfg.dim) if cfg.head == "projection" else None
        if self.item_head is not None:
            nn.init.normal_(self.item_head.weight, std=cfg.dim ** -0.5)
        for emb in (self.tok, self.level, self.pos, self.slot, *([self.prefix] if self.prefix is not None else [])):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.bos, std=0.02)

    # ------------------------------------------------------------------------------------------------ encoder
    def _encode(self, tokens: torch.Tensor, prefix: torch.Tensor | None) -> _Memory:
        """History tokens (B, S) after prefix tokens (B, P) -> the memory (its ``last`` is the state after BOS)."""
        s = tokens.shape[1]
        j = torch.arange(s, device=tokens.device)
        n_in = (s + self.depth - 1) // self.depth
        pos = (n_in - j // self.depth).clamp_max(self.pos.num_embeddings - 1)  # the newest item is position 1
        x = self.tok(tokens) + self.level(j % self.depth) + self.pos(pos)
        valid = tokens > 0
        if prefix is not None and prefix.shape[1] and self.prefix is not None:
            x = torch.cat([self.prefix(prefix), x], 1)
            valid = torch.cat([prefix > 0, valid], 1)
        x = self.drop(x)
        n = valid.shape[1]
        mask = valid[:, None, None, :] | torch.eye(n, dtype=torch.bool, device=x.device)
        for block in self.encoder:
            x = block(x, mask)
        enc = self.enc_norm(x)
        keys, values = zip(*(block.memory(enc) for block in self.decoder))
        any_valid = valid | ~valid.any(1, keepdim=True)  # an all-padding row attends to its padding, not to nothing
        mem = _Memory(keys=list(keys), values=list(values), valid=any_valid, last=enc.new_zeros(0))
        mem.last = self._decode_run(mem, torch.zeros((len(tokens), 1, 0), dtype=torch.int64))[:, 0, 0]
        return mem

    # ------------------------------------------------------------------------------------------------ decoder
    def _decode_run(self, mem: _Memory, seq: torch.Tensor) -> torch.Tensor:
        """BOS then the level values ``seq`` (B, M, t) -> decoder states (B, M, t+1, D) (state j predicts token j)."""
        b, m, t = seq.shape
        j = torch.arange(t, device=seq.device)
        lv = j % self.depth
        x = self.tok(seq + self.offsets[lv]) + self.level(lv) + self.slot((j // self.depth).clamp_max(
            self.slot.num_embeddings - 1))
        x = torch.cat([self.bos.expand(b, m, 1, -1), x], 2)
        x = self.drop(x)
        for block, k, v in zip(self.decoder, mem.keys, mem.values):
            x = block(x, k, v, mem.valid)
        return self.dec_norm(x)

    def context(self, tokens: torch.Tensor, prefix: torch.Tensor | None = None, first_pos: int = 1) -> _Memory:
        """History tokens (B, S), prefix tokens (B, P) -> the memory; ``first_pos`` is not needed here (the decoder
        numbers generated items from its own start)."""
        return self._encode(tokens, prefix)

    def extend(self, ctx: _Memory, seq: torch.Tensor) -> torch.Tensor:
        """Continuations (B, M, t) of level values (one or more items) -> decoder states after each (B, M, t, D)."""
        return self._decode_run(ctx, seq)[:, :, 1:]

    # ------------------------------------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of the target tokens (each over its level) (+ the item head's full softmax on the BOS
        state, + the MoE load-balancing loss)."""
        mem = self._encode(self.tokens_of(batch["items"]), batch.get("prefix"))
        target = batch["target"]  # (B, m) items, 0 past the end of a user's log
        values = self.codes[target].flatten(1)  # (B, m*T) level values
        vocab = self.tokens_of(target)  # (B, m*T) vocabulary ids, 0 for padding
        hidden = self._decode_run(mem, values[:, None, :-1])[:, 0]  # (B, m*T, D)
        keep = vocab > 0
        h, t = hidden[keep], vocab[keep]
        logits = (h @ self.tok.weight.T + self.bias).masked_fill(
            self.level_of_vocab[None, :] != self.level_of_vocab[t][:, None], -torch.inf)
        loss = F.cross_entropy(logits.float(), t)
        if self.item_head is not None:
            loss = loss + full_ce(hidden[:, 0], target[:, 0], self.item_head.weight, self.n_items)
        return loss + self.moe_weight * moe_aux_loss(self)


def event_windows(items: np.ndarray, offsets: np.ndarray, history: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per training event that has an earlier event: its last ``history`` items before it (left-padded),
    then it and the m-1 events after it (0 past the user's end): jagged histories (user u = row u) ->
    (rows (W, history + m) int64, their users (W,) int64)."""
    lengths = np.diff(offsets).astype(np.int64)
    starts = np.repeat(offsets[:-1].astype(np.int64), lengths)
    ends = np.repeat(offsets[1:].astype(np.int64), lengths)
    users = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(items), dtype=np.int64)
    ok = pos - starts >= 1
    i, st, en = pos[ok], starts[ok], ends[ok]
    idx = i[:, None] - history + np.arange(history + m)[None, :]
    valid = (idx >= st[:, None]) & (idx < en[:, None])
    rows = np.zeros(idx.shape, np.int64)
    rows[valid] = np.asarray(items, dtype=np.int64)[idx[valid]]
    return torch.from_numpy(rows), torch.from_numpy(users[ok].astype(np.int64))


class Tiger(SidRetriever):
    """TIGER: an encoder–decoder names the next item's semantic ID (beam / exact / projection; list mode)."""

    name = "tiger"
    config_class = TigerConfig
    #: small and fast, for the shared contract tests
    test_config = TigerConfig(
        sid_config=SidConfig(levels=2, codebook_size=16, dim=16, collisions="dedup"), dim=32, n_layers=1, n_heads=2,
        max_items=10, beam=20, dropout=0.0, user_buckets=50, train=TrainConfig(epochs=8, batch_size=128, lr=5e-3,
                                                                                 threads=1))

    @property
    def user_buckets(self) -> int:
        return self.config.user_buckets

    @property
    def max_generated(self) -> int:
        """List generation reaches as far as the decoder was trained to: ``list_size`` items."""
        return self.config.list_size

    def _make_net(self, n_items: int, n_prefix: int) -> TigerNet:
        return TigerNet(self.codes_, self.sizes_, n_items, self.config, n_prefix)

    def _training_rows(self, items: np.ndarray, offsets: np.ndarray) -> Windows:
        cfg = self.config
        rows, users = event_windows(items, offsets, cfg.max_items, cfg.list_size)
        return Windows(rows, users, target_col=cfg.max_items, split=cfg.max_items, prefix_fn=self._training_prefix)
