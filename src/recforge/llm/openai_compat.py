"""The ``openai_compat`` backend: any server speaking the OpenAI HTTP API (vLLM, llama.cpp's server, hosted APIs).

generate -> ``POST {base_url}/chat/completions``; score -> ``POST {base_url}/completions`` with ``echo`` and
``logprobs`` (the continuation's token log-probs summed); embed -> ``POST {base_url}/embeddings``.

Robustness: a timeout per request; bounded retries on 429, 5xx, timeouts and refused connections, waiting what
``Retry-After`` says (capped) or an exponential backoff; at most ``concurrency`` requests in flight; bodies over
``max_body_bytes``, a content type other than JSON, malformed JSON and empty ``choices`` are errors with a clear message.
In ``generate`` a failed request becomes a Generation with ``error`` set (counted in ``usage``), so one bad answer
does not lose a batch; ``score`` and ``embed`` raise LLMError. Successful answers are cached on disk (``cache_dir``),
keyed by the sha256 of the endpoint and the request body. Only the standard library is used.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recforge.errors import ConfigError
from recforge.llm.base import LLMError, Usage, check_capabilities, require_verb
from recforge.protocols import Generation, GenerationRequest

log = logging.getLogger(__name__)
RETRY_STATUS = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class OpenAICompatConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    """The API root, up to and including ``/v1``."""
    model: str = "default"
    """Model name sent with every request."""
    embedding_model: str = ""
    """Model name for ``embed`` ("" = ``model``)."""
    api_key_env: str = ""
    """Environment variable holding the API key ("" = send none; local servers usually need none)."""
    timeout_s: float = 60.0
    """Seconds per HTTP request."""
    max_retries: int = 3
    """Retries after the first attempt (429, 5xx, timeouts, refused connections)."""
    backoff_s: float = 0.5
    """First wait without a Retry-After header; doubles per retry."""
    max_retry_wait_s: float = 30.0
    """Cap on any single wait, Retry-After included."""
    concurrency: int = 4
    """Requests in flight at once."""
    cache_dir: str = ""
    """Folder of the on-disk request cache ("" = no cache)."""
    max_body_bytes: int = 8_000_000
    """Larger response bodies are refused."""
    capabilities: tuple[str, ...] = ("generate", "score", "embed")
    """The verbs the endpoint serves (e.g. only ("generate",) for a chat-only hosted API)."""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.concurrency < 1 or self.max_body_bytes < 1:
            raise ConfigError("need timeout_s > 0, max_retries >= 0, concurrency >= 1 and max_body_bytes >= 1 (got "
                              f"{self.timeout_s}, {self.max_retries}, {self.concurrency}, {self.max_body_bytes})")


class OpenAICompatClient:
    """An LLMClient over the OpenAI HTTP API (see the module docstring). ``usage`` counts requests, cache hits,
    retries, errors, tokens and latency."""

    name = "openai_compat"
    config_class = OpenAICompatConfig

    def __init__(self, config: OpenAICompatConfig | None = None, **overrides: Any):
        self.config = config or OpenAICompatConfig(**overrides)
        self.capabilities = check_capabilities(self.name, self.config.capabilities)
        self.usage = Usage()
        self._slots = threading.BoundedSemaphore(self.config.concurrency)
        self._key: str | None = None
        if self.config.api_key_env:
            self._key = os.environ.get(self.config.api_key_env)
            if not self._key:
                raise ConfigError(f"the API key variable {self.config.api_key_env} is not set")

    # -------------------------------------------------------------------------------------------------- verbs
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        require_verb(self.name, self.capabilities, "generate")
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(requests))) as pool:
            return list(pool.map(self._chat, requests))

    def score(self, context: str, continuations: Sequence[str]) -> np.ndarray:
        require_verb(self.name, self.capabilities, "score")
        return np.asarray([self._logprob(context, c) for c in continuations], dtype=np.float64)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        require_verb(self.name, self.capabilities, "embed")
        body, _ = self.post("embeddings", {"model": self.config.embedding_model or self.config.model,
                                           "input": list(texts)})
        data = body.get("data")
        if not isinstance(data, list) or len(data) != len(texts):
            raise LLMError(f"{self.name}: embeddings answer has {len(data) if isinstance(data, list) else 'no'} "
                           f"vectors for {len(texts)} texts")
        try:
            rows = [d["embedding"] for d in sorted(data, key=lambda d: d.get("index", 0))]
            out = np.asarray(rows, dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise LLMError(f"{self.name}: malformed embeddings answer ({exc})") from None
        if out.ndim != 2 or not np.isfinite(out).all():
            raise LLMError(f"{self.name}: embeddings must be finite vectors of one length")
        return out

    # ------------------------------------------------------------------------------------------------ helpers
    def _chat(self, req: GenerationRequest) -> Generation:
        payload: dict[str, Any] = {"model": self.config.model, "max_tokens": req.max_tokens,
                                   "temperature": req.temperature,
                                   "messages": [{"role": r, "content": c} for r, c in req.messages]}
        if req.stop:
            payload["stop"] = list(req.stop)
        try:
            body, cached = self.post("chat/completions", payload)
            choices = body.get("choices")
            if not isinstance(choices, list) or not choices:
                raise LLMError(f"{self.name}: the answer has no choices")
            first = choices[0] if isinstance(choices[0], dict) else {}
            message = first.get("message") if isinstance(first.get("message"), dict) else {}
            text = message.get("content")
            if not isinstance(text, str):
                raise LLMError(f"{self.name}: the first choice has no message content")
        except LLMError as exc:
            self.usage.error(_kind(str(exc)))
            return Generation(text="", error=str(exc))
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Generation(text=text, finish_reason=first.get("finish_reason"),
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0), cached=cached)

    def _logprob(self, context: str, continuation: str) -> float:
        body, _ = self.post("completions", {"model": self.config.model, "prompt": context + continuation,
                                            "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0.0})
        try:
            lp = body["choices"][0]["logprobs"]
            tokens, offsets = lp["token_logprobs"], lp["text_offset"]
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"{self.name}: the completions answer has no echoed logprobs") from None
        picked = [v for v, off in zip(tokens, offsets) if off >= len(context)]
        if not picked:
            raise LLMError(f"{self.name}: no tokens of the continuation {continuation[:40]!r} were echoed")
        if any(v is None or not isinstance(v, int | float) or math.isnan(v) for v in picked):
            raise LLMError(f"{self.name}: NaN or missing log-prob in the continuation {continuation[:40]!r}")
        return float(sum(picked))

    def post(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST JSON to ``base_url/path`` -> (the JSON object answered, whether it came from the cache)."""
        url = self.config.base_url.rstrip("/") + "/" + path
        raw = json.dumps(payload, sort_keys=True).encode("utf-8")
        key = hashlib.sha256(url.encode() + b"\n" + raw).hexdigest()
        self.usage.add(requests=1)
        cached = self._cache_get(key)
        if cached is not None:
            self.usage.add(cache_hits=1)
            return cached, True
        with self._slots:
            body = self._send(url, raw)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        self.usage.add(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                       completion_tokens=int(usage.get("completion_tokens") or 0))
        self._cache_put(key, body)
        return body, False

    def _send(self, url: str, raw: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last = ""
        for attempt in range(self.config.max_retries + 1):
            wait = self.config.backoff_s * (2**attempt)
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(url, raw, headers, method="POST"),
                                            timeout=self.config.timeout_s) as resp:
                    body = self._read(resp, url)
                self.usage.add(latency_s=time.perf_counter() - start)
                return body
            except urllib.error.HTTPError as exc:
                self.usage.add(latency_s=time.perf_counter() - start)
                detail = exc.read(2000).decode("utf-8", "replace").strip()
                last = f"HTTP {exc.code}" + (f": {detail[:200]}" if detail else "")
                if exc.code not in RETRY_STATUS:
                    raise LLMError(f"{self.name}: {url} answered {last}") from None
                wait = _retry_after(exc.headers.get("Retry-After"), wait)
            except TimeoutError:
                self.usage.add(latency_s=time.perf_counter() - start)
                last = f"timed out after {self.config.timeout_s:g}s"
            except urllib.error.URLError as exc:
                self.usage.add(latency_s=time.perf_counter() - start)
                if isinstance(exc.reason, TimeoutError):
                    last = f"timed out after {self.config.timeout_s:g}s"
                else:
                    last = f"connection failed ({exc.reason})"
            if attempt < self.config.max_retries:
                self.usage.add(retries=1)
                log.info("%s: %s; retry %d in %.2fs", url, last, attempt + 1, min(wait, self.config.max_retry_wait_s))
                time.sleep(min(wait, self.config.max_retry_wait_s))
        raise LLMError(f"{self.name}: {url}: {last} (after {self.config.max_retries + 1} attempts)")

    def _read(self, resp: Any, url: str) -> dict[str, Any]:
        ctype = resp.headers.get("Content-Type", "")
        if "json" not in ctype.lower():
            raise LLMError(f"{self.name}: {url} answered content type {ctype or 'none'!r}, expected application/json")
        data = resp.read(self.config.max_body_bytes + 1)
        if len(data) > self.config.max_body_bytes:
            raise LLMError(f"{self.name}: {url} answered a body over {self.config.max_body_bytes:,} bytes")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LLMError(f"{self.name}: {url} answered malformed JSON ({exc})") from None
        if not isinstance(body, dict):
            raise LLMError(f"{self.name}: {url} answered a JSON {type(body).__name__}, expected an object")
        return body

    def _cache_file(self, key: str) -> Path | None:
        return Path(self.config.cache_dir) / key[:2] / f"{key}.json" if self.config.cache_dir else None

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        file = self._cache_file(key)
        if file is None or not file.is_file():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log.warning("ignoring a corrupt cache entry %s", file)
            return None

    def _cache_put(self, key: str, body: dict[str, Any]) -> None:
        file = self._cache_file(key)
        if file is None:
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh)
        os.replace(tmp, file)


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); ``default`` when absent or unreadable."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _kind(message: str) -> str:
    """A short label for the usage counters' ``error_kinds``."""
    for needle, kind in (("timed out", "timeout"), ("content type", "content_type"), ("bytes", "body_too_large"),
                         ("malformed", "malformed_json"), ("no choices", "empty_choices"), ("HTTP", "http"),
                         ("connection", "connection"), ("no message", "no_content")):
        if needle in message:
            return kind
    return "other"
