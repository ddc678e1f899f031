"""P5-lite: a tiny encoder-decoder trained here on three prompt families (P5, Geng et al., RecSys 2022, in miniature).

Every input is a token sequence: the user's recent items followed by a family token, and for the item-level families
a candidate item::

    next item   h_1 … h_k [NEXT]              -> the next item's token
    yes / no    h_1 … h_k [ASK] c [YESNO]     -> [YES] if c is the next item, [NO] for a random item
    rating      h_1 … h_k [ASK] c [RATE]      -> [R1] … [R5], c's rating (only when the log holds 1-5 ratings)

One token per item, numbered by a seeded random permutation of the dense ids (never consecutively, so neighbouring
ids share nothing by construction). The encoder is bidirectional (``nn.attention.TransformerEncoder``); the decoder
is ``n_dec_layers`` cross-attention layers over it from one [BOS] query, and its output is projected onto the tied
token table (plus a bias). Each answer is a single token, so the first decoding step's distribution restricted to
the family's answer tokens is exact: the next-item family's restriction to item tokens is the score over all items
(a projection head; a trie-constrained beam over one-token ids would return the same top-k). Each training row is a
position of a user's training sequence; its family is drawn per epoch with the ``families`` weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recforge.data.batches import gather_windows, last_window
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import HistoryScoring, TrainerFit
from recforge.models.validation import early_stopping_metric
from recforge.nn.attention import TransformerEncoder
from recforge.train.trainer import TrainConfig

log = logging.getLogger(__name__)

#: Special tokens; item tokens follow them.
PAD, NEXT, YESNO, RATE, ASK, BOS, YES, NO = range(8)
RATINGS = np.arange(8, 13)  # [R1] .. [R5]
N_SPECIAL = 13
FAMILIES = ("next", "yesno", "rating")


@dataclass(frozen=True)
class P5LiteConfig:
    #: hyper-parameter search space (see recforge.experiments.tune); ``train.*`` keys are the Trainer's
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dim": ("choice", (32, 64, 128)), "dropout": ("float", 0.0, 0.5), "train.lr": ("log", 1e-4, 1e-2)}

    dim: int = 64
    """Token embedding and hidden size."""
    n_layers: int = 2
    """Encoder layers."""
    n_dec_layers: int = 1
    """Decoder (cross-attention) layers."""
    n_heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    """History items in an input (the most recent)."""
    last_positions: int = 0
    """Training rows per user: the targets at the last this many positions of the sequence (0 = every position)."""
    families: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """Weights of the next-item, yes/no and rating families (the rating family is dropped without 1-5 ratings)."""
    seed: int = 0
    """Seeds the item-token permutation."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, batch_size=256, lr=2e-3, patience=3))

    def __post_init__(self) -> None:
        if self.last_positions < 0:
            raise ConfigError(f"last_positions must be >= 0, got {self.last_positions}")
        if self.dim < 1 or self.n_layers < 1 or self.n_dec_layers < 1 or self.n_heads < 1 or self.max_len < 1:
            raise ConfigError("dim, n_layers, n_dec_layers, n_heads and max_len must be >= 1 (got "
                              f"{self.dim}, {self.n_layers}, {self.n_dec_layers}, {self.n_heads}, {self.max_len})")
        if self.dim % self.n_heads:
            raise ConfigError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if len(self.families) != 3 or min(self.families) < 0 or self.families[0] <= 0:
            raise ConfigError(f"families must be 3 weights >= 0 with next > 0, got {self.families}")


class P5Net(nn.Module):
    """Encoder over tokens (B, L) -> one decoding step from [BOS] -> logits over all tokens (B, n_tokens)."""

    def __init__(self, n_tokens: int, cfg: P5LiteConfig):
        super().__init__()
        self.encoder = TransformerEncoder(n_tokens, cfg.max_len + 3, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.dropout,
                                          causal=False)
        layer = nn.TransformerDecoderLayer(cfg.dim, cfg.n_heads, 2 * cfg.dim, cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.n_dec_layers, norm=nn.LayerNorm(cfg.dim))
        self.out_bias = nn.Parameter(torch.zeros(n_tokens))

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        memory = self.encoder(tokens)
        emb = self.encoder.item_emb.weight
        query = emb[BOS].expand(len(tokens), 1, -1) * emb.shape[1] ** 0.5
        hidden = self.decoder(query, memory, memory_key_padding_mask=tokens == PAD)[:, 0]  # (B, D)
        return hidden @ emb.T + self.out_bias

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of each row's answer among its family's answer tokens (``allowed`` (B, n_tokens))."""
        logits = self.logits(batch["tokens"]).masked_fill(~batch["allowed"], -torch.inf)
        return nn.functional.cross_entropy(logits, batch["target"])


class _Rows:
    """Training rows: every position of a training sequence after the user's first item (a BatchSource)."""

    def __init__(self, model: P5Lite, items: np.ndarray, offsets: np.ndarray, ratings: np.ndarray | None):
        self.model, self.items, self.offsets, self.ratings = model, items, offsets, ratings
        firsts = np.zeros(len(items), bool)
        firsts[offsets[:-1][np.diff(offsets) > 0]] = True
        keep = ~firsts
        if model.config.last_positions:  # only the last positions of each user's sequence
            owner_end = np.repeat(offsets[1:], np.diff(offsets))
            keep &= owner_end - np.arange(len(items)) <= model.config.last_positions
        self.pos = np.flatnonzero(keep)
        w = np.asarray(model.config.families, np.float64)
        if ratings is None:
            w[2] = 0.0
        self.weights = w / w.sum()

    def __len__(self) -> int:
        return len(self.pos)

    def order(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self), generator=generator)

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        pos = self.pos[rows.numpy()]
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        hist = gather_windows(self.items, self.offsets, pos, self.model.config.max_len)
        family = rng.choice(3, size=len(pos), p=self.weights)
        target_item = self.items[pos].astype(np.int64)
        cand = target_item.copy()
        negative = (family == 1) & (rng.random(len(pos)) < 0.5)
        cand[negative] = rng.integers(1, self.model.n_items + 1, negative.sum())
        clash = negative & (cand == target_item)  # a negative drawn equal to the next item moves to the following id
        cand[clash] = cand[clash] % self.model.n_items + 1
        tokens = self.model._tokens(hist, np.where(family == 0, 0, cand), np.asarray(FAMILY_TOKEN)[family])
        n_tokens = self.model.n_tokens
        allowed = np.zeros((len(pos), n_tokens), bool)
        target = np.empty(len(pos), np.int64)
        nxt = family == 0
        allowed[nxt, N_SPECIAL:] = True
        target[nxt] = self.model.token_of_[target_item[nxt]]
        yn = family == 1
        allowed[np.ix_(yn, [YES, NO])] = True
        target[yn] = np.where(negative[yn], NO, YES)
        rt = family == 2
        if rt.any():
            allowed[np.ix_(rt, RATINGS)] = True
            target[rt] = RATINGS[np.clip(np.rint(self.ratings[pos[rt]]).astype(np.int64), 1, 5) - 1]
        return {"tokens": torch.from_numpy(tokens), "allowed": torch.from_numpy(allowed),
                "target": torch.from_numpy(target)}


FAMILY_TOKEN = (NEXT, YESNO, RATE)


class P5Lite(HistoryScoring, TrainerFit):
    """Tiny encoder-decoder over prompt families with one token per item (see the module docstring)."""

    name = "p5_lite"
    config_class = P5LiteConfig
    #: small and fast, for the shared contract tests
    test_config = {"dim": 32, "n_layers": 1, "n_heads": 1, "max_len": 10,
                   "train": {"epochs": 4, "batch_size": 256, "lr": 5e-3, "threads": 1, "patience": 0}}

    def __init__(self, config: P5LiteConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.net_: P5Net | None = None

    @property
    def n_tokens(self) -> int:
        return N_SPECIAL + self.n_items

    # ------------------------------------------------------------------ tokens
    def _tokens(self, hist: np.ndarray, cand: np.ndarray, family: np.ndarray) -> np.ndarray:
        """Left-padded history windows (B, L) (dense ids), candidates (B,) (0 = none) and family tokens (B,) ->
        token rows (B, L+3): the history's tokens, [ASK] and the candidate's token when there is one, then the
        family token, left-padded."""
        b, L = hist.shape
        out = np.zeros((b, L + 3), np.int64)
        out[:, :L] = np.where(hist > 0, self.token_of_[hist], PAD)
        has = cand > 0
        out[:, L] = np.where(has, ASK, PAD)
        out[:, L + 1] = np.where(has, self.token_of_[cand], PAD)
        out[:, L + 2] = family
        # left-align the tail: move the padding between the history and the family token to the front
        order = np.argsort(out != PAD, axis=1, kind="stable")
        return np.take_along_axis(out, order, axis=1)

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.token_of_ = np.zeros(self.n_items + 1, np.int64)
        self.token_of_[1:] = N_SPECIAL + rng.permutation(self.n_items)
        torch.manual_seed(cfg.train.seed)
        self.net_ = P5Net(self.n_tokens, cfg)
        items, offsets = train.sequences()
        self.seq_items_, self.seq_offsets_ = np.asarray(items, np.int64), np.asarray(offsets, np.int64)
        values = np.asarray(train.value, np.float64)
        rated = bool(len(values)) and values.min() >= 1 and values.max() <= 5 and len(np.unique(values)) > 1
        data = _Rows(self, self.seq_items_, self.seq_offsets_, values if rated else None)
        log.info("p5_lite: %d training rows, families %s, %d parameters", len(data),
                 dict(zip(FAMILIES, data.weights.round(3).tolist())), sum(p.numel() for p in self.net_.parameters()))
        evaluate_fn = early_stopping_metric(self, train, valid, cfg.train.eval_metric, cfg.train.eval_users,
                                            cfg.train.seed)
        self._train(self.net_, data, evaluate_fn)

    # ------------------------------------------------------------------ answering
    @torch.inference_mode()
    def _answer(self, hist: np.ndarray, cand: np.ndarray, family: int) -> torch.Tensor:
        """Logits (B, n_tokens) of the first decoding step, in chunks of 512 rows."""
        self.net_.eval()
        dev = next(self.net_.parameters()).device
        tokens = self._tokens(hist, cand, np.full(len(hist), family, np.int64))
        out = [self.net_.logits(torch.from_numpy(tokens[s : s + 512]).to(dev)).float().cpu()
               for s in range(0, len(tokens), 512)]
        return torch.cat(out) if out else torch.zeros((0, self.n_tokens))

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        hist = last_window(items, offsets, self.config.max_len)
        logits = self._answer(hist, np.zeros(len(hist), np.int64), NEXT)
        scores = torch.full((len(hist), self.n_items + 1), -torch.inf)
        scores[:, 1:] = logits[:, torch.from_numpy(self.token_of_[1:])]
        return scores

    def _score(self, users: np.ndarray) -> torch.Tensor:
        starts, ends = self.seq_offsets_[users], self.seq_offsets_[users + 1]
        idx = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(users) else np.zeros(0, np.int64)
        return self._score_histories(self.seq_items_[idx], np.concatenate([[0], np.cumsum(ends - starts)]))

    def _check_items(self, histories: list[np.ndarray], items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        items = np.asarray(items, np.int64)
        if len(histories) != len(items):
            raise ConfigError(f"{len(histories)} histories for {len(items)} items")
        jag_items, offsets = self._jagged(histories)
        if items.size and (items.min() < 1 or items.max() > self.n_items):
            raise ConfigError(f"dense item ids must be in 1..{self.n_items}")
        return last_window(jag_items, offsets, self.config.max_len), items

    def yes_probability(self, histories: list[np.ndarray], items: np.ndarray) -> np.ndarray:
        """The yes/no family: P([YES]) that item b is history b's next item -> float64 (B,)."""
        hist, items = self._check_items(histories, items)
        logits = self._answer(hist, items, YESNO)[:, [YES, NO]]
        return torch.softmax(logits, dim=1)[:, 0].double().numpy()

    def predict_rating(self, histories: list[np.ndarray], items: np.ndarray) -> np.ndarray:
        """The rating family: the expected rating of item b after history b -> float64 (B,) in [1, 5]."""
        hist, items = self._check_items(histories, items)
        probs = torch.softmax(self._answer(hist, items, RATE)[:, torch.from_numpy(RATINGS)], dim=1)
        return (probs.double() @ torch.arange(1, 6, dtype=torch.float64)).numpy()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        state.update(token_of=torch.tensor(self.token_of_), seq_items=torch.tensor(self.seq_items_),
                     seq_offsets=torch.tensor(self.seq_offsets_))
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.token_of_ = state["token_of"].numpy()
        self.seq_items_, self.seq_offsets_ = state["seq_items"].numpy(), state["seq_offsets"].numpy()
        self.net_ = P5Net(N_SPECIAL + len(self.token_of_) - 1, self.config)
        self.net_.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        self.net_.eval()
