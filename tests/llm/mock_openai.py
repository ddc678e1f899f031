"""A mock OpenAI-compatible server on 127.0.0.1 (port 0) whose behaviour is chosen by the request's ``model``.

Chat behaviours (the candidates' ids are read from the prompt's "Candidates:" listing; the oracle order is by the
number in each candidate's text, highest first): ``echo``, ``oracle``, ``invent``, ``duplicates``, ``partial``,
``prose``, ``malformed``, ``empty``, ``rate429`` (429 with Retry-After once, then the oracle), ``flaky500`` (500 once,
then the oracle), ``slow`` (answers after 1 s), ``html`` (wrong content type), ``huge`` (a 10 MB body), ``sleepy``
(0.1 s, to observe concurrency). ``/completions`` echoes one token per character with log-prob -1 (``nan`` model:
NaN); ``/embeddings`` returns 8-d vectors.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LISTING = re.compile(r"^(i\d{3}): .*?(\d+)\s*$", re.M)


class MockState:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []


def _oracle(prompt: str) -> list[str]:
    pairs = LISTING.findall(prompt.split("Candidates:", 1)[-1])
    return [cid for cid, _ in sorted(pairs, key=lambda p: -int(p[1]))]


def _chat_text(model: str, prompt: str) -> str:
    ids = _oracle(prompt)
    return {
        "echo": prompt,
        "oracle": json.dumps(ids),
        "invent": json.dumps(["i000", *ids[:2], "i001", *ids[2:]]),
        "duplicates": json.dumps([x for cid in ids for x in (cid, cid)]),
        "partial": json.dumps(ids[: len(ids) // 2]),
        "prose": "I would go with " + ", then ".join(ids[:3]) + ". The rest are less likely.",
        "malformed": json.dumps(ids)[:-12],
    }.get(model, json.dumps(ids))


class Handler(BaseHTTPRequestHandler):
    state: MockState

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        return

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = req.get("model", "oracle")
        st = self.state
        with st.lock:
            st.calls[model] += 1
            n = st.calls[model]
            st.in_flight[model] += 1
            st.max_in_flight[model] = max(st.max_in_flight[model], st.in_flight[model])
            st.headers.append(dict(self.headers))
        try:
            self._answer(req, model, n)
        finally:
            with st.lock:
                st.in_flight[model] -= 1

    def _answer(self, req: dict[str, Any], model: str, n: int) -> None:
        if model == "rate429" and n == 1:
            return self._send(429, b'{"error": "slow down"}', headers={"Retry-After": "0.2"})
        if model == "flaky500" and n == 1:
            return self._send(500, b'{"error": "boom"}')
        if model == "slow":
            time.sleep(1.0)
        if model == "sleepy":
            time.sleep(0.1)
        if model == "html":
            return self._send(200, b"<html>maintenance</html>", ctype="text/html")
        if model == "huge":
            return self._send(200, b'{"pad": "' + b"x" * 10_000_000 + b'"}')
        if self.path.endswith("/embeddings"):
            data = [{"index": i, "embedding": [float((len(t) + k) % 5) for k in range(8)]}
                    for i, t in enumerate(req["input"])]
            return self._send(200, json.dumps({"data": data}).encode())
        if self.path.endswith("/completions") and not self.path.endswith("/chat/completions"):
            text = req["prompt"]
            lp = [None] + [float("nan") if model == "nan" else -1.0] * (len(text) - 1)
            body = {"choices": [{"text": text, "logprobs": {"tokens": list(text), "token_logprobs": lp,
                                                             "text_offset": list(range(len(text)))}}]}
            return self._send(200, json.dumps(body).encode())
        if model == "empty":
            return self._send(200, json.dumps({"choices": []}).encode())
        prompt = req["messages"][-1]["content"]
        text = _chat_text(model, prompt)
        body = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}}
        return self._send(200, json.dumps(body).encode())


def start() -> tuple[ThreadingHTTPServer, MockState, str]:
    """Start the server on a free loopback port -> (server, state, base_url ending in /v1)."""
    state = MockState()
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state, f"http://127.0.0.1:{server.server_address[1]}/v1"
