"""ModelHandle: one loaded model plus what serving derives from it (id lookup, retriever, item-item similarity).

A handle is immutable once built; the app swaps handles atomically on reload, so a request that picked up the old
handle finishes on it. :func:`build_handle` loads a model, hands an LLM recommender its language model (through the
caller's ``prepare``), applies the catalogue additions kept in the store (for an ``ItemAdder``) and builds the handle.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from recforge.artifacts import META_FILE, load_artifact
from recforge.data.catalog import ItemCatalog
from recforge.data.vocab import Vocab, id_variants
from recforge.errors import ConfigError, DataError, RecforgeError, UnknownIdError
from recforge.index import Retriever, build_retriever
from recforge.models.base import Recommender, history_scores, load_model, model_from_artifact
from recforge.models.rank import mask_columns, top_k, top_k_candidates
from recforge.protocols import Embedder, HistoryScorer, ItemAdder, ItemSideConsumer, LLMUser, TopK
from recforge.serve.settings import ServeSettings
from recforge.text import add_catalog_items
from recforge.text.templates import split_year

log = logging.getLogger(__name__)
T = TypeVar("T")
#: ``prepare(model, source)``: called on every model loaded from a path before it serves (the command line hands an
#: LLM recommender its language model and the run's item texts there)
Prepare = Callable[[Recommender, Path], None]

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


# ------------------------------------------------------------------------------------------------ new catalogue items
def add_items_refusal(model: Recommender) -> str | None:
    """Why ``/admin/items`` cannot add items to ``model`` (None when it can): it must be an ``ItemAdder`` that reads
    item text (``ItemSideConsumer`` with an embedder) and no attribute matrix (whose columns the server cannot
    rebuild from genre names without the training catalogue)."""
    if not (isinstance(model, ItemAdder) and isinstance(model, ItemSideConsumer)):
        return (f"model {model.name!r} cannot add items after training (it is not an ItemAdder); retrain it with "
                "the new items")
    spec = model.item_side_spec()
    if spec.embedder is None or spec.attributes:
        return (f"model {model.name!r} reads the catalogue's attribute matrix; only text item towers take new items "
                "over HTTP (retrain, or use a text tower)")
    return None


def new_items_catalog(records: list[tuple[Any, dict[str, Any]]]) -> ItemCatalog:
    """(external id, text fields ``title`` / ``genres`` / ``tags`` / ``year``) records -> an item catalogue in the
    MovieLens shape (genres as the "genre" attribute group, tags as the item text joined by ", ", the year as a
    trailing "(year)" of the title), which the model's own template renders."""
    titles, genres, tags = [], [], []
    for _, fields in records:
        title = (fields.get("title") or "").strip() or None
        year = fields.get("year")
        if title is not None and year is not None and split_year(title)[1] is None:
            title = f"{title} ({year})"
        titles.append(title)
        genres.append([g.strip() for g in fields.get("genres") or () if g.strip()])
        tags.append(", ".join(t.strip() for t in fields.get("tags") or () if t.strip()) or None)
    ids = [item for item, _ in records]
    catalog = ItemCatalog.from_records(ids, titles, genres, text=tags, group="genre")
    return dataclasses.replace(catalog, item_vocab=Vocab(ids, name="item"))  # ids keep their exact JSON type


def apply_added_items(model: Recommender, rows: list[tuple[int, Any, str]]) -> list[Any]:
    """Add the stored catalogue additions ``rows`` ((row id, external id, JSON fields), in row order) that ``model``
    does not know yet, embedded as the model was trained (its embedder and template). Returns the added ids."""
    records = [(item, json.loads(record)) for _, item, record in rows]
    if not records:
        return []
    return add_catalog_items(model, new_items_catalog(records), model.item_vocab, model.item_side_spec())


def uses_llm(model: Recommender) -> bool:
    """True for an LLM recommender holding a toolkit with a client: it calls a language model while scoring."""
    return isinstance(model, LLMUser) and model.toolkit is not None and model.toolkit.client is not None


def without_llm(model: Recommender, source: str | Path | None) -> Recommender:
    """The same fitted model with no language model (its fallback: an LLM model without a toolkit ranks as its base
    model, or with its rule planner): loaded again from ``source`` (memory-mapped, so the weights are shared), or,
    for a model given as an object, through a saved copy."""
    if source is not None:
        return load_served_model(source)[0]
    with tempfile.TemporaryDirectory(prefix="recforge-serve-") as tmp:
        return load_model(model.save(Path(tmp) / "model"))


def build_handle(source: str | Path | Recommender, settings: ServeSettings, prepare: Prepare | None = None,
                 added: list[tuple[int, Any, str]] = (), strict: bool = False) -> ModelHandle:
    """Load ``source`` (a run folder, an artifact directory, or a fitted model object, which is never modified),
    ``prepare`` it, apply the catalogue additions ``added`` when the model can take them, and build its handle.

    Additions that cannot be applied raise when ``strict``, else they are logged and left out (the model serves
    without them); a model that cannot load is a DataError."""
    model, version, where = _load(source, prepare)
    twin = without_llm(model, None if isinstance(source, Recommender) else source) if uses_llm(model) else None
    n_added, upto = 0, (added[-1][0] if added else 0)
    if added and add_items_refusal(model) is None:
        target = copy.deepcopy(model) if model is source else model
        try:
            n_added = len(apply_added_items(target, list(added)))
            model = target
        except (RecforgeError, ValueError, OSError) as exc:
            if strict:
                raise
            log.error("the %d stored catalogue additions could not be added to %s: %s: %s", len(added), version,
                      type(exc).__name__, exc)
            if target is model:  # loaded here and possibly half-extended: load it again
                model, version, where = _load(source, prepare)
        if n_added:
            version = f"{version}+items{upto}"
    return ModelHandle(model, version, where, settings, added=n_added, upto=upto, twin=twin)


def _load(source: str | Path | Recommender, prepare: Prepare | None) -> tuple[Recommender, str, str]:
    """(model, version, where it came from) for a path (loaded, then prepared) or a model object (as it is)."""
    if isinstance(source, Recommender):
        return source, f"{source.name}-in-memory", "<in-memory>"
    model, version = load_served_model(source)
    if prepare is not None:
        prepare(model, Path(source))
    return model, version, str(Path(source).resolve())


class ModelHandle:
    """A model ready to serve. Built once (possibly slowly: index build, warm-up) before it is swapped in.

    ``added``: catalogue additions this model serves; ``upto``: the store row of the last addition considered;
    ``twin``: for an LLM recommender, the same model without its language model, which answers when the language
    model path raises (counted in ``llm_exceptions``)."""

    def __init__(self, model: Recommender, version: str, source: str, settings: ServeSettings, *, added: int = 0,
                 upto: int = 0, twin: Recommender | None = None):
        model._check_fitted()
        self.model, self.version, self.source, self.settings = model, version, source, settings
        self.added, self.upto, self.twin = added, upto, twin
        self.add_refusal = add_items_refusal(model)
        self.llm_exceptions = 0
        self._llm_lock = threading.Lock()
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
        try:  # an LLM recommender warms up its base (no language-model call at start-up)
            model = self.twin if self.twin is not None else self.model
            if model.n_users:
                model.recommend([model.user_vocab.ids[0]], k=1)
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
            "added_items": self.added,
            "can_add_items": self.add_refusal is None,
            "llm": {"backend": self.model.toolkit.client.name} if self.twin is not None else None,
        }

    # ------------------------------------------------------------------ language model
    def _guarded(self, score: Callable[[Recommender], T]) -> T:
        """``score(model)``; for an LLM recommender, an exception on the language-model path is logged, counted and
        answered by ``score(twin)`` (the model without its language model: the base model's ranking)."""
        if self.twin is None:
            return score(self.model)
        try:
            return score(self.model)
        except Exception as exc:
            log.warning("language model path failed (%s: %s); answering with the base ranking", type(exc).__name__, exc)
            with self._llm_lock:
                self.llm_exceptions += 1
            return score(self.twin)

    def llm_counts(self) -> dict[str, float]:
        """Cumulative counters of the language model this handle calls ({} for other models): requests, errors
        (failed after the client's retries and timeouts), retries, latency seconds, and fallbacks to the base
        ranking by reason: ``backend`` (an answer failed: the base order was kept) and ``exception``."""
        if self.twin is None:
            return {}
        report = self.model.toolkit.report()
        usage = report.get("usage", {})
        backend = report.get("counts", {}).get("errors", 0) + report.get("ranking", {}).get("errors", 0)
        return {"requests": usage.get("requests", 0), "errors": usage.get("errors", 0),
                "retries": usage.get("retries", 0), "latency_seconds": usage.get("latency_s", 0.0),
                "fallback_backend": backend, "fallback_exception": self.llm_exceptions}

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
            scores = self._guarded(lambda m: m.score_histories([history]))[0]
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
            scores = self._guarded(lambda m: m.score(np.array([dense_user])))[0]
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
        scores = self._guarded(lambda m: history_scores(m, [dense], t))[0]
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
