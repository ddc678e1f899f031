"""Serving subcommands: ``recforge serve RUN`` and ``recforge feedback export``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from recforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve`` and ``feedback export``."""
    p = sub.add_parser("serve", help="serve a run folder (or model directory) over HTTP")
    p.add_argument("run", help="run folder written by `recforge train`, or a model directory")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--admin-token", default=os.environ.get("RECFORGE_ADMIN_TOKEN"),
                   help="bearer token for /admin routes (default: $RECFORGE_ADMIN_TOKEN; unset disables them)")
    p.add_argument("--feedback-db", default="feedback.sqlite",
                   help="SQLite file for feedback, or a postgresql://user@host/db URL shared by several replicas "
                        "(default: %(default)s)")
    p.add_argument("--sync", choices=("full", "normal"), default="full",
                   help="full: fsync every feedback commit; normal: survives process crashes only")
    p.add_argument("--on-unknown", choices=("popular", "404"), default="popular", help="policy for unknown users")
    p.add_argument("--index", choices=("auto", "exact", "flat", "hnsw", "ivf"), default="auto",
                   help="retrieval for embedding models (auto: faiss IVF from --ann-threshold items)")
    p.add_argument("--ann-threshold", type=int, default=200_000)
    p.add_argument("--index-param", action="append", default=[], metavar="KEY=INT",
                   help="faiss parameter, repeatable: m, ef_construction, ef_search (hnsw); nlist, nprobe (ivf)")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads (default 1: one request is a small job, and idle OpenMP threads "
                        "spinning between requests cost more CPU than they save)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes (one per core); they share the feedback store (default: %(default)s)")
    p.add_argument("--scoring-threads", type=int, default=2,
                   help="threads per process that score requests off the event loop (default: %(default)s)")
    p.add_argument("--allowed-hosts", default=None, metavar="HOST[,HOST...]",
                   help="Host header values accepted, e.g. 'api.example.com,*.example.com' (default: loopback names "
                        "when --host is loopback, else any)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("feedback", help="feedback store tools")
    fsub = p.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    e = fsub.add_parser("export", help="write every feedback event to a Parquet file (for retraining)")
    e.add_argument("--db", required=True, help="feedback store written by `recforge serve` (SQLite file or "
                                               "postgresql:// URL)")
    e.add_argument("--out", required=True, help="output .parquet file")
    e.set_defaults(func=cmd_feedback_export)


def cmd_serve(args: argparse.Namespace) -> int:
    """Build the app (refusing to start on a missing/corrupt artifact) and run it under uvicorn, in ``--workers``
    processes when more than one."""
    try:  # the serve extra is optional: name it in one line rather than a traceback
        import fastapi_offline  # noqa: F401 (the docs assets)
        import uvicorn

        from recforge.serve import ServeSettings, create_app
        from recforge.serve.worker import CONFIG_ENV, configure_process, worker_config
    except ModuleNotFoundError as exc:
        raise ConfigError(f"`recforge serve` needs the serve extra (missing module {exc.name!r}): "
                          "pip install 'recforge[serve]'") from None

    if args.torch_threads < 1:
        raise ConfigError(f"--torch-threads must be >= 1, got {args.torch_threads}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    configure_process(args.torch_threads)  # process-wide: this process only serves

    settings = ServeSettings(
        admin_token=args.admin_token,
        on_unknown=args.on_unknown,
        feedback_db=args.feedback_db,
        sync=args.sync,
        max_body_bytes=args.max_body_bytes,
        index=args.index,
        ann_threshold=args.ann_threshold,
        index_params=_int_params(args.index_param),
        allowed_hosts=_allowed_hosts(args.allowed_hosts, args.host),
        scoring_threads=args.scoring_threads,
    )
    app = create_app(args.run, settings, prepare=attach_run_llm)  # checks the artifact before any socket or worker
    info = app.state.recforge.handle.info()
    console = Console(stderr=True)
    console.print(
        f"serving [bold]{info['version']}[/] ({info['n_items']} items) on http://{args.host}:{args.port} "
        f"with {args.workers} worker(s) - docs at /docs, feedback in {_where(settings.feedback_db)}, "
        f"admin {'on' if settings.admin_token else 'off'}",
        highlight=False,
    )
    common = {"host": args.host, "port": args.port, "log_level": args.log_level, "access_log": False}
    if args.workers == 1:
        uvicorn.run(app, **common)
        return 0
    app.state.recforge.store.close()
    del app
    os.environ[CONFIG_ENV] = worker_config(str(Path(args.run).resolve()), settings, args.torch_threads)
    uvicorn.run("recforge.cli.serve:worker_app", factory=True, workers=args.workers, **common)
    return 0


def attach_run_llm(model: Any, source: Path) -> None:
    """What ``recforge serve`` does to every model it loads: an LLM recommender (``protocols.LLMUser`` with a
    backend in its config) gets the toolkit its run configured, as ``recforge evaluate`` does: the backend of the
    saved config (its timeouts, retries, concurrency limit, API key variable) over the run's dataset item texts.
    Served from a bare artifact directory there is no run config to read the item texts from: it then serves as
    its base model (logged)."""
    from recforge.experiments.runs import attach_llm, load_data, run_config
    from recforge.protocols import LLMUser

    if not isinstance(model, LLMUser) or model.llm_spec() is None:
        return
    run = source if (source / "config.toml").is_file() else source.parent  # a run folder, or its artifact/
    if not (run / "config.toml").is_file() or (run != source and source.name != "artifact"):
        log.warning("%s is not in a run folder: %s serves without its language model (serve the run folder)",
                    source, model.name)
        return
    attach_llm(model, load_data(run_config(run)), model.item_vocab)


def worker_app() -> Any:
    """uvicorn's app factory for ``--workers N``: each worker builds the app the parent checked (the configuration
    travels in the environment) and attaches LLM recommenders' language models as the parent does."""
    from recforge.serve.worker import app_from_env

    return app_from_env(prepare=attach_run_llm)


def _where(location: str) -> str:
    """Where feedback goes, for the start-up line: a URL's password is never printed."""
    return "PostgreSQL" if location.startswith(("postgresql://", "postgres://")) else location


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _allowed_hosts(flag: str | None, host: str) -> tuple[str, ...]:
    """--allowed-hosts as a tuple; by default the loopback names when bound to loopback (a page on another site
    cannot reach the server through DNS rebinding), else any host."""
    if flag is not None:
        hosts = tuple(h.strip() for h in flag.split(",") if h.strip())
        if not hosts:
            raise ConfigError(f"--allowed-hosts needs at least one host name, got {flag!r}")
        return hosts
    return LOOPBACK if host in LOOPBACK else ("*",)


def _int_params(pairs: list[str]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value.strip().isdigit():
            raise ConfigError(f"--index-param expects KEY=INT, got {pair!r}")
        out[key.strip()] = int(value)
    return out


def cmd_feedback_export(args: argparse.Namespace) -> int:
    """Export the feedback store to Parquet."""
    from recforge.serve.store import open_feedback_store

    if not args.db.startswith(("postgresql://", "postgres://")) and not Path(args.db).is_file():
        raise DataError("feedback store not found", path=args.db)
    store = open_feedback_store(args.db)
    try:
        n = store.export_parquet(args.out)
    finally:
        store.close()
    Console().print(f"wrote {n} feedback events to {args.out}", highlight=False)
    return 0
