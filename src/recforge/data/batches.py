"""Training tensors for sequential models, built once from the jagged sequences of an :class:`Interactions` log.

Every user's time-ordered items become one or more fixed-length, left-padded windows (0 = padding). A window of
``max_len + 1`` items yields ``max_len`` next-item (input, target) pairs; with sliding-window augmentation, long
histories give extra windows ending ``stride`` items earlier. All index arithmetic is vectorized over users: there is
no Python loop per user or per step, and a batch is a row gather from pre-built tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from recforge.errors import ConfigError

Objective = Literal["next", "cloze"]
NegativeMode = Literal["none", "per_position", "shared"]


def window_ends(offsets: np.ndarray, size: int, sliding: bool = False, stride: int | None = None,
                min_len: int = 2) -> np.ndarray:
    """Exclusive end positions (into the flat item array) of every training window.

    offsets (U+1,): user blocks of the flat array. Users with fewer than ``min_len`` items give no window.
    Without ``sliding`` each user gives one window ending at their last item; with it, users longer than ``size``
    also give windows ending ``stride`` (default ``size - 1``, so consecutive windows share one item) items earlier,
    until the window start would fall before the user's first item.
    """
    starts, ends = offsets[:-1], offsets[1:]
    lengths = ends - starts
    keep = lengths >= min_len
    starts, ends, lengths = starts[keep], ends[keep], lengths[keep]
    if not sliding:
        return ends.astype(np.int64)
    step = stride if stride is not None else max(size - 1, 1)
    if step < 1:
        raise ConfigError(f"stride must be >= 1, got {step}")
    # Windows per user: the last one plus one per `step` items that do not fit into it.
    extra = np.maximum(0, -(-(lengths - size) // step))
    counts = 1 + extra
    owner = np.repeat(np.arange(len(ends)), counts)
    rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    out = ends[owner] - rank * step
    # A shortened window must still hold at least min_len items of its user.
    return out[out - starts[owner] >= min_len].astype(np.int64)


def gather_windows(values: np.ndarray, offsets: np.ndarray, ends: np.ndarray, size: int) -> np.ndarray:
    """Left-padded windows: row w holds ``values[max(start, ends[w]-size) : ends[w]]`` right-aligned, 0 elsewhere.

    values (N,), offsets (U+1,), ends (W,) -> (W, size). ``start`` is the first index of the user owning the window.
    """
    owner_start = offsets[np.searchsorted(offsets, ends - 1, side="right") - 1]
    idx = ends[:, None] - size + np.arange(size)[None, :]
    valid = idx >= owner_start[:, None]
    out = np.zeros((len(ends), size), dtype=values.dtype)
    out[valid] = values[idx[valid]]
    return out


def last_window(items: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """The last ``size`` items of each jagged history, left-padded: (B, size) int64 (empty histories -> all 0)."""
    ends = offsets[1:].astype(np.int64)
    starts = offsets[:-1].astype(np.int64)
    idx = ends[:, None] - size + np.arange(size)[None, :]
    valid = idx >= starts[:, None]
    out = np.zeros((len(ends), size), dtype=np.int64)
    out[valid] = items[idx[valid]]
    return out


@dataclass
class SequenceData:
    """Pre-built training tensors plus the recipe that turns a row selection into a batch.

    windows (W, max_len+1) int64 item ids, left-padded; times (W, max_len+1) int64 or None.
    ``objective="next"``: inputs are ``windows[:, :-1]``, targets ``windows[:, 1:]`` (0 where the input is padding).
    ``objective="cloze"``: inputs are ``windows[:, 1:]`` with a fraction ``mask_prob`` of items replaced by
    ``mask_token`` (and, with probability ``mask_prob``, always the last item, so that training matches scoring
    with a trailing mask); targets are the original items at masked positions, 0 elsewhere.
    Negatives: "per_position" draws ``n_negatives`` items per target (B, L, K); "shared" draws K items for the whole
    batch (K,); sampling follows ``sample_prob`` (V,) (uniform over real items when None). ``log_q`` (V,) is the
    log-probability of each item under that sampler (for the logQ correction of sampled softmax).
    """

    windows: torch.Tensor
    times: torch.Tensor | None
    n_items: int
    objective: Objective = "next"
    mask_prob: float = 0.2
    mask_token: int = 0
    negatives: NegativeMode = "none"
    n_negatives: int = 1
    sample_prob: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.objective == "cloze" and self.mask_token <= self.n_items:
            raise ConfigError(f"mask_token must be > n_items ({self.n_items}), got {self.mask_token}")
        if self.negatives != "none" and self.n_negatives < 1:
            raise ConfigError(f"n_negatives must be >= 1, got {self.n_negatives}")
        if self.sample_prob is None:
            prob = torch.ones(self.n_items + 1, dtype=torch.float64)
            prob[0] = 0.0
        else:
            prob = self.sample_prob.to(torch.float64).clone()
            prob[0] = 0.0
        self.sample_prob = prob / prob.sum()
        self.log_q = torch.log(self.sample_prob.clamp_min(1e-30)).float()
        self._uniform = bool((self.sample_prob[1:] == self.sample_prob[1]).all())

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def order(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Row order for one epoch: a random permutation, then sorted by length inside chunks of 32 batches so a
        batch holds histories of similar length (less padding to compute), then batches in random order."""
        n = len(self)
        perm = torch.randperm(n, generator=generator)
        lengths = (self.windows[perm] > 0).sum(1)
        chunk = 32 * batch_size
        keys = torch.arange(n) // chunk * (self.windows.shape[1] + 1) + lengths
        perm = perm[torch.argsort(keys, stable=True)]
        batches = list(torch.split(perm, batch_size))
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return torch.cat([batches[i] for i in shuffled]) if batches else perm

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Rows (B,) -> dict with "input" (B, L), "target" (B, L), optional "time" (B, L), "negatives", "log_q"."""
        w = self.windows[rows]
        out: dict[str, torch.Tensor] = {}
        if self.objective == "next":
            inp, tgt = w[:, :-1], w[:, 1:].clone()
            tgt[inp == 0] = 0
            if self.times is not None:
                out["time"] = self.times[rows][:, :-1]
        else:
            inp = w[:, 1:].clone()
            real = inp > 0
            masked = (torch.rand(inp.shape, generator=generator) < self.mask_prob) & real
            masked[:, -1] |= torch.rand(inp.shape[0], generator=generator) < self.mask_prob
            masked &= real
            tgt = torch.where(masked, inp, torch.zeros_like(inp))
            inp = torch.where(masked, torch.full_like(inp, self.mask_token), inp)
            if self.times is not None:
                out["time"] = self.times[rows][:, 1:]
        # Drop leading columns that are padding in every row: most histories are much shorter than max_len.
        first = int((inp > 0).any(0).int().argmax()) if bool((inp > 0).any()) else inp.shape[1] - 1
        inp, tgt = inp[:, first:], tgt[:, first:]
        if "time" in out:
            out["time"] = out["time"][:, first:]
        out["input"], out["target"] = inp, tgt
        if self.negatives == "per_position":
            shape = (*tgt.shape, self.n_negatives)
            out["negatives"] = self._draw(int(np.prod(shape)), generator).view(shape)
        elif self.negatives == "shared":
            out["negatives"] = self._draw(self.n_negatives, generator)
        if self.negatives != "none":
            out["log_q"] = self.log_q
        return out

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self._uniform:
            return torch.randint(1, self.n_items + 1, (n,), generator=generator)
        return torch.multinomial(self.sample_prob, n, replacement=True, generator=generator)


def build_sequence_data(
    items: np.ndarray,
    offsets: np.ndarray,
    n_items: int,
    max_len: int,
    times: np.ndarray | None = None,
    sliding: bool = False,
    stride: int | None = None,
    **recipe: object,
) -> SequenceData:
    """Windows of ``max_len + 1`` items from jagged sequences (items (N,), offsets (U+1,)) -> :class:`SequenceData`.

    ``recipe`` holds the remaining :class:`SequenceData` fields (objective, negatives, ...). Raises ConfigError when
    no user has the two items a training pair needs.
    """
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}")
    ends = window_ends(offsets, max_len + 1, sliding=sliding, stride=stride, min_len=2)
    if len(ends) == 0:
        raise ConfigError("no training sequence has 2 or more items; sequential models need histories")
    windows = torch.from_numpy(gather_windows(np.asarray(items, np.int64), offsets, ends, max_len + 1))
    t = None
    if times is not None:
        t = torch.from_numpy(gather_windows(np.asarray(times, np.int64), offsets, ends, max_len + 1))
    return SequenceData(windows=windows, times=t, n_items=n_items, **recipe)  # type: ignore[arg-type]
