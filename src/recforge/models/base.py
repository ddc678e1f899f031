"""The Recommender contract and its base class: id mapping, seen-item masking, top-k, save/load without pickle.

A model subclass sets ``name`` (its registry name) and ``config_class`` (a frozen dataclass), and implements
``_fit(train, valid)``, ``_score(users) -> (U, n_items+1)`` and ``_state() / _load_state()``; models that can
score a history they were not trained on (item-based, sequential) also implement ``_score_histories``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from recforge.config import from_dict, to_dict
from recforge.data.interactions import Interactions
from recforge.data.jagged import as_jagged
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError, NotFittedError, UnknownIdError
from recforge.registry import get_model

OnUnknown = Literal["raise", "popular", "skip"]


@dataclass(frozen=True)
class Recommendations:
    """Top-k lists in external ids. ``items[i]`` and ``scores[i]`` belong to ``users[i]``;
    ``fallback[i]`` is True when the user was unknown and got the popularity fallback."""

    users: list[Any]
    items: list[list[Any]]
    scores: list[list[float]]
    fallback: list[bool]

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {"user": u, "items": it, "scores": sc, "fallback": fb}
            for u, it, sc, fb in zip(self.users, self.items, self.scores, self.fallback)
        ]


@runtime_checkable
class EmbeddingModel(Protocol):
    """Optional protocol: a model whose score is ``user_vector · item_vector`` (serving uses it for /similar and
    for faiss retrieval on large catalogs). Models without it get a co-occurrence fallback for /similar."""

    def item_embeddings(self) -> torch.Tensor:
        """Item vectors, float (n_items+1, d); row 0 is padding."""
        ...

    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        """Dense user ids (U,) -> query vectors (U, d) such that ``score(users)[:, 1:] == q @ items[1:].T``."""
        ...


class Recommender:
    """Base class of every recommender. ``score`` columns are dense item ids; column 0 (padding) is ``-inf``."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = object
    #: True when ``_score_histories`` is implemented (ad-hoc histories, cold-start users, serving sessions).
    supports_histories: ClassVar[bool] = False
    #: True when ``_score_histories`` also takes ``times`` (N,) aligned with the items (e.g. HSTU's time-gap bias).
    uses_time: ClassVar[bool] = False

    def __init__(self, config: Any = None, **overrides: Any):
        if config is None:
            config = from_dict(self.config_class, overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.user_vocab: Vocab | None = None
        self.item_vocab: Vocab | None = None
        self.seen_: sp.csr_array | None = None
        self.popularity_: np.ndarray | None = None

    # ------------------------------------------------------------------ training
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """Fit on ``train`` (``valid`` may drive early stopping / tuning). Returns self."""
        if len(train) == 0:
            raise DataError("cannot fit on an empty training log")
        self.user_vocab, self.item_vocab = train.user_vocab, train.item_vocab
        self.seen_ = train.to_csr(binary=True)
        self.popularity_ = train.item_counts().astype(np.float32)
        self._fit(train, valid)
        return self

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        raise NotImplementedError

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.item_vocab)

    def _check_fitted(self) -> None:
        if self.item_vocab is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def score(self, users: np.ndarray | list[int]) -> torch.Tensor:
        """Scores of dense user ids: (U,) -> float32 tensor (U, n_items+1); column 0 is -inf."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 1 or users.max() > self.n_users):
            raise UnknownIdError(f"dense user ids must be in 1..{self.n_users}")
        out = self._score(users).float()
        out[:, 0] = -torch.inf
        return out

    def _score(self, users: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def score_histories(
        self, histories: list[np.ndarray] | tuple[np.ndarray, np.ndarray], times: np.ndarray | None = None
    ) -> torch.Tensor:
        """Scores for ad-hoc histories -> (B, n_items+1).

        ``histories`` is a list of time-ordered dense item-id arrays, or the jagged pair (items (N,), offsets (B+1,)).
        ``times`` (N,), aligned with the jagged items, is passed on to models that use timestamps (``uses_time``).
        """
        self._check_fitted()
        if not self.supports_histories:
            raise ConfigError(f"model {self.name!r} cannot score ad-hoc histories (it only knows its training users)")
        items, offsets = as_jagged(histories)
        if items.size and (items.min() < 1 or items.max() > self.n_items):
            raise UnknownIdError(f"dense item ids must be in 1..{self.n_items}")
        if times is not None and self.uses_time:
            out = self._score_histories(items, offsets, times=np.asarray(times, dtype=np.int64)).float()
        else:
            out = self._score_histories(items, offsets).float()
        out[:, 0] = -torch.inf
        return out

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def histories_to_csr(self, items: np.ndarray, offsets: np.ndarray) -> sp.csr_array:
        """Jagged histories -> binary csr (B, n_items+1), a helper for item-based models."""
        m = sp.csr_array(
            (np.ones(len(items), np.float32), items, offsets), shape=(len(offsets) - 1, self.n_items + 1)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def recommend(
        self,
        users: list[Any] | Any,
        k: int = 10,
        exclude_seen: bool = True,
        on_unknown: OnUnknown = "raise",
        exclude: list[Any] | None = None,
    ) -> Recommendations:
        """Top-``k`` external item ids for external user ids. Unknown users raise, get popular items, or are skipped."""
        self._check_fitted()
        self._check_k(k)
        users = [users] if np.isscalar(users) or isinstance(users, str) else list(users)
        dense = self.user_vocab.encode(users, on_unknown="raise" if on_unknown == "raise" else "zero")
        if on_unknown == "skip":
            users = [u for u, d in zip(users, dense) if d > 0]
            dense = dense[dense > 0]
        known = dense > 0
        scores = torch.empty((len(dense), self.n_items + 1))
        if known.any():
            scores[torch.from_numpy(known)] = self.score(dense[known])
        if (~known).any():
            scores[torch.from_numpy(~known)] = torch.from_numpy(self.popularity_).float()
        scores[:, 0] = -torch.inf
        if exclude_seen and known.any():
            rows = np.flatnonzero(known)
            sub = self.seen_[dense[known]]
            r, c = sub.nonzero()
            scores[torch.from_numpy(rows[r]), torch.from_numpy(c)] = -torch.inf
        if exclude:
            cols = self.item_vocab.encode(exclude, on_unknown="zero")
            scores[:, torch.from_numpy(cols[cols > 0])] = -torch.inf
        return self._to_recommendations(users, scores, k, (~known).tolist())

    def recommend_history(
        self, history: list[Any], k: int = 10, exclude_seen: bool = True, exclude: list[Any] | None = None,
        times: list[int] | np.ndarray | None = None,
    ) -> tuple[Recommendations, list[Any]]:
        """Top-``k`` for an anonymous session given as external item ids. Returns (recommendations, ignored ids).

        ``times`` (optional, one per history item, in the training data's time unit) feed models that use timestamps
        (``uses_time``: HSTU's time-gap bias, which was trained with them); other models ignore them."""
        self._check_fitted()
        self._check_k(k)
        if times is not None and len(times) != len(history):
            raise ConfigError(f"times must have one value per history item ({len(history)}), got {len(times)}")
        dense = self.item_vocab.encode(history, on_unknown="zero")
        ignored = [h for h, d in zip(history, dense) if d == 0]
        known = dense > 0
        dense = dense[known]
        t = np.asarray(times, dtype=np.int64)[known] if times is not None else None
        scores = self.score_histories([dense], times=t).clone()  # an inference tensor cannot be edited in place
        if exclude_seen and len(dense):
            scores[0, torch.from_numpy(dense)] = -torch.inf
        if exclude:
            cols = self.item_vocab.encode(exclude, on_unknown="zero")
            scores[:, torch.from_numpy(cols[cols > 0])] = -torch.inf
        return self._to_recommendations([None], scores, k, [False]), ignored

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.n_items:
            raise ConfigError(f"k must be in 1..{self.n_items}, got {k}")

    def _to_recommendations(self, users: list[Any], scores: torch.Tensor, k: int, fallback: list[bool]) -> Recommendations:
        top = torch.topk(scores, k, dim=1)
        items, vals = [], []
        for row_idx, row_val in zip(top.indices.numpy(), top.values.numpy()):
            keep = np.isfinite(row_val)
            items.append(self.item_vocab.decode(row_idx[keep]))
            vals.append([float(v) for v in row_val[keep]])
        return Recommendations(users=users, items=items, scores=vals, fallback=fallback)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save (CPU, contiguous)."""
        raise NotImplementedError

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` (name + config + vocabs) and ``model.safetensors`` into directory ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "model": self.name,
            "config": to_dict(self.config),
            "user_vocab": self.user_vocab.to_json(),
            "item_vocab": self.item_vocab.to_json(),
        }
        (path / "model.json").write_text(json.dumps(meta), encoding="utf-8")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._state().items()}
        tensors["_seen.indptr"] = torch.from_numpy(self.seen_.indptr.astype(np.int64))
        tensors["_seen.indices"] = torch.from_numpy(self.seen_.indices.astype(np.int64))
        tensors["_popularity"] = torch.from_numpy(self.popularity_)
        save_file(tensors, str(path / "model.safetensors"))
        return path


def load_model(path: str | Path) -> Recommender:
    """Load any saved model from a directory written by :meth:`Recommender.save` (no pickle involved)."""

    path = Path(path)
    meta_file, weights = path / "model.json", path / "model.safetensors"
    if not meta_file.is_file() or not weights.is_file():
        raise DataError(f"not a saved model (need model.json and model.safetensors): {path}")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        # Copies into torch's own (64-byte aligned) memory: safetensors hands out lazily mapped views at whatever
        # offset the header leaves. BLAS kernels take other code paths on misaligned data (a loaded model's ALS
        # fold-in differed from the saved model's in the last bits), and a serving process would otherwise fault
        # pages in request by request (resident memory creeping up over a soak).
        tensors = {name: t.clone() for name, t in load_file(str(weights)).items()}
    except Exception as exc:  # corrupt files: one clear line
        raise DataError(f"corrupt model artifact in {path}: {exc}") from None
    cls = get_model(meta["model"])
    model = cls(from_dict(cls.config_class, meta["config"]))
    model.user_vocab = Vocab.from_json(meta["user_vocab"])
    model.item_vocab = Vocab.from_json(meta["item_vocab"])
    indptr = tensors.pop("_seen.indptr").numpy()
    indices = tensors.pop("_seen.indices").numpy()
    model.seen_ = sp.csr_array(
        (np.ones(len(indices), np.float32), indices, indptr), shape=(len(model.user_vocab) + 1, len(model.item_vocab) + 1)
    )
    model.popularity_ = tensors.pop("_popularity").numpy()
    model._load_state(tensors)
    return model
