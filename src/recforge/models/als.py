"""Implicit ALS (Hu, Koren & Volinsky, ICDM 2008): weighted matrix factorisation with confidence weights.

Minimises sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2) over all user-item pairs, where p_ui = 1 for an
observed pair (else 0) and c_ui = 1 + alpha * r_ui. Alternating exact or conjugate-gradient solves, vectorised over
all users (items) at once: the only per-pair work is over observed pairs, the unobserved ones enter through Y^T Y.
New histories are folded in with one exact solve against the item factors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from recforge.config import check_choices
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import HistoryScoring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ALSConfig:
    """Implicit alternating least squares."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "factors": ("choice", (32, 64, 128)), "reg": ("log", 1e-3, 10.0), "alpha": ("log", 1.0, 100.0)}

    factors: int = 64  #: latent dimension
    reg: float = 0.1  #: L2 penalty on user and item factors
    alpha: float = 10.0  #: confidence slope: c = 1 + alpha * r
    iterations: int = 15  #: alternating sweeps (users then items)
    solver: Literal["cg", "exact"] = "cg"  #: conjugate gradient (warm-started) or exact batched Cholesky solves
    cg_steps: int = 3  #: CG steps per sweep (cg solver only)
    binary: bool = True  #: r = 1 per observed pair; False uses summed interaction values
    init_std: float = 0.01  #: std of the random initial factors
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("factors", "iterations", "cg_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("reg", "alpha", "init_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class _Side:
    """Observed pairs grouped by the side being solved: target index, fixed-side index, confidence - 1 (all (nnz,)),
    and ``indptr`` (n_targets+1,) delimiting each target's pairs."""

    target: torch.Tensor
    other: torch.Tensor
    extra: torch.Tensor
    indptr: np.ndarray


def _side(m: sp.csr_array, alpha: float) -> _Side:
    """Pairs of csr ``m`` (targets x others) in row order."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return _Side(
        target=torch.from_numpy(rows.astype(np.int64)),
        other=torch.from_numpy(m.indices.astype(np.int64)),
        extra=torch.from_numpy(alpha * m.data.astype(np.float32)),
        indptr=m.indptr.astype(np.int64),
    )


def _solve_exact(fixed: torch.Tensor, side: _Side, n_targets: int, reg: float, budget: int = 1 << 22) -> torch.Tensor:
    """Exact least squares for every target: (F^T F + reg I + F^T diag(c-1) F) x = F^T c p -> (n_targets, f).

    Targets are sorted by their number of pairs and processed in chunks whose zero-padded (chunk, max_len, f) pair
    block fits in ``budget`` floats, so the per-target Gram terms are one batched matmul per chunk.
    """
    f = fixed.shape[1]
    base = fixed.T @ fixed + reg * torch.eye(f)
    out = torch.empty(n_targets, f)
    counts = np.diff(side.indptr)
    order = np.argsort(counts, kind="stable")
    per_chunk = max(1, budget // f)  # padded pairs per chunk
    start = 0
    while start < n_targets:  # chunks of targets (a handful), not one target at a time
        longest = max(int(counts[order[min(start + per_chunk, n_targets) - 1]]), 1)
        stop = min(n_targets, start + max(1, per_chunk // longest))
        tgt = order[start:stop]
        length = int(counts[tgt].max())
        # (chunk, length) pair positions, padded with a dummy pair of weight 0.
        pos = side.indptr[tgt][:, None] + np.arange(max(length, 1))[None, :]
        valid = np.arange(max(length, 1))[None, :] < counts[tgt][:, None]
        pos = torch.from_numpy(np.where(valid, pos, 0))
        mask = torch.from_numpy(valid)
        fv = fixed[side.other[pos]] if len(side.other) else torch.zeros(len(tgt), 1, f)  # (chunk, L, f)
        w = torch.where(mask, side.extra[pos], 0.0) if len(side.extra) else torch.zeros(len(tgt), 1)
        a = base + (fv * w[..., None]).transpose(1, 2) @ fv
        b = ((1.0 + w) * mask)[..., None].mul(fv).sum(1)
        out[torch.from_numpy(tgt)] = torch.cholesky_solve(b.unsqueeze(-1), torch.linalg.cholesky(a)).squeeze(-1)
        start = stop
    return out


def _solve_cg(current: torch.Tensor, fixed: torch.Tensor, side: _Side, reg: float, steps: int) -> torch.Tensor:
    """``steps`` conjugate-gradient iterations for all targets at once, warm-started from ``current`` (n_targets, f)."""
    f = fixed.shape[1]
    base = fixed.T @ fixed + reg * torch.eye(f)
    fv = fixed[side.other]  # (nnz, f)

    def matvec(v: torch.Tensor) -> torch.Tensor:  # A v for every target's own A, without forming A
        dots = (fv * v[side.target]).sum(1) * side.extra
        return (v @ base).index_add_(0, side.target, dots[:, None] * fv)

    b = torch.zeros_like(current).index_add_(0, side.target, (1.0 + side.extra)[:, None] * fv)
    x = current.clone()
    r = b - matvec(x)
    p = r.clone()
    rs = (r * r).sum(1)
    for _ in range(steps):
        ap = matvec(p)
        pap = (p * ap).sum(1)
        step = torch.where(pap > 1e-20, rs / pap.clamp_min(1e-20), torch.zeros(()))
        x += step[:, None] * p
        r -= step[:, None] * ap
        rs_new = (r * r).sum(1)
        beta = torch.where(rs > 1e-20, rs_new / rs.clamp_min(1e-20), torch.zeros(()))
        p = r + beta[:, None] * p
        rs = rs_new
    return x


class ALS(HistoryScoring):
    """Implicit ALS; scores training users from their factors and folds in ad-hoc histories. An Embedder: the score
    is X[u] . Y[i]."""

    name = "als"
    config_class = ALSConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        r = sp.csr_array(train.to_csr(binary=cfg.binary), dtype=np.float32)
        users, items = _side(r, cfg.alpha), _side(r.T.tocsr(), cfg.alpha)
        gen = torch.Generator().manual_seed(cfg.seed)
        x = torch.randn(r.shape[0], cfg.factors, generator=gen) * cfg.init_std
        y = torch.randn(r.shape[1], cfg.factors, generator=gen) * cfg.init_std
        x[0], y[0] = 0.0, 0.0  # padding rows
        self.loss_history_: list[float] = []
        for it in range(cfg.iterations):
            if cfg.solver == "exact":
                x = _solve_exact(y, users, r.shape[0], cfg.reg)
                y = _solve_exact(x, items, r.shape[1], cfg.reg)
            else:
                x = _solve_cg(x, y, users, cfg.reg, cfg.cg_steps)
                y = _solve_cg(y, x, items, cfg.reg, cfg.cg_steps)
            self.loss_history_.append(als_loss(x, y, users, cfg.reg))
            log.info("als iteration %d/%d: loss %.4f", it + 1, cfg.iterations, self.loss_history_[-1])
        self.x_, self.y_ = x, y

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1) = X[users] Y^T."""
        return self.x_[torch.from_numpy(users)] @ self.y_.T

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """Fold-in: solve each history's user factor exactly against Y, then score -> (B, n_items+1)."""
        h = self.histories_to_csr(items, offsets)
        x = _solve_exact(self.y_, _side(h, self.config.alpha), h.shape[0], self.config.reg)
        return x @ self.y_.T

    def item_embeddings(self) -> torch.Tensor:
        """Item factors Y, (n_items+1, f); row 0 is padding (serving: /similar and faiss retrieval)."""
        return self.y_

    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        """User factors X[users], (U, f): ``score(users)[:, 1:] == X[users] @ Y[1:].T``."""
        return self.x_[torch.from_numpy(np.asarray(users, dtype=np.int64))]

    def _state(self) -> dict[str, torch.Tensor]:
        return {"x": self.x_, "y": self.y_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.x_, self.y_ = state["x"], state["y"]


def als_loss(x: torch.Tensor, y: torch.Tensor, users: _Side, reg: float) -> float:
    """The full weighted objective over all user-item pairs, in O(nnz f + (U + I) f^2).

    Every pair contributes (x.y)^2 with weight 1 (the trace term); observed pairs then swap that for
    c (1 - x.y)^2.
    """
    all_pairs = float(((x.T @ x) * (y.T @ y)).sum())
    s = (x[users.target] * y[users.other]).sum(1)
    observed = float(((1.0 + users.extra) * (1.0 - s) ** 2 - s**2).sum())
    return all_pairs + observed + reg * float((x * x).sum() + (y * y).sum())
