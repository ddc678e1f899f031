"""ServeSettings: everything the HTTP service is configured with (passed to ``create_app``; no globals)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from recforge.config import check_choices
from recforge.errors import ConfigError
from recforge.index.base import IndexKind


@dataclass(frozen=True)
class ServeSettings:
    """Configuration of one service instance."""

    #: bearer token for /admin routes; None disables them (403).
    admin_token: str | None = None
    #: unknown users: "popular" (popularity fallback, flagged in the response) or "404".
    on_unknown: Literal["popular", "404"] = "popular"
    #: feedback store: a SQLite file (WAL journal; created when missing) or a ``postgresql://`` URL (a PostgreSQL
    #: server that several replicas share).
    feedback_db: str = "feedback.sqlite"
    #: SQLite synchronous level: "full" fsyncs every commit (survives power loss), "normal" survives process crashes.
    sync: Literal["full", "normal"] = "full"
    #: request bodies larger than this are refused with 413.
    max_body_bytes: int = 64 * 1024
    #: retrieval for embedding models: "auto" (faiss IVF at >= ann_threshold items, else plain scoring) or a kind.
    index: IndexKind = "auto"
    #: catalog size from which "auto" switches to approximate search.
    ann_threshold: int = 200_000
    #: faiss parameters (hnsw: m, ef_construction, ef_search; ivf: nlist, nprobe).
    index_params: dict[str, int] = field(default_factory=dict)
    #: feedback events that do NOT extend a user's history (negative or passive signals).
    negative_events: tuple[str, ...] = ("skip", "dislike", "impression")
    #: only the most recent items of a history are scored (bounds latency for long-lived users); the bound
    #: applies by recency to the time-ordered history (training history, then feedback by timestamp).
    max_history: int = 1000
    #: Host header values accepted (TrustedHostMiddleware; "*" accepts any, "*.example.com" a domain's hosts).
    allowed_hosts: tuple[str, ...] = ("*",)
    #: threads per process that score requests off the event loop (so /health answers while scoring runs).
    scoring_threads: int = 2

    def __post_init__(self) -> None:
        check_choices(self)
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        allowed = {"m", "ef_construction", "ef_search", "nlist", "nprobe"}
        for key, value in self.index_params.items():
            if key not in allowed or not isinstance(value, int) or value < 1:
                raise ConfigError(f"index_params: {key}={value!r} (expected positive ints for {sorted(allowed)})")
        if self.ann_threshold < 1:
            raise ConfigError(f"ann_threshold must be >= 1, got {self.ann_threshold}")
        if self.max_history < 1:
            raise ConfigError(f"max_history must be >= 1, got {self.max_history}")
        if self.admin_token is not None and not _TOKEN.fullmatch(self.admin_token):
            raise ConfigError("admin_token must be at least 8 printable ASCII characters without whitespace (a "
                              f"bearer token can carry nothing else), got {len(self.admin_token)} characters")
        if not self.allowed_hosts or not all(isinstance(h, str) and h.strip() == h and h for h in self.allowed_hosts):
            raise ConfigError(f"allowed_hosts must be non-empty host names, got {self.allowed_hosts!r}")
        if self.scoring_threads < 1:
            raise ConfigError(f"scoring_threads must be >= 1, got {self.scoring_threads}")


#: what a bearer token may hold: visible ASCII, no whitespace (RFC 6750 allows less; this is what can round-trip)
_TOKEN = re.compile(r"[\x21-\x7e]{8,}")
