"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item history, next-item prediction.

Differences from the paper, on purpose: pre-norm blocks, a tied output layer with a per-item bias, and the loss is
configurable (full softmax cross-entropy by default, which trains better than the paper's one-negative BCE; set
``loss = "bce"`` for the original objective, ``"gbce"`` for gSASRec, ``"sampled_softmax"`` for large catalogs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recforge.models.sequential import AttentionConfig, SequenceNet, SequentialRecommender
from recforge.nn.attention import TransformerEncoder
from recforge.train.trainer import TrainConfig


@dataclass(frozen=True)
class SASRecConfig(AttentionConfig):
    """SASRec hyper-parameters: those of :class:`AttentionConfig` (dim, n_layers, n_heads, dropout, max_len, loss,
    negatives, temperature, sliding, train), nothing of its own."""


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
