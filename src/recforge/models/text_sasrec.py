"""TextSASRec: SASRec whose item table comes from the items' text (and/or attributes), so that items nobody has
interacted with (cold items) are represented, ranked and added after training.

Item tower (``tower``):

- ``text``: frozen text vectors (from the registered ``embedder`` over the ``template`` sentences) through a trained
  adapter (a linear map, or a one-hidden-layer MLP with ``adapter_hidden`` > 0);
- ``attr``: the catalogue's multi-hot attributes through a trained linear map (mean of the attributes' vectors);
- ``text+attr``: the sum of both;
- ``text+id``: text plus a learned per-item ID embedding, dropped per item with probability ``id_dropout`` in
  training (so the text part alone must rank well); items without training interactions never use theirs.

The sequence encoder is SASRec's (the shared transformer blocks of ``recforge.nn.attention``, right-aligned learned
positions); the head is the cosine between the last state and every tower vector, divided by ``temperature``.
Items without training interactions are left out of the training softmax (they never occur as targets; as
negatives they would only be pushed away), so their score is their text's cosine alone.

Warm-vs-cold calibration (``calibration = "valid"``): after training, one offset is added to the score of every item
without training interactions; it is the value (on a grid of cosine offsets in [-0.5, 0.5], divided by the
temperature) that maximises NDCG@10 over the validation events ranked among all unseen items. ``"none"`` keeps 0.
The offset is only as good as the validation events are representative: on a cold-item split all validation targets
are cold, so it learns to favour cold items.

``personal_lora_experts`` > 0 adds a :class:`~recforge.nn.personal_lora.PersonalLoRA` on the final state (RecLoRA's
per-user LoRA mixture): ``personal_lora_experts`` shared rank-``personal_lora_rank`` adapters of a frozen identity
layer, mixed by a gate over the user's history representation (at each position, the mean of the normalised tower
vectors of the items up to it), so that every user's last layer gets its own low-rank update. 0 (the default) leaves
the network as it is.

``add_items`` (an ``ItemAdder``) appends items from their text / attributes without retraining; they are scored
like the cold items (text tower, cold offset). The model reads its side information through
``ItemSideConsumer``: the run path (or ``recforge.text.bind_items``) binds it before ``fit``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.models.base import check_bound_side, extend_items
from recforge.models.sequential import AttentionConfig, SequenceNet, SequentialRecommender
from recforge.nn.attention import TransformerBlock, attention_mask, right_aligned_positions
from recforge.nn.losses import sequence_loss
from recforge.nn.personal_lora import PersonalLoRA
from recforge.protocols import ItemSide, ItemSideSpec

log = logging.getLogger(__name__)

Tower = Literal["text", "attr", "text+attr", "text+id"]
Calibration = Literal["none", "valid"]
#: training logit of items without training interactions (out of the softmax; finite, so no NaN gradients)
OUT_OF_SOFTMAX = -1e4
#: cosine offsets tried by the "valid" calibration
OFFSET_GRID = np.linspace(-0.5, 0.5, 41)


@dataclass(frozen=True)
class TextSASRecConfig(AttentionConfig):
    """:class:`AttentionConfig` (dim, n_layers, n_heads, dropout, max_len, loss, train, ...) plus the item tower."""

    tower: Tower = "text"  # text | attr | text+attr | text+id
    embedder: dict[str, Any] = field(default_factory=lambda: {"name": "minilm"})  # {"name": <embedder key>, ...}
    template: str = "kv"  # item sentence template (recforge.text.TEMPLATES)
    adapter_hidden: int = 0  # 0: linear adapter from text vectors; > 0: MLP with this hidden width
    id_dropout: float = 0.5  # text+id: probability that an item's ID embedding is dropped in a training step
    calibration: Calibration = "valid"  # cold-item score offset: chosen on validation, or none
    temperature: float = 0.05  # cosine head: cos(state, item) / temperature (must be > 0)
    personal_lora_experts: int = 0  # > 0: per-user mixture of this many LoRA experts on the final state (RecLoRA)
    personal_lora_rank: int = 4  # rank of each PersonalLoRA expert

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0 (the head is a cosine), got {self.temperature}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.adapter_hidden < 0:
            raise ConfigError(f"adapter_hidden must be >= 0, got {self.adapter_hidden}")
        if self.personal_lora_experts < 0 or self.personal_lora_rank < 1:
            raise ConfigError(f"personal_lora_experts must be >= 0 and personal_lora_rank >= 1, got "
                              f"{self.personal_lora_experts} and {self.personal_lora_rank}")
        if "text" in self.tower and (not isinstance(self.embedder, dict) or not self.embedder.get("name")):
            raise ConfigError(f"embedder must be a table with a name, e.g. {{name = 'hashing'}}, got {self.embedder!r}")

    @property
    def uses_text(self) -> bool:
        return self.tower != "attr"

    @property
    def uses_attr(self) -> bool:
        return self.tower in ("attr", "text+attr")


class TextSASRecNet(SequenceNet):
    """Causal transformer over tower vectors; the tower table doubles as the (cosine) output layer.

    Buffers: ``text`` (n+1, d_text) frozen vectors, ``attr`` (n+1, n_attr+1) row-normalised multi-hot, ``warm``
    (n+1,) 1.0 for items with training interactions, ``train_bias`` (n+1,) the training logit offset (0 warm,
    OUT_OF_SOFTMAX otherwise); ``out_bias`` (not trained) holds the calibrated cold offset used at scoring."""

    def __init__(self, cfg: TextSASRecConfig, text: torch.Tensor, attr: torch.Tensor, warm: torch.Tensor):
        n_items = len(warm) - 1
        super().__init__(n_items, cfg.loss, cfg.gbce_t, cfg.temperature)
        self.cfg = cfg
        self.out_bias.requires_grad_(False)
        self.register_buffer("text", text.float())
        self.register_buffer("attr", attr.float())
        self.register_buffer("warm", warm.float())
        self.register_buffer("train_bias", torch.where(warm > 0, 0.0, OUT_OF_SOFTMAX).float())
        d = cfg.dim
        if cfg.uses_text:
            dt = text.shape[1]
            self.adapter = nn.Linear(dt, d) if not cfg.adapter_hidden else nn.Sequential(
                nn.Linear(dt, cfg.adapter_hidden), nn.GELU(), nn.Linear(cfg.adapter_hidden, d))
        if cfg.uses_attr:
            self.attr_proj = nn.Linear(attr.shape[1], d, bias=False)
        if cfg.tower == "text+id":
            self.id_emb = nn.Embedding(n_items + 1, d)
            nn.init.normal_(self.id_emb.weight, std=0.02)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        if cfg.personal_lora_experts:
            identity = nn.Linear(d, d, bias=False)
            nn.init.eye_(identity.weight)
            self.personal = PersonalLoRA(identity, cfg.personal_lora_experts, cfg.personal_lora_rank, d,
                                         freeze_base=True)

    def tower(self) -> torch.Tensor:
        """Item vectors (n+1, D) from text / attributes / IDs; row 0 (padding) is zero."""
        parts = []
        if self.cfg.uses_text:
            parts.append(self.adapter(self.text))
        if self.cfg.uses_attr:
            parts.append(self.attr_proj(self.attr))
        if self.cfg.tower == "text+id":
            keep = self.warm
            if self.training and self.cfg.id_dropout > 0:
                keep = keep * (torch.rand_like(keep) >= self.cfg.id_dropout)
            parts.append(self.id_emb.weight * keep[:, None])
        table = torch.stack(parts).sum(0)
        return torch.cat([torch.zeros_like(table[:1]), table[1:]])

    @property
    def item_weight(self) -> torch.Tensor:
        return self.tower()

    def _encode(self, items: torch.Tensor, table: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        pos = right_aligned_positions(self.pos_emb, items.shape[1], items.device)
        vectors = F.normalize(table[items], dim=-1, eps=1e-6)
        x = vectors * self.cfg.dim ** 0.5 + pos[None]
        x = self.drop(x) * (items > 0).unsqueeze(-1)
        mask = attention_mask(items, True)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and i == len(self.blocks) - 1)
        x = self.norm(x)
        if not self.cfg.personal_lora_experts:
            return x
        user = self.history_mean(items, vectors)
        return self.personal(x, user[:, -x.shape[1]:])

    @staticmethod
    def history_mean(items: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """The user representation PersonalLoRA's gate reads: items (B, L), their normalised tower vectors
        (B, L, D) -> (B, L, D), at each position the mean vector of the (non-padding) items up to it."""
        real = (items > 0).unsqueeze(-1)
        return (vectors * real).cumsum(1) / real.cumsum(1).clamp_min(1)

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self._encode(items, self.tower())

    def last_hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self._encode(items, self.tower(), last_only=True)[:, -1]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        table = self.tower()  # one ID-dropout draw for the inputs and the output layer of this step
        hidden = F.normalize(self._encode(batch["input"], table), dim=-1, eps=1e-6) / self.temperature
        weight = F.normalize(table, dim=-1, eps=1e-6)
        return sequence_loss(self.loss_name, hidden, batch, weight, self.n_items, self.train_bias, self.gbce_t)

    @torch.no_grad()
    def extend(self, text: torch.Tensor, attr: torch.Tensor) -> None:
        """Append items (their text (m, d_text) and attribute (m, n_attr+1) rows) as cold items."""
        m = len(text) if self.cfg.uses_text else len(attr)
        cold_rows = self.out_bias[1:][self.warm[1:] == 0]
        cold = cold_rows[:1] if len(cold_rows) else self.out_bias.new_zeros(1)
        self.text = torch.cat([self.text, text.float().to(self.text)]) if self.cfg.uses_text else self.text
        self.attr = torch.cat([self.attr, attr.float().to(self.attr)]) if self.cfg.uses_attr else self.attr
        self.warm = torch.cat([self.warm, self.warm.new_zeros(m)])
        self.train_bias = torch.cat([self.train_bias, self.train_bias.new_full((m,), OUT_OF_SOFTMAX)])
        self.out_bias = nn.Parameter(torch.cat([self.out_bias, cold.expand(m)]), requires_grad=False)
        if self.cfg.tower == "text+id":
            w = self.id_emb.weight
            self.id_emb = nn.Embedding.from_pretrained(torch.cat([w, w.new_zeros(m, w.shape[1])]), freeze=False)
        self.n_items += m


class TextSASRec(SequentialRecommender):
    """SASRec over text / attribute item towers with a cosine head, cold-item calibration and ``add_items``."""

    name = "text_sasrec"
    config_class = TextSASRecConfig
    #: small and fast, for the shared contract tests (the hashing embedder needs no optional extra)
    test_config = {"embedder": {"name": "hashing", "dim": 64}, "dim": 32, "n_layers": 1, "n_heads": 1,
                   "max_len": 20, "calibration": "none",
                   "train": {"epochs": 8, "batch_size": 64, "lr": 3e-3, "threads": 1}}

    def __init__(self, config: TextSASRecConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.side_: ItemSide | None = None
        self.warm_: torch.Tensor | None = None

    # ------------------------------------------------------------------ side information
    def item_side_spec(self) -> ItemSideSpec:
        cfg = self.config
        return ItemSideSpec(embedder=dict(cfg.embedder) if cfg.uses_text else None, template=cfg.template,
                            attributes=cfg.uses_attr)

    def bind_items(self, side: ItemSide) -> None:
        if self.config.uses_text and side.vectors is None:
            raise ConfigError(f"text_sasrec (tower {self.config.tower!r}) needs item text vectors")
        if self.config.uses_attr and side.attributes is None:
            raise ConfigError(f"text_sasrec (tower {self.config.tower!r}) needs item attributes")
        self.side_ = side

    def _side_tensors(self, side: ItemSide) -> tuple[torch.Tensor, torch.Tensor]:
        """(text (n+1, d_text), row-normalised attributes (n+1, n_attr+1)); an empty (n+1, 0) for an unused part."""
        n1 = len(side.item_ids) + 1
        text = torch.as_tensor(np.asarray(side.vectors, np.float32)) if self.config.uses_text \
            else torch.zeros((n1, 0))
        if self.config.uses_attr:
            a = np.asarray(side.attributes.todense(), np.float32)
            attr = torch.from_numpy(a / np.maximum(a.sum(1, keepdims=True), 1.0))
        else:
            attr = torch.zeros((n1, 0))
        if len(text) != n1 or len(attr) != n1:
            raise DataError(f"item side information has {len(text)} / {len(attr)} rows for {n1 - 1} items (+ padding)")
        return text, attr

    # ------------------------------------------------------------------ training
    def _build_net(self, n_items: int) -> TextSASRecNet:
        text, attr = self._side_tensors(self.side_)
        return TextSASRecNet(self.config, text, attr, self.warm_)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        check_bound_side(self.side_, train, "text_sasrec", "the item side information",
                         "item side information describes")
        self.warm_ = torch.from_numpy(train.item_counts() > 0)
        self.warm_[0] = False
        super()._fit(train, valid)
        self.side_ = None  # everything needed is in the net's buffers now
        if self.config.calibration == "valid" and valid is not None and len(valid):
            self._calibrate(valid)

    @torch.inference_mode()
    def _calibrate(self, valid: Interactions) -> None:
        """Set the cold offset to the grid value with the best validation NDCG@10 among all unseen items."""
        users = valid.user.astype(np.int64)
        known = users <= len(self.seq_offsets_) - 2
        users, targets = users[known], valid.item.astype(np.int64)[known]
        if not len(users):
            return
        self.net_.out_bias.zero_()
        scores = self._score(users)  # (V, n+1), uncalibrated
        scores[:, 0] = -torch.inf
        seen = self.seen_[users]
        rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
        scores[torch.from_numpy(rows), torch.from_numpy(seen.indices.astype(np.int64))] = -torch.inf
        cold = (self.net_.warm.cpu() == 0)
        cold[0] = False
        target = scores[torch.arange(len(users)), torch.from_numpy(targets)]
        t_cold = cold[torch.from_numpy(targets)]
        best, best_ndcg = 0.0, -1.0
        for c in sorted(OFFSET_GRID, key=abs):  # on ties the smallest shift wins: no signal leaves the scores as they are
            off = float(c) / self.config.temperature
            shifted = scores + off * cold.float()
            tgt = target + off * t_cold.float()
            rank = (shifted > tgt[:, None]).sum(1)  # ties go to the target (optimistic only on exact ties)
            ndcg = torch.where(rank < 10, 1.0 / torch.log2(rank.double() + 2.0), 0.0).mean().item()
            if ndcg > best_ndcg + 1e-12:
                best, best_ndcg = off, ndcg
        self.net_.out_bias.copy_(best * cold.float())
        self.cold_offset_ = best
        log.info("text_sasrec: cold-item offset %.3f (cosine %.3f), validation NDCG@10 %.4f over %d events",
                 best, best * self.config.temperature, best_ndcg, len(users))

    # ------------------------------------------------------------------ new items
    def add_items(self, side: ItemSide) -> None:
        """Append ``side.item_ids`` (new external ids; ``side.vectors`` / ``side.attributes`` with a padding row 0)
        as items scored from their side information, without retraining."""
        self._check_fitted()
        m = len(side.item_ids)
        text, attr = self._side_tensors(side)
        if self.config.uses_text and text.shape[1] != self.net_.text.shape[1]:
            raise ConfigError(f"new items' text vectors have width {text.shape[1]}, the model's "
                              f"{self.net_.text.shape[1]} (use the embedder the model was trained with)")
        if self.config.uses_attr and attr.shape[1] != self.net_.attr.shape[1]:
            raise ConfigError(f"new items have {attr.shape[1] - 1} attributes, the model {self.net_.attr.shape[1] - 1}")
        extend_items(self, list(side.item_ids))
        self.net_.extend(text[1:], attr[1:])
        log.info("text_sasrec: %d items added from their side information", m)

    # ------------------------------------------------------------------ persistence
    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        net = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        self.net_ = TextSASRecNet(self.config, net["text"], net["attr"], net["warm"])
        self.net_.load_state_dict(net)
        self.net_.eval()
        self.seq_items_, self.seq_offsets_, self.seq_times_ = state["seq.items"], state["seq.offsets"], state["seq.times"]

