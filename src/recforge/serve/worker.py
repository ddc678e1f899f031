"""Multi-process serving: ``recforge serve --workers N`` runs N uvicorn worker processes, each building the app
from the same run folder and sharing one feedback store (SQLite in WAL mode serialises their writes).

The parent passes the configuration through the environment variable :data:`CONFIG_ENV` (JSON), so that uvicorn's
worker processes, which import :func:`app_from_env` by name, build exactly the app the parent validated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import torch
from fastapi import FastAPI

from recforge.errors import ConfigError
from recforge.serve.app import create_app
from recforge.serve.engine import Prepare
from recforge.serve.settings import ServeSettings

#: environment variable holding {"run": ..., "settings": {...}, "torch_threads": int}
CONFIG_ENV = "RECFORGE_SERVE_CONFIG"
#: GIL switch interval of a serving process, seconds (Python's default is 5 ms). The event loop answers /health
#: while scoring threads run; whenever one of them holds the GIL in Python code, the loop waits up to this long.
SWITCH_INTERVAL_S = 0.0005


def configure_process(torch_threads: int) -> None:
    """Process-wide settings of a serving process: torch intra-op threads and a short GIL switch interval."""
    torch.set_num_threads(torch_threads)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def worker_config(run: str, settings: ServeSettings, torch_threads: int) -> str:
    """The JSON that :func:`app_from_env` reads back."""
    return json.dumps({"run": run, "settings": dataclasses.asdict(settings), "torch_threads": torch_threads})


def app_from_env(prepare: Prepare | None = None) -> FastAPI:
    """The app of one worker process (``prepare``: as for :func:`recforge.serve.create_app`; the command line's
    factory passes the one that attaches LLM recommenders' language models)."""
    raw = os.environ.get(CONFIG_ENV)
    if raw is None:
        raise ConfigError(f"{CONFIG_ENV} is not set (start workers with `recforge serve --workers N`)")
    cfg: dict[str, Any] = json.loads(raw)
    configure_process(int(cfg["torch_threads"]))
    fields = cfg["settings"]
    fields["negative_events"] = tuple(fields["negative_events"])
    fields["allowed_hosts"] = tuple(fields["allowed_hosts"])
    return create_app(cfg["run"], ServeSettings(**fields), prepare=prepare)
