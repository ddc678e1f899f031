"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018): a GRU over the item history.

The recurrent state after each item, projected to the embedding size, scores the next item against the tied item
table. Left-padded windows are rotated so that real items come first: padding then only follows a history, so it
never reaches the states that are used (they are rotated back and the padding positions zeroed). This is exact
without ``pack_padded_sequence``, whose per-batch variable-size copies cost CPU time (an ML-100K epoch: 1.7 -> 1.2
CPU-s without them) and heap fragmentation; training batches are length-bucketed and trimmed, so little padding is
computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from recforge.errors import ConfigError
from recforge.models.sequential import SequenceNet, SequentialConfig, SequentialRecommender
from recforge.train.trainer import TrainConfig


@dataclass(frozen=True)
class GRU4RecConfig(SequentialConfig):
    """GRU4Rec hyper-parameters: :class:`SequentialConfig` (``dim`` is the item embedding size) plus the GRU state
    size; one GRU layer and a learning rate of 3e-3 by default."""

    #: hyper-parameter search space (see recforge.experiments.tune): the shared one plus the GRU state size
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {**SequentialConfig.search_space,
                                                          "hidden": ("choice", (64, 128, 256))}

    n_layers: int = 1  # stacked GRU layers
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=3e-3))  # the Trainer's settings
    hidden: int = 128  # GRU state size

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden < 1:
            raise ConfigError(f"hidden must be >= 1, got {self.hidden}")


class GRU4RecNet(SequenceNet):
    """Embedding -> GRU -> linear projection to the embedding space."""

    def __init__(self, n_items: int, cfg: GRU4RecConfig):
        super().__init__(n_items, cfg.loss, cfg.gbce_t, cfg.temperature)
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=cfg.dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.hidden, cfg.n_layers, batch_first=True,
                          dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.proj = nn.Linear(cfg.hidden, cfg.dim)

    @property
    def item_weight(self) -> torch.Tensor:
        return self.item_emb.weight

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        length = items.shape[1]
        lengths = (items > 0).sum(1)
        pad = length - lengths
        ar = torch.arange(length, device=items.device)[None]
        # Rotate each row left by its padding so the history starts at position 0 and padding trails it.
        front = items.gather(1, (ar + pad[:, None]) % length)
        out, _ = self.gru(self.dropout(self.item_emb(front)))  # (B, L, hidden); positions >= length: padding
        out = self.proj(out)
        back = ((ar - pad[:, None]) % length)[..., None].expand(-1, -1, out.shape[-1])
        return out.gather(1, back) * (items > 0).unsqueeze(-1)


class GRU4Rec(SequentialRecommender):
    """Session-based recommendation with a recurrent network."""

    name = "gru4rec"
    config_class = GRU4RecConfig
    #: small and fast, for the shared contract tests
    test_config = GRU4RecConfig(dim=32, hidden=32, max_len=20,
                                train=TrainConfig(epochs=8, batch_size=64, lr=5e-3, threads=1))

    def _build_net(self, n_items: int) -> GRU4RecNet:
        return GRU4RecNet(n_items, self.config)
