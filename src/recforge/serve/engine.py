"""ModelHandle: one loaded model plus what serving derives from it (id lookup, retriever, item-item similarity).

A handle is immutable once built; the app swaps handles atomically on reload, so a request that picked up the old
handle finishes on it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.artifacts import META_FILE, load_artifact
from recforge.data.vocab import Vocab, id_variants
from recforge.errors import ConfigError, DataError, UnknownIdError
from recforge.index import Retriever, build_retriever
from recforge.models.base import Recommender, history_scores, model_from_artifact
from recforge.models.rank import mask_columns, top_k, top_k_candidates
from recforge.protocols import Embedder, HistoryScorer, TopK
from recforge.serve.settings import ServeSettings

log = logging.getLogger(__name__)

#: where a run folder keeps its artifact
RUN_ARTIFACT_DIR = "artifact"


def resolve_artifact_dir(path: str | Path) -> Path:
    """A run folder (holding ``artifact/meta.json``) or an artifact directory (holding ``meta.json``) -> the
    artifact directory. DataError (one line) for anything else."""
    path = Path(path)
    if (path / RUN_ARTIFACT_DIR / META_FILE).is_file():
        return path / RUN_ARTIFACT_DIR
    if (path / META_FILE).is_file():
        return path
    if not path.exists():
        raise DataError(f"artifact not found: {path}")
    raise DataError(f"not a run folder or artifact directory (no {RUN_ARTIFACT_DIR}/{META_FILE} or {META_FILE}): "
                    f"{path}")


def load_served_model(path: str | Path) -> tuple[Recommender, str]:
    """Load a model for serving from a run folder or an artifact directory -> (model, version), where the version
    is the artifact's (``name-<first 12 hex digits of the weights' sha256>``). Any failure is one DataError line.

    The weights are memory-mapped (``load_artifact(mmap=True)``): the worker processes of one server, and any other
    process serving the same file, share one copy of them in the page cache. Tensors a model keeps as loaded (EASE's
    item-item matrix, ALS and BPR factors, the seen-item matrix) stay shared; a model that copies them into
    parameters of its own (the sequential nets' ``load_state_dict``) holds a private copy of those. Every page is
    touched once here, so requests do not pay the page faults."""
    art = load_artifact(resolve_artifact_dir(path), table="model", mmap=True)
    for tensor in art.tensors.values():
        _fault_in(tensor)
    return model_from_artifact(art), art.version


def _fault_in(tensor: torch.Tensor) -> None:
    """Read one byte of every 4 KiB page of ``tensor`` (maps the shared page-cache pages into this process)."""
    if tensor.numel():
        int(tensor.reshape(-1).view(torch.uint8)[::4096].sum())


def lookup(vocab: Vocab, external: Any) -> int:
    """External id -> dense id (0 when unknown), by the id rule of :mod:`recforge.data.vocab`: JSON "42" also matches
    an integer id 42 and vice versa; "042" or "٤٢" match only themselves."""
    canonical = vocab.canonical(external)
    return 0 if canonical is None else int(vocab.encode([canonical])[0])


def lookups(vocab: Vocab, ids: list[Any]) -> np.ndarray:
    """External ids -> dense ids int64 (n,), 0 where unknown."""
    return np.fromiter((lookup(vocab, x) for x in ids), dtype=np.int64, count=len(ids))


def encode(vocab: Vocab, ids: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """External ids -> (known dense ids int64 (n,), unknown external ids)."""
    dense = lookups(vocab, ids)
    return dense[dense > 0], [x for x, d in zip(ids, dense) if d == 0]


def stored_id(vocab: Vocab, external: Any) -> Any:
    """The form an id is stored under in the feedback store: the vocabulary's own form when it knows the id, else
    the integer form when the id has one ("7" -> 7), else the string. So "7" and 7 are one user even when the model
    has never seen them, and "07" stays another."""
    known = vocab.canonical(external)
    if known is not None:
        return known
    return next((form for form in id_variants(external) if isinstance(form, int)), external)


class ModelHandle:
    """A model ready to serve. Built once (possibly slowly: index build, warm-up) before it is swapped in."""

    def __init__(self, model: Recommender, version: str, source: str, settings: ServeSettings):
        model._check_fitted()
        self.model, self.version, self.source, self.settings = model, version, source, settings
        self.loaded_at = time.time()
        self.n_items = model.n_items
        self.retriever: Retriever | None = None
        self.item_unit: torch.Tensor | None = None
        if isinstance(model, Embedder):
            vectors = model.item_embeddings().detach().float()
            if vectors.shape[0] != self.n_items + 1:
                raise DataError(f"item_embeddings() has {vectors.shape[0]} rows, expected n_items+1={self.n_items + 1}")
            if settings.index != "exact" and (settings.index != "auto" or self.n_items >= settings.ann_threshold):
                # Recall is measured on real queries: the vectors of (up to) 200 training users.
                rng = np.random.default_rng(0)
                users = rng.choice(np.arange(1, model.n_users + 1), size=min(200, model.n_users), replace=False)
                queries = model.user_embeddings(users).detach().float()
                self.retriever = build_retriever(
                    vectors, settings.index, ann_threshold=settings.ann_threshold, queries=queries, **settings.index_params
                )
            self.item_unit = torch.nn.functional.normalize(vectors, dim=1)
        else:
            # Co-occurrence fallback for /similar: item rows of the binary training matrix (items x users).
            self.item_users = model.seen_.T.tocsr().astype(np.float32)
            self.item_norm = np.sqrt(np.asarray(self.item_users.sum(axis=1)).ravel()).astype(np.float32)
        self._warm_up()

    def _warm_up(self) -> None:
        """Score once so the first real request does not pay for lazy initialisation; fails early on broken models.

        (The weights' pages are already mapped: :func:`load_served_model` touches each one.)"""
        try:
            if self.model.n_users:
                self.model.recommend([self.model.user_vocab.ids[0]], k=1)
        except Exception as exc:
            raise DataError(f"model {self.version} fails to score: {type(exc).__name__}: {exc}") from None

    def info(self) -> dict[str, Any]:
        """What /ready shows: no filesystem path (the version names the artifact)."""
        return {
            "model": self.model.name,
            "version": self.version,
            "n_users": self.model.n_users,
            "n_items": self.n_items,
            "supports_histories": isinstance(self.model, HistoryScorer),
            "index": self.retriever.info if self.retriever is not None else None,
            "loaded_at": self.loaded_at,
        }

    # ------------------------------------------------------------------ recommend
    @torch.inference_mode()
    def recommend_user(
        self, user: Any, k: int, exclude: list[Any], exclude_seen: bool, feedback: list[Any]
    ) -> dict[str, Any]:
        """Top-k for a user id; ``feedback`` holds the user's live feedback item ids in time order (oldest first).

        A known user with live feedback is scored on their history: the training history in time order followed by
        the feedback, the most recent ``max_history`` items of it (the bound applies by recency, never by id)."""
        model = self.model
        k = min(k, self.n_items)
        dense_user = lookup(model.user_vocab, user)
        excl, ignored = encode(model.item_vocab, exclude)
        fb, _ = encode(model.item_vocab, feedback)  # items new since training cannot be scored; they stay in the store
        live = len(fb) > 0 and isinstance(model, HistoryScorer)
        if dense_user == 0 and not live:
            if self.settings.on_unknown == "404":
                raise UnknownIdError(f"unknown user_id {user!r}")
            return self.popular(user, k, excl, ignored)
        seen = model.seen_[[dense_user]].indices.astype(np.int64) if dense_user else np.zeros(0, np.int64)
        if live:
            history = self.recent(np.concatenate([model.history(dense_user), fb]))
            scores = model.score_histories([history])[0]
            source = "history"
        elif self.retriever is not None:
            return self._retrieve(user, dense_user, k, excl, seen if exclude_seen else None, fb, ignored)
        elif isinstance(model, TopK):  # the model ranks itself (beam search, multi-vector retrieval)
            banned = np.unique(np.concatenate([excl, seen, fb] if exclude_seen else [excl]))
            items, vals = model.topk(np.array([dense_user]), k, exclude=[banned])
            keep = items[0] > 0
            return self._result(user, model.item_vocab.decode(items[0][keep]), vals[0][keep].tolist(), "model",
                                False, ignored)
        else:
            scores = model.score(np.array([dense_user]))[0]
            source = "model"
        mask = [excl]
        if exclude_seen:
            mask += [seen, fb]
        mask_columns(scores[None], np.concatenate(mask))
        return self._top(user, scores, k, source, ignored)

    def recent(self, history: np.ndarray) -> np.ndarray:
        """The last ``max_history`` items of a time-ordered history (n,) -> (<= max_history,)."""
        return history[max(0, len(history) - self.settings.max_history):]

    def popular(self, user: Any, k: int, excl: np.ndarray, ignored: list) -> dict[str, Any]:
        """The unknown-user fallback: training popularity, ``fallback: true``, ``source: "popular"``."""
        scores = torch.from_numpy(self.model.popularity_).float().clone()  # training counts (n_items+1,); a copy
        scores[0] = -torch.inf
        mask_columns(scores[None], excl)
        return self._top(user, scores, min(k, self.n_items), "popular", ignored, fallback=True)

    @torch.inference_mode()
    def recommend_history(self, history: list[Any], k: int, exclude: list[Any], exclude_seen: bool,
                          times: list[int] | None = None) -> dict[str, Any]:
        """Top-k for an anonymous session (oldest item first); unknown items are ignored and listed. ``times`` (one
        per history item) reach models that use timestamps. An empty or all-unknown history gets the unknown-user
        fallback (popularity, ``fallback: true``), as the CLI's ``recommend --history`` does."""
        dense = lookups(self.model.item_vocab, history)
        known = dense > 0
        ignored = [x for x, d in zip(history, dense) if d == 0]
        excl, ignored_excl = encode(self.model.item_vocab, exclude)
        if not known.any():
            return self.popular(None, k, excl, ignored + ignored_excl)
        if not isinstance(self.model, HistoryScorer):
            raise ConfigError(f"model {self.model.name!r} cannot score ad-hoc histories; send user_id instead")
        dense = self.recent(dense[known])
        t = self.recent(np.asarray(times, dtype=np.int64)[known]) if times is not None else None
        scores = history_scores(self.model, [dense], t)[0]
        mask_columns(scores[None], np.concatenate([excl, dense if exclude_seen else excl[:0]]))
        return self._top(None, scores, min(k, self.n_items), "history", ignored + ignored_excl)

    def _retrieve(
        self, user: Any, dense_user: int, k: int, excl: np.ndarray, seen: np.ndarray | None, fb: np.ndarray, ignored: list
    ) -> dict[str, Any]:
        """Top-k through the retriever: ask for extra candidates to survive the exclusions, then rank the candidates
        (``models.rank.top_k_candidates``: same masking and tie rule as a full row)."""
        banned = np.unique(np.concatenate([excl, seen, fb] if seen is not None else [excl]))
        query = self.model.user_embeddings(np.array([dense_user]))
        scores, ids = self.retriever.search(query, min(k + len(banned), self.n_items))
        items, vals = top_k_candidates(ids, scores, k, banned=[banned]).lists()[0]
        return self._result(user, self.model.item_vocab.decode(items), vals.tolist(), "model", False, ignored)

    def _top(
        self, user: Any, scores: torch.Tensor, k: int, source: str, ignored: list, fallback: bool = False
    ) -> dict[str, Any]:
        """Masked scores (n_items+1,) -> the response with the top ``k`` (``models.rank.top_k``; masked items left out)."""
        items, vals = top_k(scores[None], k).lists()[0]
        return self._result(user, self.model.item_vocab.decode(items), vals.tolist(), source, fallback, ignored)

    def _result(self, user: Any, items: list, scores: list, source: str, fallback: bool, ignored: list) -> dict[str, Any]:
        return {
            "user_id": user,
            "items": [{"item": i, "score": float(s)} for i, s in zip(items, scores)],
            "source": source,
            "fallback": fallback,
            "ignored": ignored,
            "model_version": self.version,
        }

    # ------------------------------------------------------------------ similar
    @torch.inference_mode()
    def similar(self, item: Any, k: int) -> dict[str, Any]:
        """Items most similar to ``item``: cosine of item vectors, or of co-occurrence columns when there are none."""
        dense = lookup(self.model.item_vocab, item)
        if dense == 0:
            raise UnknownIdError(f"unknown item_id {item!r}")
        k = min(k, self.n_items - 1)
        if self.item_unit is not None:
            if self.retriever is not None:  # large catalog: inner-product neighbours through the index
                scores, ids = self.retriever.search(self.item_unit[[dense]], k + 1)
                sims = torch.full((self.n_items + 1,), -torch.inf)
                sims[ids[0]] = scores[0]
            else:
                sims = self.item_unit @ self.item_unit[dense]
            method = "embedding"
        else:
            co = (self.item_users @ self.item_users[[dense]].T).toarray().ravel()
            denom = self.item_norm * self.item_norm[dense]
            sims = torch.from_numpy(np.divide(co, denom, out=np.zeros_like(co), where=denom > 0))
            sims[sims <= 0] = -torch.inf  # never co-occurred: not "similar"
            method = "cooccurrence"
        sims[0] = -torch.inf
        sims[dense] = -torch.inf
        out = self._top(None, sims, max(k, 1), "model", [])
        return {"item_id": item, "items": out["items"], "method": method, "model_version": self.version}
