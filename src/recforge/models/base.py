"""The Recommender contract and its base class: id mapping, seen-item masking, top-k, persistence as an artifact.

A model subclass sets ``name`` (its registry name) and ``config_class`` (a frozen dataclass), and implements
``_fit(train, valid)``, ``_score(users) -> (U, n_items+1)`` and ``_state() / _load_state()``. Capabilities beyond
scoring training users are declared by implementing the protocols of :mod:`recforge.protocols`; the mixins here do the
id checks around them:

- :class:`HistoryScoring` (a ``HistoryScorer``): the model implements ``_score_histories(items, offsets)``;
- :class:`TimedHistoryScoring` (a ``TimedHistoryScorer``): ``_score_histories(items, offsets, times=None)``;
- :class:`TrainerFit`: trained by :class:`~recforge.train.trainer.Trainer` (checkpoints, resume, callbacks);
- ``Embedder`` and ``LogProb`` need no mixin: a model implements their methods directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.artifacts import Artifact, load_artifact, save_artifact
from recforge.config import from_dict, to_dict
from recforge.data.interactions import Interactions
from recforge.data.jagged import as_jagged, gather_jagged, jagged_rows
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError, NotFittedError, UnknownIdError
from recforge.models.rank import SeenPolicy, mask_columns, mask_seen, seen_policy, top_k
from recforge.protocols import Histories, HistoryScorer, TimedHistoryScorer
from recforge.registry import get_model
from recforge.train.trainer import BatchSource, Trainer, TrainResult

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


class Recommender:
    """Base class of every recommender. ``score`` columns are dense item ids; column 0 (padding) is ``-inf``."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = object

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
        #: seen_'s items per user row ordered by the user's last interaction with them (oldest first), (nnz,) int64
        self.seen_recency_: np.ndarray | None = None
        self.popularity_: np.ndarray | None = None

    # ------------------------------------------------------------------ training
    def fit(self, train: Interactions, valid: Interactions | None = None, *,
            checkpoint_dir: str | Path | None = None, resume: bool = False) -> Self:
        """Fit on ``train`` (``valid`` may drive early stopping / tuning). Returns self.

        ``checkpoint_dir`` and ``resume`` concern models trained by the Trainer (:class:`TrainerFit`): a checkpoint
        every epoch, and ``resume=True`` continues from it. Other models have nothing to checkpoint: they ignore
        ``checkpoint_dir`` and refuse ``resume`` with a ConfigError."""
        if resume and not isinstance(self, TrainerFit):
            raise ConfigError(f"model {self.name!r} does not support --resume (it is not trained by the Trainer)")
        if len(train) == 0:
            raise DataError("cannot fit on an empty training log")
        self.user_vocab, self.item_vocab = train.user_vocab, train.item_vocab
        self.seen_ = train.to_csr(binary=True)
        self.seen_recency_ = _recency_order(train)
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

    def history(self, dense_user: int) -> np.ndarray:
        """A training user's items in time order, dense ids int64 (n,): the training sequence where the model kept
        it (sequential models), else each seen item once, ordered by the user's last interaction with it (artifacts
        saved before that order was recorded: by id). Empty for the unknown user 0."""
        self._check_fitted()
        if dense_user == 0:
            return np.zeros(0, np.int64)
        if self.seen_recency_ is not None:
            return self.seen_recency_[self.seen_.indptr[dense_user]:self.seen_.indptr[dense_user + 1]].copy()
        return self.seen_[[dense_user]].indices.astype(np.int64)

    def histories_to_csr(self, items: np.ndarray, offsets: np.ndarray) -> sp.csr_array:
        """Jagged histories -> binary csr (B, n_items+1), a helper for item-based models."""
        m = sp.csr_array(  # copy: sum_duplicates sorts in place, which must not touch (or fail on) the caller's arrays
            (np.ones(len(items), np.float32), items, offsets), shape=(len(offsets) - 1, self.n_items + 1), copy=True
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def recommend(
        self,
        users: list[Any] | Any,
        k: int = 10,
        exclude_seen: SeenPolicy | bool = True,
        on_unknown: OnUnknown = "raise",
        exclude: list[Any] | None = None,
        repeatable: list[Any] | None = None,
    ) -> Recommendations:
        """Top-``k`` external item ids for external user ids. Unknown users raise, get popular items, or are skipped.

        ``exclude_seen`` is the seen policy of ``models.rank.seen_policy`` (True/False = "all-seen"/"none"); under
        "seen-except-repeatable" the training items listed in ``repeatable`` (external ids) stay rankable. Ranking and
        ties follow ``models.rank.top_k``."""
        self._check_fitted()
        self._check_k(k)
        policy = seen_policy(exclude_seen)
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
        rep = self._dense_items(repeatable) if repeatable is not None else None
        mask_seen(scores, self.seen_[dense], policy, rep)  # row 0 (unknown users' fallback) holds no history
        mask_columns(scores, self._dense_items(exclude))
        return self._to_recommendations(users, scores, k, (~known).tolist())

    def recommend_history(
        self, history: list[Any], k: int = 10, exclude_seen: SeenPolicy | bool = True, exclude: list[Any] | None = None,
        times: list[int] | np.ndarray | None = None, repeatable: list[Any] | None = None,
    ) -> tuple[Recommendations, list[Any]]:
        """Top-``k`` for an anonymous session given as external item ids. Returns (recommendations, ignored ids).
        ``exclude_seen`` / ``repeatable`` mask the session's items as in :meth:`recommend`.

        ``times`` (optional, one per history item, in the training data's time unit) feed models that use timestamps
        (a ``TimedHistoryScorer``: HSTU's time-gap bias, which was trained with them); other models ignore them."""
        self._check_fitted()
        self._check_k(k)
        policy = seen_policy(exclude_seen)
        if times is not None and len(times) != len(history):
            raise ConfigError(f"times must have one value per history item ({len(history)}), got {len(times)}")
        dense = self.item_vocab.encode(history, on_unknown="zero")
        ignored = [h for h, d in zip(history, dense) if d == 0]
        known = dense > 0
        dense = dense[known]
        t = np.asarray(times, dtype=np.int64)[known] if times is not None else None
        scores = history_scores(self, [dense], t).clone()  # an inference tensor cannot be edited in place
        seen = sp.csr_array((np.ones(len(dense), np.float32), dense, [0, len(dense)]), shape=(1, self.n_items + 1))
        mask_seen(scores, seen, policy, self._dense_items(repeatable) if repeatable is not None else None)
        mask_columns(scores, self._dense_items(exclude))
        return self._to_recommendations([None], scores, k, [False]), ignored

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.n_items:
            raise ConfigError(f"k must be in 1..{self.n_items}, got {k}")

    def _dense_items(self, ids: list[Any] | None) -> np.ndarray:
        """External item ids -> known dense ids (n,); unknown ids are ignored."""
        if ids is None or len(ids) == 0:
            return np.zeros(0, np.int64)
        cols = self.item_vocab.encode(ids, on_unknown="zero")
        return cols[cols > 0]

    def _to_recommendations(self, users: list[Any], scores: torch.Tensor, k: int, fallback: list[bool]) -> Recommendations:
        """Masked scores (B, n_items+1) -> the top-``k`` of each row (``models.rank.top_k``), masked items left out."""
        ranked = top_k(scores, k).lists()
        return Recommendations(users=users, items=[self.item_vocab.decode(i) for i, _ in ranked],
                               scores=[[float(v) for v in s] for _, s in ranked], fallback=fallback)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save (CPU, contiguous)."""
        raise NotImplementedError

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the fitted model as an artifact (:mod:`recforge.artifacts`: ``meta.json`` + ``weights.safetensors``)
        into directory ``path``: table "model", the registry name, the config, the vocabularies in ``extra``; the
        learned tensors plus the seen-item matrix and item popularity as weights. Returns ``path``."""
        self._check_fitted()
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._state().items()}
        tensors["_seen.indptr"] = torch.from_numpy(self.seen_.indptr.astype(np.int64))
        tensors["_seen.indices"] = torch.from_numpy(self.seen_.indices.astype(np.int64))
        if self.seen_recency_ is not None:
            tensors["_seen.recency"] = torch.from_numpy(self.seen_recency_.astype(np.int64))
        tensors["_popularity"] = torch.from_numpy(self.popularity_)
        extra = {"user_vocab": self.user_vocab.to_json(), "item_vocab": self.item_vocab.to_json()}
        return save_artifact(path, table="model", name=self.name, config=to_dict(self.config), tensors=tensors,
                             extra=extra)


def load_model(path: str | Path) -> Recommender:
    """Load any model saved by :meth:`Recommender.save` (no pickle involved); the weights' sha256 is verified.

    Raises DataError (one line naming the path) for a missing, tampered or corrupt artifact, an artifact of another
    table, or a model name this version does not register."""
    return model_from_artifact(load_artifact(path, table="model"))


def model_from_artifact(art: Artifact) -> Recommender:
    """The model held by a loaded, verified artifact of table "model" (see :func:`load_model`)."""
    try:
        cls = get_model(art.name)
        model = cls(from_dict(cls.config_class, art.config))
        model.user_vocab = Vocab.from_json(art.extra["user_vocab"])
        model.item_vocab = Vocab.from_json(art.extra["item_vocab"])
        tensors = dict(art.tensors)
        indptr = tensors.pop("_seen.indptr").numpy()
        indices = tensors.pop("_seen.indices").numpy()
        model.seen_ = sp.csr_array((np.ones(len(indices), np.float32), indices, indptr),
                                   shape=(len(model.user_vocab) + 1, len(model.item_vocab) + 1))
        recency = tensors.pop("_seen.recency", None)
        model.seen_recency_ = recency.numpy() if recency is not None else None
        model.popularity_ = tensors.pop("_popularity").numpy()
        model._load_state(tensors)
    except Exception as exc:  # unknown name, bad config, missing or misshapen tensors: one line, never a traceback
        raise DataError(f"cannot load model from {art.path}: {type(exc).__name__}: {exc}") from None
    return model


def _recency_order(train: Interactions) -> np.ndarray:
    """Each (user, item) pair once, at the position of its last occurrence: rows are sorted by (user, time), so the
    result holds each user's seen items (the same set as ``to_csr``'s row) oldest first -> item ids (nnz,) int64."""
    key = train.user.astype(np.int64) * (train.n_items + 1) + train.item.astype(np.int64)
    _, first_from_end = np.unique(key[::-1], return_index=True)
    return train.item[np.sort(len(key) - 1 - first_from_end)].astype(np.int64)


def extend_items(model: Recommender, new_ids: list[Any]) -> np.ndarray:
    """Append new external item ids to a fitted model's item vocabulary (dense ids n_items+1..), with no history and
    zero popularity: the base-class half of ``ItemAdder.add_items``. Returns their dense ids; a known id is a
    ConfigError."""
    model._check_fitted()
    clash = [i for i in new_ids if i in model.item_vocab]
    if clash:
        raise ConfigError(f"item(s) {clash[:5]} are already known to the model")
    n_old = len(model.item_vocab)
    model.item_vocab = Vocab([*model.item_vocab.ids, *new_ids], name=model.item_vocab.name)
    seen = sp.csr_array(model.seen_)
    model.seen_ = sp.csr_array((seen.data, seen.indices, seen.indptr),
                               shape=(seen.shape[0], len(model.item_vocab) + 1))
    model.popularity_ = np.concatenate([model.popularity_, np.zeros(len(new_ids), model.popularity_.dtype)])
    return np.arange(n_old + 1, len(model.item_vocab) + 1, dtype=np.int64)


def history_scores(model: Recommender, histories: Histories, times: np.ndarray | None = None) -> torch.Tensor:
    """Scores of ad-hoc histories (B, n_items+1) through the capability the model declares: ``score_timed_histories``
    when it is a TimedHistoryScorer and ``times`` (N,) are given, else ``score_histories``. ConfigError for a model
    that is not a HistoryScorer (it only knows its training users)."""
    if times is not None and isinstance(model, TimedHistoryScorer):
        return model.score_timed_histories(histories, times)
    if isinstance(model, HistoryScorer):
        return model.score_histories(histories)
    raise ConfigError(f"model {model.name!r} cannot score ad-hoc histories (it only knows its training users)")


def check_bound_side(side: Any, train: Interactions, model: str, what: str, describes: str) -> None:
    """The item side information an ``ItemSideConsumer`` was given (``side``, an ``ItemSide`` or None) must be bound
    before ``fit`` and describe exactly the training log's items; ConfigError naming ``model`` and ``what`` it needs
    (``describes``: e.g. "item vectors describe", the subject and verb of the mismatch message)."""
    if side is None:
        raise ConfigError(f"{model} needs {what} bound before fit: recforge.text.bind_items(model, catalog, train)")
    if side.item_ids != list(train.item_vocab.ids):
        raise ConfigError(f"the bound {describes} {len(side.item_ids)} items, not the {train.n_items} items of "
                          "the training log")


class KeepsTrainSequences(Recommender):
    """Mixin for models that replay users' training sequences (dense items in time order, repeats kept) at scoring
    time: kept at fit, saved under ``train_items`` / ``train_offsets``."""

    train_items_: np.ndarray
    train_offsets_: np.ndarray

    def _keep_sequences(self, train: Interactions) -> None:
        items, offsets = train.sequences()
        self.train_items_, self.train_offsets_ = np.asarray(items), np.asarray(offsets)

    def _train_jagged(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense users (U,) -> their training sequences as a jagged array (items (N,), offsets (U+1,))."""
        return gather_jagged(self.train_items_, self.train_offsets_, np.asarray(users, dtype=np.int64))

    def _train_histories(self, users: np.ndarray) -> list[np.ndarray]:
        """Dense users (U,) -> their training sequences, one array each."""
        return jagged_rows(*self._train_jagged(users))

    def _sequences_state(self) -> dict[str, torch.Tensor]:
        return {"train_items": torch.tensor(self.train_items_), "train_offsets": torch.tensor(self.train_offsets_)}

    def _load_sequences(self, state: dict[str, torch.Tensor]) -> None:
        self.train_items_, self.train_offsets_ = state["train_items"].numpy(), state["train_offsets"].numpy()

    def _load_inner(self, inner: Recommender, state: dict[str, torch.Tensor], prefix: str) -> None:
        """Restore a model this one wraps from the ``prefix``-keyed part of ``state``; it shares this model's
        vocabularies and seen-item tables."""
        inner.user_vocab, inner.item_vocab = self.user_vocab, self.item_vocab
        inner.seen_, inner.popularity_, inner.seen_recency_ = self.seen_, self.popularity_, self.seen_recency_
        inner._load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


class HistoryScoring(Recommender):
    """A recommender that scores histories it was not trained on (a ``HistoryScorer``): item-based, fold-in and
    sequential models. Subclasses implement ``_score_histories(items, offsets)``; this class checks the ids."""

    @torch.inference_mode()
    def score_histories(self, histories: Histories) -> torch.Tensor:
        """B time-ordered histories (a list of dense item-id arrays, or the jagged pair (items (N,), offsets (B+1,)))
        -> float32 scores (B, n_items+1); column 0 is -inf."""
        items, offsets = self._jagged(histories)
        return self._finish(self._score_histories(items, offsets))

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """Jagged histories (items (N,), offsets (B+1,)) -> (B, n_items+1)."""
        raise NotImplementedError

    def _jagged(self, histories: Histories) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        items, offsets = as_jagged(histories)
        if items.size and (items.min() < 1 or items.max() > self.n_items):
            raise UnknownIdError(f"dense item ids must be in 1..{self.n_items}")
        return items, offsets

    @staticmethod
    def _finish(scores: torch.Tensor) -> torch.Tensor:
        out = scores.float()
        out[:, 0] = -torch.inf
        return out


class TimedHistoryScoring(HistoryScoring):
    """A history scorer that also uses each event's timestamp (a ``TimedHistoryScorer``, e.g. HSTU's time-gap bias).
    Subclasses implement ``_score_histories(items, offsets, times=None)``."""

    @torch.inference_mode()
    def score_timed_histories(self, histories: Histories, times: np.ndarray) -> torch.Tensor:
        """B histories plus ``times`` (N,) aligned with the jagged items -> float32 scores (B, n_items+1)."""
        items, offsets = self._jagged(histories)
        times = np.asarray(times, dtype=np.int64)
        if times.shape != items.shape:
            raise ConfigError(f"times must have one value per history item ({len(items)}), got shape {times.shape}")
        return self._finish(self._score_histories(items, offsets, times=times))


class TrainerFit(Recommender):
    """A recommender trained by :class:`~recforge.train.trainer.Trainer`: ``fit(checkpoint_dir=...)`` receives a
    checkpoint every epoch plus the training curves, ``fit(resume=True)`` continues from that checkpoint, and
    ``callbacks`` are called as ``cb(epoch, history_row)`` after each epoch (a callback may raise to interrupt).
    The config has a ``train: TrainConfig`` field; ``_fit`` builds the module and data and calls :meth:`_train`."""

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.callbacks: list[Callable[[int, dict[str, float]], None]] = []
        self.train_result_: TrainResult | None = None
        self._checkpoint_dir: Path | None = None
        self._resume = False

    def fit(self, train: Interactions, valid: Interactions | None = None, *,
            checkpoint_dir: str | Path | None = None, resume: bool = False) -> Self:
        self._checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self._resume = resume
        return super().fit(train, valid, checkpoint_dir=checkpoint_dir, resume=resume)

    def _train(self, module: nn.Module, data: BatchSource, evaluate_fn: Callable[[], float] | None) -> TrainResult:
        """Run the Trainer with this fit's checkpoint folder, resume flag and callbacks; the module ends on CPU."""
        self.train_result_ = Trainer(self.config.train, self.callbacks).fit(
            module, data, evaluate_fn, self._checkpoint_dir, self._resume)
        module.cpu().eval()
        return self.train_result_
