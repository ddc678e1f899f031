"""Attribute-aware factorisation scorer shared by the CRS policies (the "estimation" part of EAR, reused by SCPR,
max-entropy and FacT-CRS for ranking).

With user ``u``, accepted attributes ``P`` and embeddings ``U`` (users), ``V`` (items), ``A`` (attributes), ``b`` (item bias):

    item score  s(i | u, P) = u . v_i + sum_{p in P} a_p . v_i + b_i
    attr score  g(a | u, P) = u . a_a + sum_{p in P} a_p . a_a

Trained with BPR on the "train" dialogue pairs: for a (user, item) pair a random subset of the item's attributes plays
the accepted set ``P``; the negative item is drawn either uniformly or from the items sharing ``P`` (EAR's two negative
kinds, so the scorer learns to rank *within* the candidate set); an attribute BPR term ranks the item's remaining
attributes above attributes it lacks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recforge.conversational.data import CRSDataset
from recforge.errors import ConfigError
from recforge.threads import single_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScorerConfig:
    """Hyper-parameters of the attribute-aware FM scorer."""

    dim: int = 64  # embedding size
    epochs: int = 15  # passes over the train pairs
    batch_size: int = 1024  # pairs per step
    lr: float = 0.01  # Adam learning rate
    weight_decay: float = 1e-6  # L2 on the embeddings touched in a batch
    max_context: int = 3  # at most this many item attributes act as the accepted set P
    attr_weight: float = 1.0  # weight of the attribute BPR term
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "epochs", "batch_size", "max_context"):
            if getattr(self, name) < 1:
                raise ConfigError(f"scorer.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"scorer.lr must be > 0, got {self.lr}")


class AttributeFM(nn.Module):
    """Embeddings: users (n_users, d), items (n_items, d), attributes (n_attrs, d), item bias (n_items,)."""

    def __init__(self, n_users: int, n_items: int, n_attrs: int, dim: int):
        super().__init__()
        # sparse gradients: a batch touches few rows, dense Adam over all rows dominated the step time
        self.user = nn.Embedding(n_users, dim, sparse=True)
        self.item = nn.Embedding(n_items, dim, sparse=True)
        self.attr = nn.Embedding(n_attrs, dim, sparse=True)
        self.bias = nn.Embedding(n_items, 1, sparse=True)
        for emb in (self.user, self.item, self.attr):
            nn.init.normal_(emb.weight, std=0.05)
        nn.init.zeros_(self.bias.weight)

    def context(self, users: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        """Query vectors u + sum_p a_p, shape (B, d); ``ctx`` (B, m) attribute ids, ``ctx_mask`` (B, m) validity."""
        return self.user(users) + (self.attr(ctx) * ctx_mask.unsqueeze(-1)).sum(1)


class Scorer:
    """Inference view of a trained :class:`AttributeFM` as numpy arrays (fast per-turn scoring in the episode loop)."""

    def __init__(self, user: np.ndarray, item: np.ndarray, attr: np.ndarray, bias: np.ndarray):
        self.user, self.item, self.attr, self.bias = user, item, attr, bias

    def user_vector(self, user: int) -> np.ndarray:
        """The user's embedding (d,); a negative id (an unknown person, e.g. in ``crs chat``) gets the mean user."""
        return self.user[user].copy() if user >= 0 else self.user.mean(0)

    def query(self, user: int, accepted: list[int], user_vec: np.ndarray | None = None) -> np.ndarray:
        """u + sum_{p in P} a_p, shape (d,). ``user_vec`` overrides the stored user vector (EAR reflection)."""
        u = self.user_vector(user) if user_vec is None else user_vec
        return u + self.attr[accepted].sum(0) if accepted else u.copy()

    def item_scores(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        """s(i | u, P) for ``items`` (C,), shape (C,)."""
        return self.item[items] @ query + self.bias[items]

    def attr_scores(self, query: np.ndarray, attrs: np.ndarray) -> np.ndarray:
        """g(a | u, P) for ``attrs`` (M,), shape (M,)."""
        return self.attr[attrs] @ query

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"scorer.user": torch.from_numpy(self.user), "scorer.item": torch.from_numpy(self.item),
                "scorer.attr": torch.from_numpy(self.attr), "scorer.bias": torch.from_numpy(self.bias)}

    @classmethod
    def from_tensors(cls, state: dict[str, torch.Tensor]) -> Scorer:
        return cls(*(state[f"scorer.{k}"].numpy() for k in ("user", "item", "attr", "bias")))


def _sample_context(attrs_of: list[np.ndarray], items: np.ndarray, m: int, rng: np.random.Generator) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: up to ``m`` accepted attributes of the item (at least one), one held-out positive attribute (or -1).

    Returns ctx (B, m) ids, ctx mask (B, m) floats, held-out positive attribute (B,).
    """
    b = len(items)
    ctx = np.zeros((b, m), dtype=np.int64)
    mask = np.zeros((b, m), dtype=np.float32)
    pos_attr = np.full(b, -1, dtype=np.int64)
    for r, i in enumerate(items):
        a = attrs_of[i]
        perm = rng.permutation(len(a))
        n = int(rng.integers(1, min(m, len(a)) + 1))
        ctx[r, :n] = a[perm[:n]]
        mask[r, :n] = 1.0
        if len(a) > n:
            pos_attr[r] = a[perm[n]]
    return ctx, mask, pos_attr


def train_scorer(dataset: CRSDataset, config: ScorerConfig | None = None) -> Scorer:
    """Fit the FM on the dataset's "train" pairs with BPR (see module doc). Returns the numpy inference view."""
    with single_thread():
        return _train_scorer(dataset, config)


def _train_scorer(dataset: CRSDataset, config: ScorerConfig | None) -> Scorer:
    cfg = config or ScorerConfig()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    users, items = dataset.pairs("train")
    if len(users) == 0:
        raise ConfigError(f"dataset {dataset.name!r} has no train pairs to fit the scorer on")
    model = AttributeFM(dataset.n_users, dataset.n_items, dataset.n_attrs, cfg.dim)
    opt = torch.optim.SparseAdam(list(model.parameters()), lr=cfg.lr)
    csr = dataset.item_attrs
    attrs_of = [csr.indices[csr.indptr[i] : csr.indptr[i + 1]] for i in range(dataset.n_items)]
    csc = csr.tocsc()
    items_of = [csc.indices[csc.indptr[a] : csc.indptr[a + 1]] for a in range(dataset.n_attrs)]
    n = len(users)
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            bu, bi = users[idx], items[idx]
            ctx, mask, pos_attr = _sample_context(attrs_of, bi, cfg.max_context, rng)
            # negatives: half uniform, half among items sharing the first context attribute (harder, in-candidate)
            neg = rng.integers(0, dataset.n_items, len(idx))
            hard = rng.random(len(idx)) < 0.5
            for r in np.flatnonzero(hard):
                pool = items_of[ctx[r, 0]]
                neg[r] = pool[rng.integers(len(pool))]
            neg_attr = rng.integers(0, dataset.n_attrs, len(idx))
            t = {k: torch.from_numpy(v) for k, v in
                 {"u": bu, "i": bi, "j": neg, "c": ctx, "m": mask, "pa": pos_attr, "na": neg_attr}.items()}
            q = model.context(t["u"], t["c"], t["m"])
            vi, vj = model.item(t["i"]), model.item(t["j"])
            si = (q * vi).sum(-1) + model.bias(t["i"]).squeeze(-1)
            sj = (q * vj).sum(-1) + model.bias(t["j"]).squeeze(-1)
            valid_neg = (t["j"] != t["i"]).float()
            loss = -(nn.functional.logsigmoid(si - sj) * valid_neg).sum() / valid_neg.sum().clamp(min=1)
            has_pa = t["pa"] >= 0
            if has_pa.any():
                qa = q[has_pa]
                ga = (qa * model.attr(t["pa"][has_pa])).sum(-1)
                gn = (qa * model.attr(t["na"][has_pa])).sum(-1)
                loss = loss + cfg.attr_weight * -nn.functional.logsigmoid(ga - gn).mean()
            reg = sum((e ** 2).sum(-1).mean() for e in (vi, vj, model.user(t["u"])))
            loss = loss + cfg.weight_decay * reg
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log.info("scorer epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, total / n)
    with torch.no_grad():
        return Scorer(model.user.weight.numpy().copy(), model.item.weight.numpy().copy(),
                      model.attr.weight.numpy().copy(), model.bias.weight.squeeze(-1).numpy().copy())
