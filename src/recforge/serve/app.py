"""create_app: a FastAPI service around one model. All state lives on ``app.state`` (no module globals).

Routes: GET /health, GET /ready, POST /recommend, POST /similar, POST /feedback, GET /metrics,
POST /admin/reload (bearer token). OpenAPI docs at /docs.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recforge.errors import ConfigError, DataError, RecforgeError, UnknownIdError
from recforge.models.base import Recommender
from recforge.serve.engine import ModelHandle, load_served_model, lookup
from recforge.serve.metrics import Metrics
from recforge.serve.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    ModelInfo,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    SimilarRequest,
    SimilarResponse,
)
from recforge.serve.settings import ServeSettings
from recforge.serve.store import FeedbackStore

log = logging.getLogger(__name__)


class ServeState:
    """Everything one app instance owns. ``handle`` is replaced, never mutated, so reads need no lock."""

    def __init__(self, handle: ModelHandle, store: FeedbackStore, settings: ServeSettings, metrics: Metrics):
        self.handle, self.store, self.settings, self.metrics = handle, store, settings, metrics
        self.reload_lock = threading.Lock()
        self.publish_model()

    def publish_model(self) -> None:
        h = self.handle
        self.metrics.model = {"model": h.model.name, "version": h.version, "source": h.source}


def _build_handle(artifact: str | Path | Recommender, settings: ServeSettings) -> ModelHandle:
    if isinstance(artifact, Recommender):
        return ModelHandle(artifact, f"{artifact.name}-in-memory", "<in-memory>", settings)
    model, version = load_served_model(artifact)
    return ModelHandle(model, version, str(Path(artifact).resolve()), settings)


def create_app(artifact: str | Path | Recommender, settings: ServeSettings | None = None) -> FastAPI:
    """Build the service for a run folder (its ``artifact/``), an artifact directory or a fitted model object.

    Raises :class:`DataError` (one line) when the artifact is missing or corrupt, before any socket is opened.
    """
    settings = settings or ServeSettings()
    handle = _build_handle(artifact, settings)
    store = FeedbackStore(settings.feedback_db, sync=settings.sync)
    state = ServeState(handle, store, settings, Metrics())
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
    )
    app.state.recforge = state
    _add_error_handlers(app, state)
    _add_routes(app, state)
    app.add_middleware(_Guard, state=state, known_routes={r.path for r in app.routes})
    return app


def _add_error_handlers(app: FastAPI, state: ServeState) -> None:
    status_of = {UnknownIdError: 404, ConfigError: 422, DataError: 400}

    @app.exception_handler(RecforgeError)
    async def _recforge_error(request: Request, exc: RecforgeError) -> JSONResponse:
        code = next((c for t, c in status_of.items() if isinstance(exc, t)), 500)
        return JSONResponse({"detail": str(exc)}, status_code=code)


def _add_routes(app: FastAPI, state: ServeState) -> None:
    bearer = HTTPBearer(auto_error=False)

    def admin(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008 (FastAPI idiom)
        token = state.settings.admin_token
        if token is None:
            raise HTTPException(403, "admin routes are disabled (start the server with an admin token)")
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    # Scoring routes are `async def`: they run on the event loop without a thread hop (a request costs well under a
    # millisecond of Python; torch releases the GIL inside kernels anyway). Feedback stays `def` (threadpool)
    # because the SQLite commit waits on fsync. Handlers return JSONResponse directly: the dicts are built to the
    # response models, so FastAPI's second validation pass is skipped (the models still document the API).
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", response_model=ModelInfo, tags=["ops"])
    async def ready() -> dict[str, Any]:
        """Readiness: a model is loaded (the app cannot exist without one); describes it."""
        return state.handle.info()

    @app.post("/recommend", response_model=RecommendResponse, tags=["recommend"])
    async def recommend(req: RecommendRequest) -> JSONResponse:
        """Top-k items for a user (with their live feedback) or for an anonymous history."""
        h = state.handle  # one handle for the whole request, even if a reload swaps it meanwhile
        if req.history is not None:
            return JSONResponse(h.recommend_history(req.history, req.k, req.exclude, req.exclude_seen, req.times))
        user = _canonical(h, req.user_id, user=True)
        feedback = state.store.history(user, state.settings.negative_events, state.settings.max_history)
        out = h.recommend_user(user, req.k, req.exclude, req.exclude_seen, feedback)
        out["user_id"] = req.user_id
        if out["fallback"]:
            state.metrics.inc("fallback")
        return JSONResponse(out)

    @app.post("/similar", response_model=SimilarResponse, tags=["recommend"])
    async def similar(req: SimilarRequest) -> JSONResponse:
        """Items similar to an item (item vectors when the model has them, else co-occurrence)."""
        return JSONResponse(state.handle.similar(req.item_id, req.k))

    @app.post("/feedback", response_model=FeedbackResponse, tags=["feedback"])
    def feedback(req: FeedbackRequest) -> dict[str, Any]:
        """Store one event. The response is sent only after the event is committed to the store."""
        h = state.handle
        item = _canonical(h, req.item_id, user=False)
        row = state.store.add(_canonical(h, req.user_id, user=True), item, req.event, req.timestamp, req.value, h.version)
        state.metrics.inc("feedback_events")
        return {"id": row, "known_item": lookup(h.model.item_vocab, item) > 0}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    async def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload", response_model=ModelInfo, tags=["admin"], dependencies=[Depends(admin)])
    def reload(req: ReloadRequest) -> dict[str, Any]:
        """Load a run folder (or the current source again) and swap it in; on any failure the old model keeps serving."""
        path = req.path or state.handle.source
        with state.reload_lock:
            try:
                new = _build_handle(path, state.settings)
            except RecforgeError as exc:
                state.metrics.inc("reloads", "error")
                log.warning("reload of %s failed, keeping %s: %s", path, state.handle.version, exc)
                raise HTTPException(409, f"reload failed, still serving {state.handle.version}: {exc}") from None
            state.handle = new  # a single reference assignment: atomic for concurrent readers
            state.publish_model()
            state.metrics.inc("reloads", "ok")
        log.info("reloaded: now serving %s", new.version)
        return new.info()


def _canonical(h: ModelHandle, external: Any, user: bool) -> Any:
    """The vocabulary's own form of an id ("42" -> 42 when the vocab holds ints), else the id as sent."""
    vocab = h.model.user_vocab if user else h.model.item_vocab
    dense = lookup(vocab, external)
    return vocab.decode([dense])[0] if dense else external


class _Guard:
    """Pure ASGI middleware: request-size limit (413) and per-route request count / latency metrics."""

    def __init__(self, app: Any, state: ServeState, known_routes: set[str]):
        self.app, self.state, self.known = app, state, known_routes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        limit = self.state.settings.max_body_bytes
        status = {"code": 500}
        route = scope["path"] if scope["path"] in self.known else "<other>"

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and int(length) > limit:
                raise _TooLarge
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
                    raise _TooLarge
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        except _TooLarge:  # raised only before the app runs, so no response has started
            response = JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)
            await response(scope, receive, send_wrapper)
        finally:
            self.state.metrics.observe(route, scope["method"], status["code"], time.perf_counter() - t0)


class _TooLarge(Exception):
    pass
