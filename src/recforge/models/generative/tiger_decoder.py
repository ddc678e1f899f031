"""``tiger_decoder``: generative retrieval with a causal decoder over semantic-ID tokens (TIGER's idea, decoder-only).

Each item is its semantic ID, T tokens (``semantic_ids``). A history of the last ``max_items`` items becomes T x
max_items tokens; a causal transformer predicts the next token at EVERY position (all next items of a window from one
pass), with a softmax over the values of the next token's level. Recommending = decoding the next item's ID:

- ``beam``: beam search constrained by the prefix trie of valid IDs (only real items; ``beam`` >= k); items outside
  the beam score a floor (they rank after every beam item, by the tie rule);
- ``exact``: every item's full-ID likelihood (small catalogues, and to check beam search);
- ``projection`` (with ``head = "projection"``, Lite-LLM4Rec's head): one product of the final hidden state with an
  item table trained beside the token loss — no decoding.

List mode (``generate``), preference steering (``preference``, ``steer``) and the sparse-MoE feed-forward
(``experts``) come from the shared ``retriever`` module; preference tokens (the window's last item's attribute values,
randomly dropped) sit right before the item they condition: the window's last item at training, the item to
generate at inference.

Item likelihoods renormalise each level over the trie's valid children, so ``log_prob`` (the sum of the target ID's
token log-probabilities) is normalised over the catalogue; ``differentiable_log_prob`` is the same with gradients (a
``TrainableLogProb``, what preference alignment trains). The model records the hash of the SID table it was trained
on (and checks the table against the training split at fit; the stored codes against the recorded hash at load).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.models.generative.retriever import SidModelConfig, SidNet, SidRetriever, Windows
from recforge.models.generative.semantic_ids import SidConfig
from recforge.nn.losses import full_ce
from recforge.nn.moe import make_ffn, moe_aux_loss
from recforge.train.trainer import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TigerDecoderConfig(SidModelConfig):
    """TIGER-style causal decoder over semantic IDs (every field is :class:`SidModelConfig`'s)."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dim": ("choice", (64, 128)), "n_layers": ("int", 1, 3), "dropout": ("float", 0.0, 0.3),
        "train.lr": ("log", 1e-4, 1e-2)}


@dataclass
class _Context:
    """A history run once: per-layer keys/values (B, H, S, dh), key validity (B, S), final hidden state (B, D), and
    the position of the first item generated after it."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor
    last: torch.Tensor
    first_pos: int = 0


class _Block(nn.Module):
    """Pre-norm causal self-attention + feed-forward, with an ``extend`` path that attends to a cached context."""

    def __init__(self, dim: int, n_heads: int, dropout: float, experts: int = 0):
        super().__init__()
        self.h = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = make_ffn(dim, 4 * dim, dropout, experts)
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., L, D) -> q, k, v (..., H, L, dh)."""
        *lead, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(*lead, length, 3, self.h, d // self.h)
        q, k, v = qkv.movedim(-3, 0).unbind(0)
        return q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, S, D), mask (B, 1, S, S) -> (new x (B, S, D), or (B, 1, D) for the last position only with
        ``last_only``, keys, values (B, H, S, dh))."""
        q, k, v = self._split(x)
        if last_only:  # every position's keys and values, but only the last position's output
            q, mask, x = q[:, :, -1:], mask[:, :, -1:], x[:, -1:]
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


class TigerDecoderNet(SidNet):
    """Token, level and item-position embeddings, causal blocks, tied per-level output heads (+ an item head), and
    an embedding of ``n_prefix`` prefix-token values (preference values, then hashed users) read before the window.

    Vocabulary: 0 = padding, then each level's values in their own block (level t value c -> offset_t + c + 1).
    Positions count items from the right: the item being predicted is 0, the most recent history item 1."""

    def __init__(self, codes: torch.Tensor, sizes: tuple[int, ...], n_items: int, cfg: TigerDecoderConfig,
                 n_prefix: int = 0):
        super().__init__()
        self.moe_weight = cfg.moe_weight
        self.prefix = nn.Embedding(n_prefix + 1, cfg.dim, padding_idx=0) if n_prefix else None
        vocab = self._register_vocabulary(codes, sizes, n_items)
        self.tok = nn.Embedding(vocab, cfg.dim, padding_idx=0)
        self.level = nn.Embedding(self.depth, cfg.dim)
        self.pos = nn.Embedding(cfg.max_items + 1, cfg.dim)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.n_heads, cfg.dropout, cfg.experts)
                                    for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.item_head = nn.Embedding(n_items + 1, cfg.dim) if cfg.head == "projection" else None
        if self.item_head is not None:
            nn.init.normal_(self.item_head.weight, std=cfg.dim ** -0.5)
        for emb in (self.tok, self.level, self.pos, *([self.prefix] if self.prefix is not None else [])):  # one scale: N(0, 1) level/position rows would drown the tokens
            nn.init.normal_(emb.weight, std=0.02)

    # ----------------------------------------------------------------------------------------------- inputs
    def _embed(self, tokens: torch.Tensor, first_pos: int) -> torch.Tensor:
        """Tokens (B, S) (S a multiple of T, aligned to whole items) -> embeddings (B, S, D); the last item has
        position ``first_pos``."""
        s = tokens.shape[1]
        j = torch.arange(s, device=tokens.device)
        n_items_in = (s + self.depth - 1) // self.depth
        pos = (n_items_in - 1 - j // self.depth + first_pos).clamp_max(self.pos.num_embeddings - 1)
        return self.drop(self.tok(tokens) + self.level(j % self.depth) + self.pos(pos))

    def _with_prefix(self, x: torch.Tensor, valid: torch.Tensor, prefix: torch.Tensor | None, at: int
                     ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Insert the prefix tokens (B, P) into embedded tokens (B, S, D) / their validity (B, S) before column ``at``
        -> (x, valid, P). The prefix sits right before the item it conditions (the target at training, the item to
        generate at inference), so only that item's prediction reads it."""
        if prefix is None or not prefix.shape[1] or self.prefix is None:
            return x, valid, 0
        x = torch.cat([x[:, :at], self.drop(self.prefix(prefix)), x[:, at:]], 1)
        valid = torch.cat([valid[:, :at], prefix > 0, valid[:, at:]], 1)
        return x, valid, prefix.shape[1]

    def _run(self, x: torch.Tensor, valid: torch.Tensor, last_only: bool = False
             ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Embedded tokens (B, S, D) with key validity (B, S) -> (hidden (B, S, D), keys, values); causal, every
        position may attend to itself. ``last_only``: the last layer computes only the last position's output
        (hidden (B, 1, D)), all decoding needs besides the keys and values."""
        s = valid.shape[1]
        mask = (valid[:, None, None, :] & torch.ones(s, s, dtype=torch.bool, device=x.device).tril()) | torch.eye(
            s, dtype=torch.bool, device=x.device)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, mask, last_only and i == len(self.blocks) - 1)
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
        cut = inp.shape[1] - (self.depth - 1)  # where the target item's tokens start
        x, valid, p = self._with_prefix(self._embed(F.pad(inp, (0, 1)), 0)[:, :-1], inp > 0, batch.get("prefix"), cut)
        hidden, _, _ = self._run(x, valid)
        if p:  # the target's first token is predicted from the last prefix slot, not from the history's end
            hidden = torch.cat([hidden[:, : cut - 1], hidden[:, cut + p - 1 :]], 1)
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
        return loss + self.moe_weight * moe_aux_loss(self)

    # ----------------------------------------------------------------------------------------------- decoding
    def context(self, tokens: torch.Tensor, prefix: torch.Tensor | None = None, first_pos: int = 1) -> _Context:
        """History tokens (B, S) then prefix tokens (B, P) -> the cached context; ``last`` predicts the next item's
        first token. ``first_pos`` items follow the history (list mode): the first of them has position
        ``first_pos - 1``, the last position 0."""
        x, valid, _ = self._with_prefix(self._embed(tokens, first_pos), tokens > 0, prefix, tokens.shape[1])
        hidden, keys, values = self._run(x, valid, last_only=True)
        return _Context(keys=keys, values=values, valid=valid, last=hidden[:, -1], first_pos=first_pos)

    def extend(self, ctx: _Context, seq: torch.Tensor) -> torch.Tensor:
        """Continuations (B, M, t) of level values, spanning one or more generated items -> hidden states
        (B, M, t, D)."""
        j = torch.arange(seq.shape[2], device=seq.device)
        levels = j % self.depth
        tokens = seq + self.offsets[levels]
        pos = (ctx.first_pos - 1 - j // self.depth).clamp(0, self.pos.num_embeddings - 1)
        x = self.tok(tokens) + self.level(levels) + self.pos(pos)
        for block, k, v in zip(self.blocks, ctx.keys, ctx.values):
            x = block.extend(x, k, v, ctx.valid)
        return self.norm(x)


def training_windows(items: np.ndarray, offsets: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``size`` items ending at each user's last item and every ``size - 1`` items before it, so that
    every training item is a target once: jagged histories (user u = row u) -> (windows (W, size) int64
    left-padded (rows of >= 2 items), their users (W,) int64)."""
    ends = offsets[1:].astype(np.int64)
    starts = offsets[:-1].astype(np.int64)
    out, users = [], []
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
        users.append(np.flatnonzero(ok))
        cur = cur - step
    if not out:
        return torch.zeros((0, size), dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.concatenate(out)), torch.from_numpy(np.concatenate(users).astype(np.int64))


class TigerDecoder(SidRetriever):
    """Generative retrieval: a causal decoder names the next item's semantic ID (beam / exact / projection)."""

    name = "tiger_decoder"
    config_class = TigerDecoderConfig
    #: small and fast, for the shared contract tests
    test_config = TigerDecoderConfig(
        sid_config=SidConfig(levels=2, codebook_size=16, dim=16, collisions="dedup"), dim=32, n_layers=1, n_heads=2,
        max_items=10, beam=20, train=TrainConfig(epochs=20, batch_size=64, lr=1e-2, threads=1))

    def _make_net(self, n_items: int, n_prefix: int) -> TigerDecoderNet:
        return TigerDecoderNet(self.codes_, self.sizes_, n_items, self.config, n_prefix)

    def _training_rows(self, items: np.ndarray, offsets: np.ndarray) -> Windows:
        windows, users = training_windows(items, offsets, self.config.max_items + 1)
        return Windows(windows, users, target_col=-1, split=None, prefix_fn=self._training_prefix)
