"""Decoding semantic IDs: a prefix trie of the valid IDs, beam search constrained by it, and exact likelihoods.

A retriever network (``tiger_decoder``, ``tiger``) exposes three operations, written here as :class:`TokenDecoder`:
``context(tokens, prefix, first_pos)`` runs the history once and keeps what later steps attend to (the caller passes
that context to the functions here), ``extend(ctx, seq)`` runs M candidate continuations of t tokens per history
against that cache, and ``level_logits(hidden, level)`` gives the next-token
logits of one ID level. Every distribution over a level is renormalised over the trie's valid children of the prefix,
so the item likelihood ``sum_t log p(c_t | history, c_<t)`` sums to 1 over the catalogue (a ``LogProb``).

Shapes: B histories, W beams, T tokens per ID, K_t values at level t, P_t distinct prefixes of length t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

#: candidate continuations per ``extend`` call in exact scoring (bounds memory by B x chunk x T x D)
EXACT_CHUNK = 512


class TokenDecoder(Protocol):
    """What the search needs from a decoder network."""

    def context(self, tokens: torch.Tensor, prefix: torch.Tensor | None, first_pos: int) -> Any:
        """Left-padded history tokens (B, S), prefix tokens (B, P) -> a cache whose ``last`` is the final hidden
        state (B, D); ``first_pos`` items are generated after the history (list mode)."""
        ...

    def extend(self, ctx: Any, seq: torch.Tensor) -> torch.Tensor:
        """Continuations (B, M, t) of ID tokens (level values, not vocabulary ids) -> hidden states (B, M, t, D)."""
        ...

    def level_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        """Hidden states (..., D) -> logits (..., K_level) of the ID token at ``level``."""
        ...


@dataclass(frozen=True)
class PrefixTrie:
    """The valid IDs as a trie, one dense table per level.

    ``child[t]`` int64 (P_t, K_t): the prefix id at level t+1 reached by appending value c to prefix p, or at the last
    level the dense item id; -1 where no ID continues that way. ``prefix_of[t]`` int64 (n_items+1,): each item's
    prefix id at level t (row 0 = padding, -1). ``prefix_tokens[t]`` int64 (P_t, t): the values of every prefix."""

    child: list[torch.Tensor]
    prefix_of: list[torch.Tensor]
    prefix_tokens: list[torch.Tensor]

    @classmethod
    def build(cls, codes: np.ndarray, sizes: tuple[int, ...]) -> PrefixTrie:
        """From unique codes (n_items+1, T) (row 0 = padding) and the values per level (T,)."""
        body = codes[1:]
        n, depth = body.shape
        prefix_of, tokens = [], []
        for t in range(depth + 1):
            if t == 0:
                inv, uniq = np.zeros(n, np.int64), np.zeros((1, 0), np.int64)
            else:
                uniq, inv = np.unique(body[:, :t], axis=0, return_inverse=True)
            prefix_of.append(np.r_[-1, inv.ravel()].astype(np.int64))
            tokens.append(uniq.astype(np.int64))
        child = []
        for t in range(depth):
            table = np.full((len(tokens[t]), sizes[t]), -1, np.int64)
            nxt = np.arange(1, n + 1) if t == depth - 1 else prefix_of[t + 1][1:]
            table[prefix_of[t][1:], body[:, t]] = nxt
            child.append(torch.from_numpy(table))
        return cls(child=child, prefix_of=[torch.from_numpy(p) for p in prefix_of[:depth]],
                   prefix_tokens=[torch.from_numpy(tk) for tk in tokens[:depth]])

    @property
    def depth(self) -> int:
        return len(self.child)


def _masked_log_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """log-softmax over the valid entries of the last axis; invalid entries are -inf."""
    return torch.log_softmax(logits.float().masked_fill(~valid, -torch.inf), dim=-1)


@torch.inference_mode()
def beam_search(net: TokenDecoder, trie: PrefixTrie, ctx: Any, beam: int, banned: torch.Tensor | None = None,
                generated: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Constrained beam search from a history's context -> (items int64 (B, beam), log-likelihoods float32
    (B, beam)), best first; a slot without a valid ID holds item 0 and -inf.

    Only trie paths are expanded, so every returned item is a real one. ``banned`` bool (B, n_items+1) masks items
    (the history's own, excluded ones): a prefix all of whose items are banned is never kept in the beam, so the beam
    is spent on items that can be recommended (the scores stay the items' log-likelihoods). ``generated``
    (B, j*T) holds the tokens of items already generated after the history (list mode): the search names the next
    one, and the scores are conditional on them."""
    b = ctx.last.shape[0]
    rows = torch.arange(b)[:, None]
    if generated is None or generated.shape[1] == 0:
        generated = torch.zeros((b, 0), dtype=torch.int64)
        first = ctx.last
    else:
        first = net.extend(ctx, generated[:, None])[:, 0, -1]
    alive = _alive_prefixes(trie, banned)
    # level 0: one prefix (the empty one) per history
    lp = _masked_log_softmax(net.level_logits(first, 0), trie.child[0][0] >= 0)  # (B, K0)
    if trie.depth == 1:
        return _finish(lp, trie.child[0][0].expand(b, -1), beam, banned, rows)
    w = min(beam, lp.shape[1])
    score, tok = torch.topk(_prune(lp, trie.child[0][0].expand(b, -1), alive, 1), w, dim=1)
    node = trie.child[0][0][tok].clamp_min(0)  # (B, W) prefix ids at level 1
    seq = tok[:, :, None]
    for t in range(1, trie.depth):
        done = generated[:, None].expand(-1, seq.shape[1], -1)
        hidden = net.extend(ctx, torch.cat([done, seq], 2))[:, :, -1]  # (B, W, D)
        table = trie.child[t][node]  # (B, W, K_t)
        step = _masked_log_softmax(net.level_logits(hidden, t), table >= 0)
        cand = score[:, :, None] + step  # (B, W, K_t); dead beams (-inf) stay dead
        if t == trie.depth - 1:
            return _finish(cand.flatten(1), table.flatten(1), beam, banned, rows)
        k_t = cand.shape[2]
        w = min(beam, cand.shape[1] * k_t)
        score, flat = torch.topk(_prune(cand.flatten(1), table.flatten(1), alive, t + 1), w, dim=1)
        parent, tok = flat // k_t, flat % k_t
        node = table.flatten(1).gather(1, flat).clamp_min(0)
        seq = torch.cat([seq[rows, parent], tok[:, :, None]], dim=2)
    raise AssertionError("unreachable: the loop returns at the last level")


def _alive_prefixes(trie: PrefixTrie, banned: torch.Tensor | None) -> list[torch.Tensor] | None:
    """Per history, which prefixes still lead to an item that is not banned: ``alive[t]`` bool (B, P_t) for levels
    t = 1..depth-1 (index 0 unused); None when nothing is banned."""
    if banned is None:
        return None
    free = (~banned[:, 1:]).float()  # (B, n_items)
    alive = [torch.zeros(0)]
    for t in range(1, trie.depth):
        count = free.new_zeros((len(free), len(trie.prefix_tokens[t])))
        alive.append(count.index_add_(1, trie.prefix_of[t][1:], free) > 0)
    return alive


def _prune(cand: torch.Tensor, nodes: torch.Tensor, alive: list[torch.Tensor] | None, level: int) -> torch.Tensor:
    """Candidate scores (B, C) whose next prefix ids at ``level`` (B, C) (-1 invalid) lead only to banned items
    -> -inf."""
    if alive is None:
        return cand
    dead = ~alive[level].gather(1, nodes.clamp_min(0))
    return cand.masked_fill(dead, -torch.inf)


def _finish(cand: torch.Tensor, items: torch.Tensor, beam: int, banned: torch.Tensor | None, rows: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Last level: candidates (B, C) with their item ids (B, C) (-1 invalid) -> the top ``beam`` valid items."""
    cand = cand.masked_fill(items < 0, -torch.inf)
    if banned is not None:
        cand = cand.masked_fill(banned[rows, items.clamp_min(0)], -torch.inf)
    w = min(beam, cand.shape[1])
    score, pos = torch.topk(cand, w, dim=1)
    found = items.gather(1, pos).clamp_min(0)
    found = found.masked_fill(torch.isneginf(score), 0)
    if w < beam:  # fewer candidates than beams: pad
        pad = beam - w
        found = torch.cat([found, found.new_zeros((len(found), pad))], 1)
        score = torch.cat([score, score.new_full((len(score), pad), -torch.inf)], 1)
    return found, score.float()


@torch.inference_mode()
def exact_log_likelihood(net: TokenDecoder, trie: PrefixTrie, ctx: Any, n_items: int) -> torch.Tensor:
    """log p(item | history) of every item from a history's context -> (B, n_items+1) float32 (column 0 = -inf).

    One extension per distinct prefix (P_1 + ... + P_{T-1} short continuations per history against the cached
    history), so the cost grows with the number of distinct prefixes, not with n_items x T full passes."""
    b = ctx.last.shape[0]
    out = torch.zeros((b, n_items + 1))
    body = slice(1, n_items + 1)
    for t in range(trie.depth):
        table = trie.child[t]  # (P_t, K_t)
        level_lp = torch.empty((b, table.shape[0], table.shape[1]))
        if t == 0:
            level_lp[:, 0] = _masked_log_softmax(net.level_logits(ctx.last, 0), table[0] >= 0)
        else:
            prefixes = trie.prefix_tokens[t]
            for s in range(0, len(prefixes), EXACT_CHUNK):
                seq = prefixes[s : s + EXACT_CHUNK][None].expand(b, -1, -1)
                hidden = net.extend(ctx, seq)[:, :, -1]
                level_lp[:, s : s + EXACT_CHUNK] = _masked_log_softmax(net.level_logits(hidden, t),
                                                                      table[s : s + EXACT_CHUNK][None] >= 0)
        # each item's value at level t and its prefix there
        codes_t = _item_values(trie, t, n_items)
        out[:, body] += level_lp[:, trie.prefix_of[t][body], codes_t]
    out[:, 0] = -torch.inf
    return out


def _item_values(trie: PrefixTrie, t: int, n_items: int) -> torch.Tensor:
    """The value at level t of items 1..n_items (n_items,), read back from the trie."""
    pref = trie.prefix_of[t][1 : n_items + 1]
    nxt = trie.prefix_of[t + 1][1 : n_items + 1] if t + 1 < trie.depth else torch.arange(1, n_items + 1)
    table = trie.child[t][pref]  # (n_items, K_t)
    return (table == nxt[:, None]).int().argmax(1)


def target_log_likelihood(net: TokenDecoder, trie: PrefixTrie, ctx: Any, codes: torch.Tensor,
                          targets: torch.Tensor) -> torch.Tensor:
    """log p(target | history), the sum of the target ID's token log-probabilities: a history context, the code
    table (n_items+1, T) and dense targets (B, M) -> (B, M) float32. Differentiable (callers that only read the
    values wrap it in ``torch.inference_mode``)."""
    seq = codes[targets]  # (B, M, T)
    first = _masked_log_softmax(net.level_logits(ctx.last, 0), trie.child[0][0] >= 0)  # (B, K0)
    total = first.gather(1, seq[:, :, 0])  # (B, M)
    if trie.depth > 1:
        hidden = net.extend(ctx, seq[:, :, :-1])  # (B, M, T-1, D)
        for t in range(1, trie.depth):
            valid = trie.child[t][trie.prefix_of[t][targets]] >= 0  # (B, M, K_t)
            lp = _masked_log_softmax(net.level_logits(hidden[:, :, t - 1], t), valid)
            total = total + lp.gather(2, seq[:, :, t : t + 1])[..., 0]
    return total.float()
