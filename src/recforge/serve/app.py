"""create_app: a FastAPI service around one model. All state lives on ``app.state`` (no module globals).

Routes: GET /health, GET /ready, POST /recommend, POST /similar, POST /feedback, GET /metrics,
POST /admin/reload (bearer token). OpenAPI docs at /docs and /redoc, their assets served by the app (offline).

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
from recforge.serve.engine import ModelHandle, load_served_model, lookup, stored_id
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
    error_responses,
)
from recforge.serve.settings import ServeSettings
from recforge.serve.store import FeedbackStore, FeedbackStoreError, PostgresFeedbackStore, open_feedback_store

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Swagger UI and ReDoc assets, shipped by the fastapi-offline package (part of the serve extra)
DOCS_ASSETS = files("fastapi_offline") / "static"
#: the host check's answer is Starlette's plain-text 400
HOST_400 = {400: {"description": "invalid Host header (not in --allowed-hosts)",
                  "content": {"text/plain": {"schema": {"type": "string"}}}}}


class ServeState:
    """Everything one app instance owns. ``handle`` is replaced, never mutated, so reads need no lock."""

    def __init__(self, handle: ModelHandle, store: FeedbackStore | PostgresFeedbackStore, settings: ServeSettings,
                 metrics: Metrics):
        self.handle, self.store, self.settings, self.metrics = handle, store, settings, metrics
        self.reload_lock = threading.Lock()
        self.limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the event loop
        self.publish_model()

    def publish_model(self) -> None:
        h = self.handle
        self.metrics.model = {"model": h.model.name, "version": h.version}

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
    store = open_feedback_store(settings.feedback_db, sync=settings.sync)
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
    status_of = {UnknownIdError: 404, ConfigError: 422, DataError: 422, FeedbackStoreError: 503}

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
        return JSONResponse(await state.off_loop(state.handle.similar, req.item_id, req.k))

    @app.post("/feedback", response_model=FeedbackResponse, tags=["feedback"],
              responses={**HOST_400, **error_responses(413, 422, 503)})
    def feedback(req: FeedbackRequest) -> dict[str, Any]:
        """Store one event. The response is sent only after the event is committed to the store (503: not stored)."""
        h = state.handle
        user = stored_id(h.model.user_vocab, req.user_id)
        item = stored_id(h.model.item_vocab, req.item_id)
        row = state.store.add(user, item, req.event, req.timestamp, req.value, h.version)
        state.metrics.inc("feedback_events")
        return {"id": row, "known_item": lookup(h.model.item_vocab, item) > 0}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"], responses=HOST_400)
    async def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload", response_model=ModelInfo, tags=["admin"], dependencies=[Depends(admin)],
              responses={**HOST_400, **error_responses(401, 403, 409, 413, 422)})
    def reload(req: ReloadRequest) -> dict[str, Any]:
        """Load a run folder (or the current source again) and swap it in; on any failure the old model keeps
        serving and the answer is 409, the same for every cause (the reason is in the server's log, not in the
        answer, which never names or confirms a path)."""
        path = req.path or state.handle.source
        with state.reload_lock:
            try:
                new = _build_handle(path, state.settings)
            except (RecforgeError, OSError, ValueError) as exc:
                state.metrics.inc("reloads", "error")
                log.warning("reload of %s failed, keeping %s: %s: %s", path, state.handle.version,
                            type(exc).__name__, exc)
                raise HTTPException(409, f"reload failed, still serving {state.handle.version} (see the server "
                                         "log)") from None
            state.handle = new  # a single reference assignment: atomic for concurrent readers
            state.publish_model()
            state.metrics.inc("reloads", "ok")
        log.info("reloaded: now serving %s", new.version)
        return new.info()


def _recommend(state: ServeState, req: RecommendRequest) -> dict[str, Any]:
    """The /recommend work (store read and scoring), run off the event loop."""
    h = state.handle  # one handle for the whole request, even if a reload swaps it meanwhile
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
