"""RLMRec: collaborative-filtering embeddings (BPR-MF or LightGCN) aligned with item text vectors by an auxiliary
objective.

The collaborative part (``backbone``) is trained with the BPR loss (sampled negatives, L2 on the batch's ID
embeddings):

- ``mf`` (default): BPR-MF, ``s_ui = p_u . q_i + b_i``.
- ``lightgcn`` (He et al., SIGIR 2020): the user / item vectors are the mean over layers 0..``layers`` of the ID
  embeddings propagated over the symmetric-normalised user-item graph of the training log
  (:func:`recforge.nn.graph.propagate`), ``s_ui = e_u . e_i`` with no bias. With ``aux = "none"`` this is plain
  LightGCN.

``aux`` adds, with weight ``aux_weight``, one alignment objective from ``recforge.nn.alignment_losses`` on the CF
vectors (the propagated ones for ``lightgcn``) of the batch's distinct items (and, with ``align_users``, users):

- ``contrastive`` (RLMRec-Con): InfoNCE between each CF vector and its text vector mapped into the CF space by a
  trained MLP; the other rows of the batch are negatives.
- ``generative`` (RLMRec-Gen): the CF vector mapped into the text space by a trained MLP must reconstruct its text
  vector (1 - cosine). Nothing is masked (RLMRec-Gen masks graph nodes; here the objective is the same for both
  backbones).
- ``ilm`` (ILM's item-item and item-text terms): CF item vectors mapped into the text space; items that co-occur in
  a user's history are positives of each other (a random item of the user's history per batch row), plus the
  item-text InfoNCE of the mapped vector against the item's own text vector.
- ``none``: plain BPR-MF or plain LightGCN.

A user's text vector is the normalised mean of the text vectors of their training items (the stand-in for an LLM
user profile; an item's is its catalogue sentence's vector). Items without text (zero vectors) are left out of the
objectives.

``user_align = "post"`` adds Molar's post-alignment: after the CF fit, a content-side user tower (an MLP over the
user's text vector) is trained with the CF embeddings fixed, pulled toward each user's CF vector by InfoNCE
(:func:`~recforge.nn.alignment_losses.user_post_alignment`); scoring then uses ``p_u + mix * |p_u| * g(t_u)/|g(t_u)|``
with ``mix`` chosen on a grid by validation NDCG@10 (0 keeps the CF vector; without validation data it stays 0).

The model reads item text vectors through ``ItemSideConsumer`` (the run path or ``recforge.text.bind_items`` binds
them before ``fit``); a saved model holds only its user / item tables (for ``lightgcn`` the propagated vectors,
computed once after the fit) and needs no catalogue and no graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recforge.config import check_choices
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import TrainerFit, check_bound_side
from recforge.models.bpr import BPRConfig, BPRNet, PairData
from recforge.models.validation import early_stopping_metric, validation_metric
from recforge.nn.alignment_losses import (
    info_nce,
    item_item_contrastive,
    reconstruction_loss,
    user_post_alignment,
)
from recforge.nn.graph import normalized_adjacency, propagate
from recforge.protocols import ItemSide, ItemSideSpec
from recforge.train.trainer import Trainer

log = logging.getLogger(__name__)

Aux = Literal["none", "contrastive", "generative", "ilm"]
UserAlign = Literal["none", "post"]
Backbone = Literal["mf", "lightgcn"]
#: mixes of the post-aligned content user vector tried on validation (0 = the CF vector alone)
MIX_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class RLMRecConfig(BPRConfig):
    """A BPR-trained backbone (``factors``, ``reg``, ``init_std``, ``train`` as :class:`BPRConfig`; ``backbone``
    mf or lightgcn) plus an alignment objective with the item text vectors. ``layers`` is not in the search space:
    it only matters for ``lightgcn`` and the space is shared with ``mf``."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        **BPRConfig.search_space, "aux_weight": ("log", 1e-3, 1.0), "temperature": ("float", 0.05, 0.5)}

    backbone: Backbone = "mf"  #: the CF part: mf (BPR-MF) | lightgcn (graph-propagated ID embeddings, no bias)
    layers: int = 3  #: LightGCN propagation depth K (>= 1; used by backbone = "lightgcn")
    aux: Aux = "contrastive"  #: alignment objective: none | contrastive | generative | ilm
    aux_weight: float = 0.1  #: weight of the alignment objective next to the BPR loss (>= 0)
    temperature: float = 0.2  #: temperature of the contrastive objectives (> 0)
    align_users: bool = True  #: also align user vectors with their text vectors (contrastive, generative)
    aux_batch: int = 1024  #: the first this many rows of each BPR batch feed the alignment objective
    user_align: UserAlign = "none"  #: "post": Molar-style user post-alignment after the CF fit
    post_epochs: int = 10  #: epochs of the post-alignment stage
    embedder: dict[str, Any] = field(default_factory=lambda: {"name": "minilm"})  #: {"name": <embedder key>, ...}
    template: str = "kv"  #: item sentence template (recforge.text.TEMPLATES)

    def __post_init__(self) -> None:
        check_choices(self)
        super().__post_init__()
        if self.layers < 1:
            raise ConfigError(f"layers (LightGCN propagation depth) must be >= 1, got {self.layers}")
        if not self.aux_weight >= 0:
            raise ConfigError(f"aux_weight must be >= 0, got {self.aux_weight}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.aux_batch < 2:
            raise ConfigError(f"aux_batch must be >= 2 (contrastive objectives need negatives), got {self.aux_batch}")
        if self.post_epochs < 1:
            raise ConfigError(f"post_epochs must be >= 1, got {self.post_epochs}")
        if self.reads_text and (not isinstance(self.embedder, dict) or not self.embedder.get("name")):
            raise ConfigError(f"embedder must be a table with a name, e.g. {{name = 'hashing'}}, got {self.embedder!r}")

    @property
    def reads_text(self) -> bool:
        """Whether the model needs item text vectors (any alignment objective or the post-alignment)."""
        return self.aux != "none" or self.user_align == "post"


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


def _first_rows(ids: torch.Tensor) -> torch.Tensor:
    """Row indices of the first occurrence of each distinct value of ``ids`` (B,), in value order."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((len(uniq),), len(ids), dtype=torch.long, device=ids.device)
    return first.scatter_reduce(0, inverse, torch.arange(len(ids), device=ids.device), reduce="amin")


class RLMRecNet(BPRNet):
    """BPRNet plus the alignment heads. Buffers: ``item_text`` (n_items+1, d_t), ``user_text`` (n_users+1, d_t)
    (zero rows: no text); for ``lightgcn`` also ``adjacency``, the normalised graph (n_users+1 + n_items+1 nodes,
    padding rows isolated; not saved). ``to_cf`` maps text into the CF space (contrastive), ``to_text`` CF into the
    text space (generative, ilm)."""

    def __init__(self, cfg: RLMRecConfig, n_users: int, n_items: int, item_text: torch.Tensor,
                 user_text: torch.Tensor, adjacency: torch.Tensor | None = None):
        super().__init__(n_users, n_items, cfg.factors, cfg.reg, cfg.init_std)
        self.cfg = cfg
        self.register_buffer("item_text", item_text.float())
        self.register_buffer("user_text", user_text.float())
        self.register_buffer("adjacency", adjacency, persistent=False)
        if adjacency is not None:
            self.bias.requires_grad_(False)  # LightGCN scores e_u . e_i: the item bias stays 0
        d_t, f = item_text.shape[1], cfg.factors
        if cfg.aux == "contrastive":
            self.to_cf = _mlp(d_t, f, f)
        elif cfg.aux in ("generative", "ilm"):
            self.to_text = _mlp(f, d_t, f)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The CF vectors (users (n_users+1, f), items (n_items+1, f)): the ID embeddings (mf) or their LightGCN
        propagation over ``adjacency`` (lightgcn)."""
        if self.adjacency is None:
            return self.user.weight, self.item.weight
        return propagate(self.adjacency, self.user.weight, self.item.weight, self.cfg.layers)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch: user, pos, neg (B,) (+ partner (B,) for ilm) -> BPR loss + aux_weight * alignment loss."""
        user_cf, item_cf = self.tables()  # one propagation per step, shared by both losses
        loss = self.pair_loss(batch, user_cf, item_cf)  # lightgcn: no bias (it stays 0), L2 on layer 0
        if self.cfg.aux == "none" or self.cfg.aux_weight == 0:
            return loss
        return loss + self.cfg.aux_weight * self.alignment(batch, user_cf, item_cf)

    def alignment(self, batch: dict[str, torch.Tensor], user_cf: torch.Tensor, item_cf: torch.Tensor) -> torch.Tensor:
        """The ``aux`` objective on the CF vectors user_cf (n_users+1, f), item_cf (n_items+1, f) of the distinct
        items (and users) of the batch's first ``aux_batch`` rows."""
        cfg = self.cfg
        head = {k: v[: cfg.aux_batch] for k, v in batch.items()}
        rows = _first_rows(head["pos"])
        rows = rows[self.item_text[head["pos"][rows]].abs().sum(1) > 0]  # items without text are left out
        items = head["pos"][rows]
        if cfg.aux == "ilm":
            anchors = self.to_text(item_cf[items])
            partners = head["partner"][rows]
            return (item_item_contrastive(anchors, self.to_text(item_cf[partners]), partners, cfg.temperature)
                    + info_nce(anchors, self.item_text[items], cfg.temperature))
        loss = self._align(item_cf[items], self.item_text[items])
        if cfg.align_users:
            users = torch.unique(head["user"])
            users = users[self.user_text[users].abs().sum(1) > 0]
            loss = loss + self._align(user_cf[users], self.user_text[users])
        return loss

    def _align(self, cf: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """cf (B, f), text (B, d_t) -> the contrastive or generative loss of one kind of node (0 for B < 2)."""
        if len(cf) < 2:
            return cf.sum() * 0.0
        if self.cfg.aux == "contrastive":
            return info_nce(cf, self.to_cf(text), self.cfg.temperature)
        return reconstruction_loss(self.to_text(cf), text)


class AlignData(PairData):
    """BPR triples; for ``ilm`` each row also gets ``partner``: a random item of the same user (co-occurrence)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int, csr: sp.csr_array | None):
        super().__init__(users, items, n_items)
        self.indptr = torch.from_numpy(csr.indptr.astype(np.int64)) if csr is not None else None
        self.indices = torch.from_numpy(csr.indices.astype(np.int64)) if csr is not None else None

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = super().batch(rows, generator)
        if self.indptr is not None:
            u = out["user"]
            start, degree = self.indptr[u], self.indptr[u + 1] - self.indptr[u]
            pick = (torch.rand(len(u), generator=generator) * degree).long().clamp_max(degree - 1)
            out["partner"] = self.indices[start + pick]
        return out


class PostAlignNet(nn.Module):
    """The content-side user tower of the post-alignment: ``forward`` is the InfoNCE between g(t_u) and the fixed
    CF vectors of the batch's users. Buffers: ``user_text`` (n_users+1, d_t), ``cf`` (n_users+1, f)."""

    def __init__(self, user_text: torch.Tensor, cf: torch.Tensor, temperature: float):
        super().__init__()
        self.register_buffer("user_text", user_text)
        self.register_buffer("cf", cf)
        self.temperature = temperature
        self.tower = _mlp(user_text.shape[1], cf.shape[1], cf.shape[1])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch["user"]
        return user_post_alignment(self.tower(self.user_text[users]), self.cf[users], self.temperature)


class UserRows:
    """A BatchSource over the users with text (post-alignment)."""

    def __init__(self, users: np.ndarray):
        self.users = torch.from_numpy(users.astype(np.int64))

    def __len__(self) -> int:
        return len(self.users)

    def order(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self), generator=generator)

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"user": self.users[rows]}


class RLMRec(TrainerFit):
    """BPR-MF or LightGCN (``backbone``) with a text alignment objective (RLMRec / ILM) and optional Molar user
    post-alignment; ``aux = "none"`` is plain BPR-MF or plain LightGCN. An Embedder: the score u_u . q_i + b_i is the
    inner product of [u_u, 1] and [q_i, b_i] (for lightgcn, the propagated vectors and b_i = 0)."""

    name = "rlmrec"
    config_class = RLMRecConfig
    #: small, fast settings for the contract test suite (the hashing embedder needs no optional extra)
    test_config = {"embedder": {"name": "hashing", "dim": 64}, "factors": 16,
                   "train": {"epochs": 10, "batch_size": 512, "lr": 0.03, "clip": 0.0, "patience": 0}}

    def __init__(self, config: RLMRecConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.side_: ItemSide | None = None
        self.mix_ = 0.0

    # ------------------------------------------------------------------ side information
    def item_side_spec(self) -> ItemSideSpec:
        cfg = self.config
        return ItemSideSpec(embedder=dict(cfg.embedder) if cfg.reads_text else None, template=cfg.template)

    def bind_items(self, side: ItemSide) -> None:
        if self.config.reads_text and side.vectors is None:
            raise ConfigError(f"rlmrec (aux {self.config.aux!r}, user_align {self.config.user_align!r}) needs item "
                              "text vectors")
        self.side_ = side

    def _text(self, train: Interactions, csr: sp.csr_array) -> tuple[torch.Tensor, torch.Tensor]:
        """(item text (n_items+1, d_t), user text (n_users+1, d_t)): the bound vectors and each user's normalised
        mean over their training items; (n+1, 0) tables when the model reads no text."""
        if not self.config.reads_text:
            return torch.zeros((train.n_items + 1, 0)), torch.zeros((train.n_users + 1, 0))
        check_bound_side(self.side_, train, "rlmrec", "the item text vectors", "item vectors describe")
        items = np.asarray(self.side_.vectors, np.float32)
        if len(items) != train.n_items + 1:
            raise ConfigError(f"the bound text vectors have {len(items)} rows for {train.n_items} items (+ padding)")
        users = np.asarray(csr @ items, np.float32)
        users /= np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(items), torch.from_numpy(users)

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        csr = train.to_csr(binary=True)
        item_text, user_text = self._text(train, csr)
        torch.manual_seed(cfg.train.seed)  # the initial weights are part of what the seed fixes
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        # dense ids index the graph's nodes directly: users 0..n_users, items 0..n_items (row 0 of each: padding)
        adjacency = (normalized_adjacency(rows, csr.indices, train.n_users + 1, train.n_items + 1)
                     if cfg.backbone == "lightgcn" else None)
        net = RLMRecNet(cfg, train.n_users, train.n_items, item_text, user_text, adjacency)
        data = AlignData(rows, csr.indices, train.n_items, csr if cfg.aux == "ilm" else None)
        self.mix_ = 0.0
        self._take_tables(net)
        metric_fn = early_stopping_metric(self, train, valid, cfg.train.eval_metric, cfg.train.eval_users,
                                          cfg.train.seed)

        def evaluate_fn() -> float:  # validation scores the current CF vectors (propagated, for lightgcn)
            self._take_tables(net)
            return metric_fn()

        log.info("rlmrec: %d pairs, %d users x %d items, %s backbone%s, %d factors, aux %s (weight %g)", len(data),
                 train.n_users, train.n_items, cfg.backbone,
                 f" ({cfg.layers} layers)" if cfg.backbone == "lightgcn" else "", cfg.factors, cfg.aux, cfg.aux_weight)
        self._train(net, data, evaluate_fn if metric_fn is not None else None)
        self._take_tables(net)  # computed once: scoring never propagates again
        self.side_ = None  # what scoring needs is in the tables now
        if cfg.user_align == "post":
            self._post_align(train, valid, user_text)

    def _take_tables(self, net: RLMRecNet) -> None:
        """The scoring tables from ``net``: its CF vectors (for lightgcn, one propagation over the graph) and the item
        bias, detached copies (on the net's device)."""
        with torch.no_grad():
            user, item = net.tables()
            self.user_, self.item_, self.bias_ = user.detach().clone(), item.detach().clone(), net.bias.detach().clone()

    def _post_align(self, train: Interactions, valid: Interactions | None, user_text: torch.Tensor) -> None:
        """Molar post-alignment: train the content user tower toward the fixed CF user vectors, then choose the mix
        of its (norm-matched) output into the user vectors by validation NDCG@10."""
        cfg = self.config
        cf = self.user_.clone()
        has_text = np.flatnonzero(user_text.abs().sum(1).numpy() > 0)
        has_text = has_text[has_text > 0]
        if len(has_text) < 2:
            raise ConfigError("rlmrec user_align='post' needs at least two users with item text")
        torch.manual_seed(cfg.train.seed)
        net = PostAlignNet(user_text, cf, cfg.temperature)
        stage = replace(cfg.train, epochs=cfg.post_epochs, patience=0, batch_size=min(cfg.train.batch_size, 1024))
        Trainer(stage).fit(net, UserRows(has_text), None)
        net.cpu().eval()
        with torch.no_grad():
            content = F.normalize(net.tower(user_text), dim=1) * cf.norm(dim=1, keepdim=True)
            content[user_text.abs().sum(1) == 0] = 0.0
        if valid is None or not len(valid):
            log.warning("rlmrec: no validation data to choose the post-alignment mix; it stays 0 (CF vectors only)")
            return
        best, best_ndcg = 0.0, -1.0
        for mix in MIX_GRID:
            self.user_ = cf + mix * content
            ndcg = validation_metric(self, train, valid, "ndcg@10")
            if ndcg > best_ndcg + 1e-12:
                best, best_ndcg = mix, ndcg
        self.user_, self.mix_ = cf + best * content, best
        log.info("rlmrec: post-alignment mix %.2f (validation NDCG@10 %.4f)", best, best_ndcg)

    # ------------------------------------------------------------------ scoring
    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1) (on CPU; while training the tables may sit on the Trainer's device)."""
        with torch.no_grad():
            u = self.user_[torch.from_numpy(users).to(self.user_.device)]
            return (u @ self.item_.T + self.bias_).cpu()

    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        """Dense user ids (U,) -> [u_u, 1] (U, factors+1)."""
        u = self.user_[torch.from_numpy(np.asarray(users, dtype=np.int64))].detach()
        return torch.cat([u, torch.ones(len(u), 1)], dim=1)

    def item_embeddings(self) -> torch.Tensor:
        """[q_i, b_i] (n_items+1, factors+1); row 0 is padding."""
        return torch.cat([self.item_, self.bias_[:, None]], dim=1).detach()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {"user": self.user_, "item": self.item_, "bias": self.bias_, "mix": torch.tensor([self.mix_])}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.user_, self.item_, self.bias_ = state["user"], state["item"], state["bias"]
        self.mix_ = float(state["mix"][0])
