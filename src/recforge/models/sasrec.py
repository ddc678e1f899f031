"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item history, next-item prediction.

Differences from the paper, on purpose: pre-norm blocks, a tied output layer with a per-item bias, and the loss is
configurable (full softmax cross-entropy by default, which trains better than the paper's one-negative BCE; set
``loss = "bce"`` for the original objective, ``"gbce"`` for gSASRec, ``"sampled_softmax"`` for large catalogs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from recforge.models.sequential import SequenceNet, SequentialRecommender, check_attention_config
from recforge.nn.attention import TransformerEncoder
from recforge.train.trainer import TrainConfig


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec hyper-parameters."""

    dim: int = 64  # embedding / hidden size
    n_layers: int = 2  # transformer blocks
    n_heads: int = 2  # attention heads (must divide dim)
    dropout: float = 0.2  # dropout on embeddings, attention and feed-forward
    max_len: int = 50  # history truncated to the last max_len items
    loss: str = "ce"  # ce | bce | sampled_softmax | gbce
    n_negatives: int = 256  # negatives for sampled losses (bce uses at most 8 per position)
    sampler: str = "uniform"  # negative sampler: uniform | popularity (with logQ correction)
    gbce_t: float = 0.75  # gBCE calibration parameter t
    temperature: float = 0.0  # > 0: cosine scores / temperature (L2-normalised states and items); 0: dot
    sliding: bool = False  # sliding-window augmentation for histories longer than max_len
    train: TrainConfig = field(default_factory=TrainConfig)  # the Trainer's settings

    def __post_init__(self) -> None:
        check_attention_config(self)


class SASRecNet(SequenceNet):
    """Causal transformer encoder over items; the item table doubles as the output layer."""

    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__(n_items, cfg.loss, cfg.gbce_t, cfg.temperature)
        self.encoder = TransformerEncoder(n_items + 1, cfg.max_len, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.dropout,
                                          causal=True)

    @property
    def item_weight(self) -> torch.Tensor:
        return self.encoder.item_emb.weight

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(items)

    def last_hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(items, last_only=True)[:, -1]


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation."""

    name = "sasrec"
    config_class = SASRecConfig
    #: small and fast, for the shared contract tests
    test_config = SASRecConfig(dim=32, n_layers=1, n_heads=1, max_len=20,
                              train=TrainConfig(epochs=8, batch_size=64, lr=3e-3, threads=1))

    def _build_net(self, n_items: int) -> SASRecNet:
        return SASRecNet(n_items, self.config)
