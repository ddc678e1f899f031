"""create_app: a FastAPI service around one model. All state lives on ``app.state`` (no module globals).

Routes: GET /health, GET /ready, POST /recommend, POST /similar, POST /feedback, GET /metrics,
POST /admin/reload and POST /admin/items (bearer token). OpenAPI docs at /docs and /redoc, their assets served by
the app (offline).

Catalogue additions (``/admin/items``) are kept in the feedback store, so every worker process, every replica
sharing a PostgreSQL store and a restarted server apply the same items in the same order; a worker notices
additions made by another one before its next request that involves the model.

No client input answers 5xx: bodies are parsed as strict JSON before FastAPI sees them (NaN, Infinity, numbers that
overflow to infinity, lone surrogates, invalid UTF-8 and deep nesting are a 422 whose body is valid JSON), every number
in the schemas is bounded, and every status a route can answer is in the OpenAPI schema.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from recforge.errors import ConfigError, DataError, RecforgeError, UnknownIdError
from recforge.models.base import Recommender
from recforge.serve.engine import ModelHandle, Prepare, build_handle, lookup, stored_id
from recforge.serve.metrics import Metrics
from recforge.serve.schemas import (
    AddItemsRequest,
    AddItemsResponse,
    FeedbackRequest,
    FeedbackResponse,
    ModelInfo,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    SimilarRequest,
    SimilarResponse,
    error_responses,
)
from recforge.serve.settings import ServeSettings
from recforge.serve.store import (
    FeedbackStore,
    FeedbackStoreError,
    ItemConflictError,
    PostgresFeedbackStore,
    open_feedback_store,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Swagger UI and ReDoc assets, shipped by the fastapi-offline package (part of the serve extra)
DOCS_ASSETS = files("fastapi_offline") / "static"
#: the host check's answer is Starlette's plain-text 400
HOST_400 = {400: {"description": "invalid Host header (not in --allowed-hosts)",
                  "content": {"text/plain": {"schema": {"type": "string"}}}}}


class ServeState:
    """Everything one app instance owns. ``handle`` is replaced, never mutated, so reads need no lock.

    ``source`` is what the handle was built from (a path, or the model object given to ``create_app``), which
    catalogue additions are applied to again; ``prepare`` is called on every model loaded from a path."""

    def __init__(self, handle: ModelHandle, source: str | Path | Recommender, prepare: Prepare | None,
                 store: FeedbackStore | PostgresFeedbackStore, settings: ServeSettings, metrics: Metrics):
        self.handle, self.store, self.settings, self.metrics = handle, store, settings, metrics
        self.source, self.prepare = source, prepare
        self.reload_lock = threading.RLock()  # re-entrant: an addition syncs first, under the same lock
        self.limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the event loop
        self.llm_before: dict[str, float] = {}  # language-model counters of the handles swapped out
        self.sync_failed_at = 0
        self.publish_model()

    def publish_model(self) -> None:
        h = self.handle
        self.metrics.model = {"model": h.model.name, "version": h.version}

    def swap(self, new: ModelHandle, source: str | Path | Recommender) -> None:
        """Serve ``new`` (built from ``source``) from now on; the old handle's language-model counters are kept."""
        for key, value in self.handle.llm_counts().items():
            self.llm_before[key] = self.llm_before.get(key, 0) + value
        self.handle, self.source = new, source  # a single reference assignment: atomic for concurrent readers
        self.publish_model()

    def llm_counts(self) -> dict[str, float]:
        """Language-model counters over every handle this process served ({} when none called one)."""
        now = self.handle.llm_counts()
        if not now and not self.llm_before:
            return {}
        keys = set(now) | set(self.llm_before)
        return {k: now.get(k, 0) + self.llm_before.get(k, 0) for k in keys}

    def synced(self) -> ModelHandle:
        """The handle to answer with, after applying catalogue additions another worker (or replica) stored since
        this handle was built. Models that cannot add items skip the check (no store read)."""
        h = self.handle
        if h.add_refusal is not None:
            return h
        try:
            last = self.store.last_added()
        except FeedbackStoreError:  # the store is down: answer with the items this process has (logged by the store)
            return h
        if last <= max(h.upto, self.sync_failed_at):
            return h
        with self.reload_lock:
            if last > max(self.handle.upto, self.sync_failed_at):
                try:
                    self.swap(build_handle(self.source, self.settings, self.prepare, self.store.added_items()),
                              self.source)
                    log.info("catalogue additions applied: now serving %s", self.handle.version)
                except FeedbackStoreError:  # transient: the next request tries again (logged by the store)
                    pass
                except (RecforgeError, OSError, ValueError) as exc:  # the source broke: retried after a new addition
                    self.sync_failed_at = last
                    log.error("could not apply the stored catalogue additions, still serving %s: %s: %s",
                              self.handle.version, type(exc).__name__, exc)
        return self.handle

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on one of the ``scoring_threads`` worker threads, so the event loop stays free."""
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.settings.scoring_threads)
        return await anyio.to_thread.run_sync(partial(_at_scoring_priority, fn, *args), limiter=self.limiter)


#: niceness added to the threads that score, once per thread: the event loop thread (request parsing, /health) keeps
#: the default priority, so under full load the kernel runs it ahead of scoring instead of queueing it behind them
SCORING_NICE = 5
_thread_state = threading.local()


def _at_scoring_priority(fn: Callable[..., T], *args: Any) -> T:
    if not getattr(_thread_state, "lowered", False):
        _thread_state.lowered = True
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + SCORING_NICE)
        except OSError:  # a sandbox may refuse; the priority is an optimisation, not a requirement
            log.debug("could not lower the scoring thread's priority")
    return fn(*args)


def create_app(artifact: str | Path | Recommender, settings: ServeSettings | None = None, *,
               prepare: Prepare | None = None) -> FastAPI:
    """Build the service for a run folder (its ``artifact/``), an artifact directory or a fitted model object.

    ``prepare(model, path)`` is called on every model loaded from a path, at start-up and on reload, before it
    serves: ``recforge serve`` hands an LLM recommender its language model there (the backend of its run config and
    the run's item texts). A model object is served as it is (``recforge.experiments.runs.load_run(path).model``
    already holds its language model). Catalogue additions kept in the feedback store are applied to a model that
    can take them (a copy, for a model object). Raises :class:`DataError` (one line) when the artifact is missing
    or corrupt, before any socket is opened.
    """
    settings = settings or ServeSettings()
    handle = build_handle(artifact, settings, prepare)  # checks the artifact before the store is created
    store = open_feedback_store(settings.feedback_db, sync=settings.sync)
    if handle.add_refusal is None:
        added = store.added_items()
        if added:
            handle = build_handle(artifact, settings, prepare, added)
    state = ServeState(handle, artifact, prepare, store, settings, Metrics())
    log.info("serving %s from %s", handle.version, handle.source)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.store.close()

    app = FastAPI(
        title="recforge",
        summary="Recommendations, similar items and live feedback for one trained recforge model.",
        version=handle.version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.recforge = state
    _add_error_handlers(app)
    _add_docs(app)
    _add_routes(app, state)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(_Guard, state=state, known_routes={r.path for r in app.routes})  # outermost
    return app


def _add_error_handlers(app: FastAPI) -> None:
    status_of = {UnknownIdError: 404, ConfigError: 422, DataError: 422, ItemConflictError: 409,
                 FeedbackStoreError: 503}

    @app.exception_handler(RecforgeError)
    async def _recforge_error(request: Request, exc: RecforgeError) -> JSONResponse:
        code = next((c for t, c in status_of.items() if isinstance(exc, t)), 500)
        if code == 500:
            log.error("unexpected %s: %s", type(exc).__name__, exc)
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc/msg/type only: the offending input is not echoed back (it can be large, and it is the client's anyway)
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def _add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their JavaScript and CSS served from /docs-assets: no CDN, works offline."""
    app.mount("/docs-assets", StaticFiles(directory=str(DOCS_ASSETS)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - Swagger UI",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)


def _add_routes(app: FastAPI, state: ServeState) -> None:
    bearer = HTTPBearer(auto_error=False)

    def admin(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008 (FastAPI idiom)
        token = state.settings.admin_token
        if token is None:
            raise HTTPException(403, "admin routes are disabled (start the server with an admin token)")
        if cred is None or not hmac.compare_digest(cred.credentials.encode("utf-8", "replace"), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    # /health, /ready and /metrics answer on the event loop; scoring, feedback and reload run on worker threads
    # (state.off_loop, or FastAPI's threadpool for `def` routes), so a slow request never delays /health.
    @app.get("/health", tags=["ops"], responses=HOST_400)
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", response_model=ModelInfo, tags=["ops"], responses=HOST_400)
    async def ready() -> dict[str, Any]:
        """Readiness: a model is loaded (the app cannot exist without one); describes it."""
        return state.handle.info()

    @app.post("/recommend", response_model=RecommendResponse, tags=["recommend"],
              responses={**HOST_400, **error_responses(404, 413, 422, 503)})
    async def recommend(req: RecommendRequest) -> JSONResponse:
        """Top-k items for a user (with their live feedback) or for an anonymous history.

        Unknown users, and histories that are empty or hold only unknown items, get the popularity fallback
        (``fallback: true``, ``source: "popular"``); 404 instead for unknown users when the server runs with
        ``on_unknown="404"``. 422 when the model cannot score ad-hoc histories."""
        out = await state.off_loop(_recommend, state, req)
        if out["fallback"]:
            state.metrics.inc("fallback")
        return JSONResponse(out)

    @app.post("/similar", response_model=SimilarResponse, tags=["recommend"],
              responses={**HOST_400, **error_responses(404, 413, 422)})
    async def similar(req: SimilarRequest) -> JSONResponse:
        """Items similar to an item (item vectors when the model has them, else co-occurrence); 404 for an unknown
        item."""
        return JSONResponse(await state.off_loop(lambda: state.synced().similar(req.item_id, req.k)))

    @app.post("/feedback", response_model=FeedbackResponse, tags=["feedback"],
              responses={**HOST_400, **error_responses(413, 422, 503)})
    def feedback(req: FeedbackRequest) -> dict[str, Any]:
        """Store one event. The response is sent only after the event is committed to the store (503: not stored)."""
        h = state.synced()
        user = stored_id(h.model.user_vocab, req.user_id)
        item = stored_id(h.model.item_vocab, req.item_id)
        row = state.store.add(user, item, req.event, req.timestamp, req.value, h.version)
        state.metrics.inc("feedback_events")
        return {"id": row, "known_item": lookup(h.model.item_vocab, item) > 0}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"], responses=HOST_400)
    async def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(state.metrics.render(state.llm_counts()), media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload", response_model=ModelInfo, tags=["admin"], dependencies=[Depends(admin)],
              responses={**HOST_400, **error_responses(401, 403, 409, 413, 422)})
    def reload(req: ReloadRequest) -> dict[str, Any]:
        """Load a run folder (or the current source again) and swap it in; on any failure the old model keeps
        serving and the answer is 409, the same for every cause (the reason is in the server's log, not in the
        answer, which never names or confirms a path)."""
        path = req.path or state.handle.source
        with state.reload_lock:
            try:
                new = build_handle(path, state.settings, state.prepare)
                if new.add_refusal is None:  # the catalogue additions apply to the new model too
                    added = state.store.added_items()
                    new = build_handle(path, state.settings, state.prepare, added) if added else new
            except (RecforgeError, OSError, ValueError) as exc:
                state.metrics.inc("reloads", "error")
                log.warning("reload of %s failed, keeping %s: %s: %s", path, state.handle.version,
                            type(exc).__name__, exc)
                raise HTTPException(409, f"reload failed, still serving {state.handle.version} (see the server "
                                         "log)") from None
            state.swap(new, path)
            state.metrics.inc("reloads", "ok")
        log.info("reloaded: now serving %s", new.version)
        return new.info()

    @app.post("/admin/items", response_model=AddItemsResponse, tags=["admin"], dependencies=[Depends(admin)],
              responses={**HOST_400, **error_responses(401, 403, 409, 413, 422, 503)})
    def add_items(req: AddItemsRequest) -> dict[str, Any]:
        """Add items to the catalogue without retraining: each item's text fields are rendered with the sentence
        template and embedded with the embedder the model was trained with, and the model scores the new items
        from their text (an ``ItemAdder``: ``text_sasrec``, ``text_knn``); they are recommendable at once. The
        additions are committed to the store before the answer, so every worker, a restart and a reload apply them.
        409 when the model cannot add items or an id is already in the catalogue (nothing is added)."""
        return _add_items(state, req)


def _add_items(state: ServeState, req: AddItemsRequest) -> dict[str, Any]:
    """Apply the new items to a fresh copy of the served model (so nothing is stored for a request that cannot be
    applied), commit them to the store, then serve that copy; rebuilt from the store when another worker's
    additions came in between (every process applies the store's rows in row order)."""
    with state.reload_lock:
        h = state.synced()
        if h.add_refusal is not None:
            raise HTTPException(409, h.add_refusal)
        items = [(stored_id(h.model.item_vocab, it.item_id), it) for it in req.items]
        known = [i for i, _ in items if lookup(h.model.item_vocab, i) > 0]
        if known:
            raise HTTPException(409, f"item_id {known[0]!r} is already in the catalogue ({len(known)} of the "
                                     f"request's items are); nothing was added")
        fields = [(i, json.dumps(it.model_dump(exclude={"item_id"}, exclude_none=True), ensure_ascii=False))
                  for i, it in items]
        before = state.store.added_items()
        pending = [*before, *[(before[-1][0] + 1 + j if before else 1 + j, i, f) for j, (i, f) in enumerate(fields)]]
        try:
            new = build_handle(state.source, state.settings, state.prepare, pending, strict=True)
        except Exception as exc:  # whatever the cause (an embedder's missing extra too): nothing is stored
            log.warning("catalogue addition refused: %s: %s", type(exc).__name__, exc)
            why = f": {exc}" if isinstance(exc, ConfigError) else " (see the server log)"  # config errors name no path
            raise HTTPException(409, f"the items cannot be added to {h.version}{why}") from None
        rows = state.store.add_items(fields)
        stored = state.store.added_items()
        if [r[0] for r in stored] != [*(r[0] for r in before), *rows]:  # another process added items meanwhile
            new = build_handle(state.source, state.settings, state.prepare, stored)
        elif new.upto != rows[-1]:
            new = ModelHandle(new.model, f"{new.version.rsplit('+items', 1)[0]}+items{rows[-1]}", new.source,
                              state.settings, added=new.added, upto=rows[-1], twin=new.twin)
        state.swap(new, state.source)
        state.metrics.inc("items_added", n=len(items))
    log.info("added %d catalogue items: now serving %s", len(items), new.version)
    return {"added": [i for i, _ in items], "n_items": new.n_items, "model_version": new.version}


def _recommend(state: ServeState, req: RecommendRequest) -> dict[str, Any]:
    """The /recommend work (store read and scoring), run off the event loop."""
    h = state.synced()  # one handle for the whole request, even if a reload swaps it meanwhile
    if req.history is not None:
        return h.recommend_history(req.history, req.k, req.exclude, req.exclude_seen, req.times)
    user = stored_id(h.model.user_vocab, req.user_id)
    feedback = state.store.history(user, state.settings.negative_events, state.settings.max_history)
    out = h.recommend_user(user, req.k, req.exclude, req.exclude_seen, feedback)
    out["user_id"] = req.user_id
    return out


def strict_json_error(body: bytes) -> str | None:
    """Why ``body`` is not acceptable strict JSON, or None when it is (or is empty: FastAPI reports a missing body).

    Refused: invalid JSON or UTF-8, ``NaN``/``Infinity``, numbers that overflow to infinity (``1e400``), integers of
    more than 4,300 digits, nesting too deep to parse, and strings or keys holding lone surrogates (``"\\ud800"``)."""
    if not body:
        return None
    try:
        doc = json.loads(body, parse_constant=_non_finite, parse_float=_finite_float)
    except RecursionError:
        return "invalid JSON: nested too deeply"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the hooks' refusals, huge integers
        return f"invalid JSON: {exc}"
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in node):
                return "invalid JSON: a string holds a lone surrogate (not valid Unicode)"
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _non_finite(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows a 64-bit float")
    return value


class _Guard:
    """Pure ASGI middleware: request-size limit (413), strict JSON (422) and per-route request count / latency
    metrics; an error that escapes everything else becomes a JSON 500 (logged), never a plain-text one."""

    def __init__(self, app: Any, state: ServeState, known_routes: set[str]):
        self.app, self.state, self.known = app, state, known_routes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        limit = self.state.settings.max_body_bytes
        status = {"code": 500, "started": False}
        route = scope["path"] if scope["path"] in self.known else "<other>"

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        async def answer(code: int, detail: str) -> None:
            await JSONResponse({"detail": detail}, status_code=code)(scope, receive, send_wrapper)

        try:
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await answer(413, f"request body larger than {limit} bytes")
                return
            # Buffer the body (bounded by the limit) before the app sees it: a chunked upload without
            # Content-Length is cut off here, and the app reads a body that is known to fit.
            body, more = b"", scope["method"] not in ("GET", "HEAD")
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    await answer(413, f"request body larger than {limit} bytes")
                    return
            problem = strict_json_error(body) if scope["method"] == "POST" and route != "<other>" else None
            if problem is not None:
                await answer(422, problem)
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        except Exception:
            log.exception("unhandled error on %s", scope["path"])
            if not status["started"]:
                await answer(500, "internal error")
        finally:
            self.state.metrics.observe(route, scope["method"], status["code"], time.perf_counter() - t0)
