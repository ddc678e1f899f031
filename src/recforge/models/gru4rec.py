"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018): a GRU over the item history.

The recurrent state after each item, projected to the embedding size, scores the next item against the tied item
table. Left-padded windows are rotated so that real items come first and packed, so padding never enters the GRU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recforge.models.sequential import SequenceNet, SequentialRecommender, check_sequence_config
from recforge.train.trainer import TrainConfig


@dataclass(frozen=True)
class GRU4RecConfig:
    """GRU4Rec hyper-parameters."""

    dim: int = 64  # item embedding size
    hidden: int = 128  # GRU state size
    n_layers: int = 1  # stacked GRU layers
    dropout: float = 0.2  # dropout on embeddings (and between GRU layers)
    max_len: int = 50  # history truncated to the last max_len items
    loss: str = "ce"  # ce | bce | sampled_softmax | gbce
    n_negatives: int = 256  # negatives for sampled losses
    sampler: str = "uniform"  # negative sampler: uniform | popularity (with logQ correction)
    gbce_t: float = 0.75  # gBCE calibration parameter t
    sliding: bool = False  # sliding-window augmentation for histories longer than max_len
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=3e-3))  # the Trainer's settings

    def __post_init__(self) -> None:
        check_sequence_config(self)
        if self.hidden < 1:
            from recforge.errors import ConfigError

            raise ConfigError(f"hidden must be >= 1, got {self.hidden}")


class GRU4RecNet(SequenceNet):
    """Embedding -> GRU -> linear projection to the embedding space."""

    def __init__(self, n_items: int, cfg: GRU4RecConfig):
        super().__init__(n_items, cfg.loss, cfg.gbce_t)
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
        b, length = items.shape
        lengths = (items > 0).sum(1)
        pad = length - lengths
        ar = torch.arange(length, device=items.device)[None]
        # Rotate each row left by its padding so the history starts at position 0 (what packing expects).
        front = items.gather(1, (ar + pad[:, None]) % length)
        x = self.dropout(self.item_emb(front))
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out = self.proj(pad_packed_sequence(out, batch_first=True, total_length=length)[0])
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
