"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained by cloze masking.

Training replaces a fraction ``mask_prob`` of each window's items by a [mask] token (id n_items+1) and predicts
them from both sides; scoring appends [mask] after the history and reads the prediction there. The output layer is
tied to the item embeddings (plus a per-item bias), after the paper's GELU + LayerNorm projection head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from recforge.errors import ConfigError
from recforge.models.sequential import AttentionConfig, SequenceNet, SequentialRecommender
from recforge.nn.attention import TransformerEncoder
from recforge.train.trainer import TrainConfig


@dataclass(frozen=True)
class BERT4RecConfig(AttentionConfig):
    """BERT4Rec hyper-parameters: :class:`AttentionConfig` (scoring uses the last max_len - 1 items plus [mask]) and
    the cloze masking probability."""

    #: hyper-parameter search space (see recforge.experiments.tune): the shared one plus the masking probability
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {**AttentionConfig.search_space,
                                                          "mask_prob": ("float", 0.1, 0.5)}

    mask_prob: float = 0.2  # cloze masking probability

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.max_len < 2:
            raise ConfigError(f"max_len must be >= 2 for BERT4Rec (history + [mask]), got {self.max_len}")


class BERT4RecNet(SequenceNet):
    """Bidirectional transformer over items and [mask] tokens with a tied output layer."""

    def __init__(self, n_items: int, cfg: BERT4RecConfig):
        super().__init__(n_items, cfg.loss, cfg.gbce_t, cfg.temperature)
        self.mask_token = n_items + 1
        self.encoder = TransformerEncoder(n_items + 2, cfg.max_len, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.dropout,
                                          causal=False)
        self.head = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.LayerNorm(cfg.dim))

    @property
    def item_weight(self) -> torch.Tensor:
        return self.encoder.item_emb.weight

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(items))

    def last_hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        # Drop the oldest item and append [mask]: the prediction at [mask] is the next item.
        masked = torch.cat([items[:, 1:], torch.full_like(items[:, :1], self.mask_token)], dim=1)
        return self.head(self.encoder(masked, last_only=True))[:, -1]


class BERT4Rec(SequentialRecommender):
    """Sequential recommendation with a bidirectional (cloze-trained) transformer."""

    name = "bert4rec"
    config_class = BERT4RecConfig
    #: small and fast, for the shared contract tests
    test_config = BERT4RecConfig(dim=32, n_layers=1, n_heads=1, max_len=20,
                                 train=TrainConfig(epochs=8, batch_size=64, lr=3e-3, threads=1))

    def _build_net(self, n_items: int) -> BERT4RecNet:
        return BERT4RecNet(n_items, self.config)

    def _objective(self, n_items: int) -> dict[str, Any]:
        """Cloze masking: a fraction ``mask_prob`` of each window's items become the [mask] token n_items + 1."""
        return {"objective": "cloze", "mask_token": n_items + 1, "mask_prob": self.config.mask_prob}
