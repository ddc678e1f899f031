"""LLM recommenders served with the language model of their run: ``llm_rerank`` trained with an ``openai_compat``
backend pointed at the mock OpenAI-compatible server of the LLM tests, then served by ``recforge serve``'s loader.

The planted catalogue: item i is titled "Film <n_i>" with n_i = 37·i mod 101 (distinct, unrelated to popularity); the
mock's oracle ranks candidates by that number, highest first. So the served order must be the base model's top-10
re-sorted by n_i, and when the language model fails (500s, timeouts, a client that raises) the base order, counted
in /metrics and never a 5xx.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recforge.cli import main
from recforge.cli.serve import attach_run_llm
from recforge.data.interactions import Interactions
from recforge.experiments.runs import load_run
from recforge.llm.toolkit import Toolkit
from recforge.models.llm_rerank import LLMRerank
from recforge.serve import ServeSettings, create_app

_spec = importlib.util.spec_from_file_location("mock_openai", Path(__file__).parents[1] / "llm" / "mock_openai.py")
mock_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mock_openai)

N_ITEMS = 30


def number(item: int) -> int:
    return 37 * item % 101


@pytest.fixture(scope="module")
def movies(tmp_path_factory) -> Path:
    """A MovieLens-layout folder: 24 users, popularity skewed towards low ids, titles "Film <number(i)>"."""
    root = tmp_path_factory.mktemp("films")
    rng = np.random.default_rng(3)
    rows = ["userId,movieId,rating,timestamp"]
    for u in range(1, 25):
        items = rng.choice(np.arange(1, N_ITEMS + 1), size=8, replace=False, p=_skew())
        rows += [f"{u},{i},4.0,{1_600_000_000 + 10 * k}" for k, i in enumerate(items)]
    (root / "ratings.csv").write_text("\n".join(rows) + "\n")
    (root / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{i},Film {number(i)},Drama\n" for i in range(1, N_ITEMS + 1)))
    return root


def _skew() -> np.ndarray:
    w = 1.0 / np.arange(1, N_ITEMS + 1)
    return w / w.sum()


class _Down(BaseHTTPRequestHandler):
    """An endpoint that answers every request with 500."""

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": "down"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def endpoints():
    """(oracle mock base URL, always-500 base URL)."""
    mock, _, url = mock_openai.start()
    down = ThreadingHTTPServer(("127.0.0.1", 0), _Down)
    down.daemon_threads = True
    threading.Thread(target=down.serve_forever, daemon=True).start()
    yield url, f"http://127.0.0.1:{down.server_address[1]}/v1"
    for srv in (mock, down):
        srv.shutdown()
        srv.server_close()


def train(movies: Path, out: Path, base_url: str, model: str, **client) -> Path:
    llm = ", ".join(['name = "openai_compat"', f'base_url = "{base_url}"', f'model = "{model}"',
                     *(f"{k} = {v}" for k, v in client.items())])
    cfg = out.with_suffix(".toml")
    cfg.write_text(f'[model]\nname = "llm_rerank"\nn_candidates = 10\nbase = {{name = "popular"}}\nllm = {{{llm}}}\n'
                   '[eval]\nmetrics = ["hit@10"]\nn_boot = 10\n')
    assert main(["train", "llm_rerank", "--data", str(movies), "--config", str(cfg), "--out", str(out)]) == 0
    return out


def serve(run: Path, tmp: Path) -> TestClient:
    return TestClient(create_app(run, ServeSettings(feedback_db=str(tmp / "fb.sqlite")), prepare=attach_run_llm),
                      raise_server_exceptions=False)


def base_top(client: TestClient, user, k: int = 10) -> list:
    """The base model's ranking (the served model without its language model)."""
    return client.app.state.recforge.handle.twin.recommend([user], k=k).items[0]


def served_top(client: TestClient, **body) -> list:
    r = client.post("/recommend", json={"k": 10, **body})
    assert r.status_code == 200, r.text
    return [x["item"] for x in r.json()["items"]]


def metric(client: TestClient, line: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def test_served_llm_rerank_follows_the_oracle(movies, endpoints, tmp_path):
    run = train(movies, tmp_path / "oracle", endpoints[0], "oracle")
    with serve(run, tmp_path) as c:
        assert c.get("/ready").json()["llm"] == {"backend": "openai_compat"}
        before = metric(c, "recforge_llm_requests_total")
        changed = 0
        for user in (1, 2, 3, 5, 8):
            base = base_top(c, user)
            served = served_top(c, user_id=user)
            assert served == sorted(base, key=lambda i: -number(i))  # the oracle's order of the base's top-10
            changed += served != base
        assert changed >= 3  # the planted numbers are not the popularity order
        history = served_top(c, history=[1, 2, 3])  # anonymous sessions are reranked too
        assert history == sorted(history, key=lambda i: -number(i))
        assert metric(c, "recforge_llm_requests_total") == before + 6
        assert metric(c, 'recforge_llm_fallbacks_total{reason="backend"}') == 0


@pytest.mark.parametrize(("which", "model", "client"), [
    ("down", "any", {"max_retries": 0}),
    ("mock", "slow", {"timeout_s": 0.2, "max_retries": 0}),
])
def test_a_failing_language_model_falls_back_to_the_base_order(movies, endpoints, tmp_path, which, model, client):
    url = endpoints[1] if which == "down" else endpoints[0]
    run = train(movies, tmp_path / which, url, model, **client)
    with serve(run, tmp_path) as c:
        for n, user in enumerate((1, 2, 3), start=1):
            assert served_top(c, user_id=user) == base_top(c, user)
            assert metric(c, 'recforge_llm_fallbacks_total{reason="backend"}') == n
        assert metric(c, "recforge_llm_errors_total") == 3


class Raising:
    """An LLMClient whose every call raises (a bug, a dropped dependency): the serve layer's own fallback."""

    name, capabilities = "raising", frozenset({"generate"})

    def generate(self, requests):
        raise RuntimeError("backend exploded")

    def score(self, context, continuations):
        raise RuntimeError("backend exploded")

    def embed(self, texts):
        raise RuntimeError("backend exploded")


def test_an_exception_on_the_llm_path_answers_the_base_ranking(tmp_path):
    users = np.repeat(np.arange(1, 13), 5)
    items = (np.arange(len(users)) * 7) % 20 + 1
    train_log = Interactions.from_arrays(users, items, time=np.arange(len(users)))
    model = LLMRerank(n_candidates=5, llm={"name": "mock"}).fit(train_log)
    model.use_llm(Toolkit(Raising(), ["", *[f"film {i}" for i in range(1, 21)]]))
    with TestClient(create_app(model, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite"))),
                    raise_server_exceptions=False) as c:
        for user in (1, 2):
            assert served_top(c, user_id=user) == base_top(c, user)
        assert served_top(c, history=[1, 2]) == c.app.state.recforge.handle.twin.recommend_history([1, 2], k=10
                                                                                                  )[0].items[0]
        assert metric(c, 'recforge_llm_fallbacks_total{reason="exception"}') == 3


def test_an_llm_run_served_through_load_run_keeps_its_language_model(movies, endpoints, tmp_path):
    run = train(movies, tmp_path / "oracle", endpoints[0], "oracle")
    with TestClient(create_app(load_run(run).model, ServeSettings(feedback_db=str(tmp_path / "fb.sqlite")))) as c:
        base = base_top(c, 4)
        assert served_top(c, user_id=4) == sorted(base, key=lambda i: -number(i))
