"""What every LLM backend shares: the error type, declared capabilities and the usage counters a run folder records."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from recforge.errors import ConfigError, RecforgeError

VERBS = ("generate", "score", "embed")


class LLMError(RecforgeError):
    """A backend gave no usable answer (timeout after the retries, HTTP error, malformed body). CLI exit code 1."""

    exit_code = 1


def check_capabilities(backend: str, capabilities: Iterable[str]) -> frozenset[str]:
    """The declared verbs as a frozenset (ConfigError for a verb that is not one of generate/score/embed)."""
    caps = frozenset(capabilities)
    unknown = sorted(caps - set(VERBS))
    if unknown:
        raise ConfigError(f"{backend}: unknown capabilities {unknown} (known: {list(VERBS)})")
    return caps


def require_verb(backend: str, capabilities: frozenset[str], verb: str) -> None:
    """ConfigError naming the backend, the verb and what the backend supports, unless ``verb`` is supported."""
    if verb not in capabilities:
        raise ConfigError(f"the {backend} backend does not support {verb!r} (it supports: "
                          f"{', '.join(v for v in VERBS if v in capabilities) or 'nothing'})")


@dataclass
class Usage:
    """Counters of one client, thread-safe; :meth:`to_dict` is what a run folder records under ``llm``."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: Any) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors += 1
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            live = max(self.requests - self.cache_hits, 1)
            return {"requests": self.requests, "cache_hits": self.cache_hits, "retries": self.retries,
                    "errors": self.errors, "error_kinds": dict(self.error_kinds),
                    "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                    "latency_s": round(self.latency_s, 4), "mean_latency_s": round(self.latency_s / live, 4)}
