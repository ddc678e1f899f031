"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained with the Bayesian personalised ranking loss.

For a user u, an observed item i and a sampled unobserved item j, the loss is -log sigmoid(s_ui - s_uj) with
s_ui = p_u . q_i + b_i, plus an L2 penalty on the embeddings in the batch. Training runs through the one
:class:`~recforge.train.trainer.Trainer`; this file only owns the data, the loss and the scoring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import TrainerFit
from recforge.models.validation import early_stopping_metric
from recforge.train.trainer import TrainConfig

log = logging.getLogger(__name__)


def _default_train() -> TrainConfig:
    return TrainConfig(epochs=30, batch_size=4096, lr=5e-3, clip=0.0, patience=3)


@dataclass(frozen=True)
class BPRConfig:
    """BPR matrix factorisation."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "factors": ("choice", (32, 64, 128)), "reg": ("log", 1e-6, 1e-2), "train.lr": ("log", 1e-3, 5e-2)}

    factors: int = 64  #: latent dimension
    reg: float = 1e-4  #: L2 penalty on the user / positive / negative embeddings of each triple
    init_std: float = 0.1  #: std of the initial embeddings
    train: TrainConfig = field(default_factory=_default_train)  #: the Trainer's settings (epochs, lr, seed, ...)

    def __post_init__(self) -> None:
        if self.factors < 1:
            raise ConfigError(f"factors must be >= 1, got {self.factors}")
        if self.reg < 0:
            raise ConfigError(f"reg must be >= 0, got {self.reg}")
        if not self.init_std > 0:
            raise ConfigError(f"init_std must be > 0, got {self.init_std}")


class BPRNet(nn.Module):
    """User / item embeddings and item biases; ``forward(batch)`` is the mean BPR loss of the batch's triples."""

    def __init__(self, n_users: int, n_items: int, factors: int, reg: float, init_std: float):
        super().__init__()
        self.reg = reg
        self.user = nn.Embedding(n_users + 1, factors)
        self.item = nn.Embedding(n_items + 1, factors)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch: user, pos, neg, each (B,) int64 -> scalar loss."""
        return self.pair_loss(batch, self.user.weight, self.item.weight)

    def pair_loss(self, batch: dict[str, torch.Tensor], users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The mean BPR loss of the batch's (user, pos, neg) triples scored by the vectors users (n_users+1, f) and
        items (n_items+1, f) plus the item bias, with L2 on the triples' own (layer-0) embeddings -> scalar."""
        u, i, j = batch["user"], batch["pos"], batch["neg"]
        diff = (users[u] * (items[i] - items[j])).sum(1) + self.bias[i] - self.bias[j]
        penalty = (self.user(u).pow(2).sum(1) + self.item(i).pow(2).sum(1) + self.item(j).pow(2).sum(1)).mean()
        return -nn.functional.logsigmoid(diff).mean() + self.reg * penalty

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """(U,) user ids -> (U, n_items+1)."""
        return self.user(users) @ self.item.weight.T + self.bias


class PairData:
    """Training pairs (user, positive item) with uniformly sampled negatives that the user has not interacted with.

    Negatives are drawn for a whole batch at once; collisions with positives are redrawn a few times (vectorised),
    which leaves a negligible fraction of false negatives on sparse data.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int):
        self.users = torch.from_numpy(users.astype(np.int64))
        self.items = torch.from_numpy(items.astype(np.int64))
        self.n_items = n_items
        # Sorted (user, item) keys: membership of a sampled pair is one searchsorted.
        self.keys = torch.unique(self.users * (n_items + 1) + self.items)

    def __len__(self) -> int:
        return len(self.users)

    def order(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Row order for one epoch: a random permutation of the pairs."""
        return torch.randperm(len(self), generator=generator)

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        u = self.users[rows]
        neg = torch.randint(1, self.n_items + 1, (len(rows),), generator=generator)
        for _ in range(3):
            key = u * (self.n_items + 1) + neg
            pos = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
            clash = self.keys[pos] == key
            if not clash.any():
                break
            neg = torch.where(clash, torch.randint(1, self.n_items + 1, (len(rows),), generator=generator), neg)
        return {"user": u, "pos": self.items[rows], "neg": neg}


class BPR(TrainerFit):
    """BPR-MF; scores training users only (a new user has no embedding). An Embedder: the score p_u . q_i + b_i is
    the inner product of [p_u, 1] and [q_i, b_i]."""

    name = "bpr"
    config_class = BPRConfig
    #: small, fast settings for the contract test suite
    test_config = BPRConfig(factors=16, train=TrainConfig(epochs=10, batch_size=512, lr=0.03, clip=0.0, patience=0))

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        torch.manual_seed(cfg.train.seed)  # the initial weights are part of what the seed fixes
        self.net_ = BPRNet(train.n_users, train.n_items, cfg.factors, cfg.reg, cfg.init_std)
        pairs = train.to_csr(binary=True)
        rows = np.repeat(np.arange(pairs.shape[0]), np.diff(pairs.indptr))
        data = PairData(rows, pairs.indices, train.n_items)
        evaluate_fn = early_stopping_metric(self, train, valid, cfg.train.eval_metric, cfg.train.eval_users,
                                            cfg.train.seed)

        log.info("bpr: %d pairs, %d users x %d items, %d factors", len(data), train.n_users, train.n_items, cfg.factors)
        self._train(self.net_, data, evaluate_fn)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1)."""
        return self.net_.scores(torch.from_numpy(users))

    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        """Dense user ids (U,) -> [p_u, 1] (U, factors+1): ``score(users)[:, 1:] == q @ item_embeddings()[1:].T``."""
        p = self.net_.user.weight[torch.from_numpy(np.asarray(users, dtype=np.int64))].detach()
        return torch.cat([p, torch.ones(len(p), 1)], dim=1)

    def item_embeddings(self) -> torch.Tensor:
        """[q_i, b_i] (n_items+1, factors+1); row 0 is padding."""
        return torch.cat([self.net_.item.weight, self.net_.bias[:, None]], dim=1).detach()

    def _state(self) -> dict[str, torch.Tensor]:
        return {f"net.{k}": v for k, v in self.net_.state_dict().items()}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        weights = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        n_users, factors = weights["user.weight"].shape
        n_items = weights["item.weight"].shape[0]
        self.net_ = BPRNet(n_users - 1, n_items - 1, factors, self.config.reg, self.config.init_std)
        self.net_.load_state_dict(weights)
        self.net_.eval()
