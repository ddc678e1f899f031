"""openai_compat against the mock server: every misbehaviour ends in a clear error or a counted fallback, and a
ranking answer is always a permutation of the candidates."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from recforge.cli import main
from recforge.errors import ConfigError
from recforge.llm.base import LLMError
from recforge.llm.openai_compat import OpenAICompatClient, _retry_after
from recforge.llm.ranker import LLMRanker
from recforge.protocols import GenerationRequest, LLMClient

TEXTS = ["", *[f"item number {i}" for i in range(1, 31)]]
CANDIDATES = np.array([[3, 17, 5, 29, 11, 8], [1, 2, 30, 4, 12, 6]])
HISTORIES = [np.array([1, 2, 3]), np.array([9, 10])]


def client(url: str, model: str, **kw) -> OpenAICompatClient:
    return OpenAICompatClient(base_url=url, model=model, backoff_s=0.01, **kw)


def rerank(url: str, model: str, **kw) -> tuple[np.ndarray, LLMRanker]:
    ranker = LLMRanker(client(url, model, **kw), TEXTS)
    return ranker.rerank(HISTORIES, CANDIDATES), ranker


def is_permutation(order: np.ndarray) -> bool:
    return all(sorted(row.tolist()) == list(range(CANDIDATES.shape[1])) for row in order)


def oracle_order(row: np.ndarray) -> list[int]:
    return np.argsort(-row, kind="stable").tolist()


@pytest.mark.parametrize("model", ["echo", "oracle", "invent", "duplicates", "partial", "prose", "malformed",
                                   "empty", "rate429", "flaky500", "html", "huge"])
def test_every_behaviour_gives_a_permutation(server, model):
    _, url = server
    order, _ = rerank(url, model, max_retries=1)
    assert is_permutation(order)


def test_oracle_is_followed(server):
    order, ranker = rerank(server[1], "oracle")
    assert [o.tolist() for o in order] == [oracle_order(r) for r in CANDIDATES]
    s = ranker.stats.to_dict()
    assert s["parse_rate"] == 1 and s["json_rate"] == 1 and s["invention_rate"] == 0 and s["fill_rate"] == 0


def test_invented_duplicate_and_missing_ids_are_counted(server):
    _, url = server
    order, ranker = rerank(url, "invent")
    assert [o.tolist() for o in order] == [oracle_order(r) for r in CANDIDATES]
    assert ranker.stats.invented == 4 and ranker.stats.to_dict()["invention_rate"] == pytest.approx(4 / 16)
    order, ranker = rerank(url, "duplicates")
    assert ranker.stats.duplicates == 12 and [o.tolist() for o in order] == [oracle_order(r) for r in CANDIDATES]
    order, ranker = rerank(url, "partial")
    assert ranker.stats.filled == 6
    for row, got in zip(CANDIDATES, order):  # the answered half in the oracle's order, the rest in base order
        top = oracle_order(row)[:3]
        assert got[:3].tolist() == top and got[3:].tolist() == [j for j in range(6) if j not in top]


def test_prose_and_truncated_json_fall_back_to_ids_in_the_text(server):
    order, ranker = rerank(server[1], "prose")
    assert ranker.stats.parsed_json == 0 and ranker.stats.parsed == 2 and ranker.stats.filled == 6
    assert [o[:3].tolist() for o in order] == [oracle_order(r)[:3] for r in CANDIDATES]
    order, ranker = rerank(server[1], "malformed")
    assert ranker.stats.parsed_json == 0 and ranker.stats.parsed == 2


def test_empty_choices_is_a_counted_error_keeping_base_order(server):
    order, ranker = rerank(server[1], "empty")
    assert (order == np.arange(6)).all()
    assert ranker.stats.errors == 2 and ranker.client.usage.error_kinds == {"empty_choices": 2}


def test_429_waits_for_retry_after_then_succeeds(server):
    state, url = server
    state.calls["rate429"] = 0
    c = client(url, "rate429", max_retries=2)
    start = time.perf_counter()
    gen = c.generate([GenerationRequest((("user", "Candidates:\ni123: item 1"),))])[0]
    assert gen.error is None and json.loads(gen.text) == ["i123"]
    assert time.perf_counter() - start >= 0.2 and c.usage.retries == 1


def test_500_then_ok_and_retries_are_bounded(server):
    state, url = server
    state.calls["flaky500"] = 0
    c = client(url, "flaky500", max_retries=1)
    assert c.generate([GenerationRequest((("user", "hi"),))])[0].error is None and c.usage.retries == 1
    no_retry = client(url, "rate429", max_retries=0)
    state.calls["rate429"] = 0
    gen = no_retry.generate([GenerationRequest((("user", "hi"),))])[0]
    assert "HTTP 429" in gen.error and "after 1 attempts" in gen.error


def test_slower_than_the_timeout(server):
    c = client(server[1], "slow", timeout_s=0.2, max_retries=1)
    start = time.perf_counter()
    gen = c.generate([GenerationRequest((("user", "hi"),))])[0]
    assert "timed out after 0.2s" in gen.error and c.usage.error_kinds == {"timeout": 1}
    assert time.perf_counter() - start < 1.5


@pytest.mark.parametrize("model,message", [("html", "content type 'text/html'"),
                                           ("huge", "body over 8,000,000 bytes")])
def test_wrong_content_type_and_huge_bodies(server, model, message):
    gen = client(server[1], model, max_retries=0).generate([GenerationRequest((("user", "hi"),))])[0]
    assert message in gen.error and gen.text == ""
    with pytest.raises(LLMError, match=message.split(" '")[0]):
        client(server[1], model).embed(["x"])


def test_disk_cache_and_counters(server, tmp_path):
    state, url = server
    c = client(url, "oracle", cache_dir=str(tmp_path))
    req = [GenerationRequest((("user", "Candidates:\ni500: item 2"),))]
    before = state.calls["oracle"]
    first, second = c.generate(req)[0], c.generate(req)[0]
    assert first.text == second.text and not first.cached and second.cached
    assert state.calls["oracle"] == before + 1
    u = c.usage.to_dict()
    assert u["requests"] == 2 and u["cache_hits"] == 1 and u["prompt_tokens"] > 0 and u["latency_s"] > 0


def test_concurrency_limit(server):
    state, url = server
    c = client(url, "sleepy", concurrency=2)
    gens = c.generate([GenerationRequest((("user", f"hi {k}"),)) for k in range(6)])
    assert all(g.error is None for g in gens) and state.max_in_flight["sleepy"] == 2


def test_score_and_embed(server):
    c = client(server[1], "oracle")
    assert isinstance(c, LLMClient)
    np.testing.assert_allclose(c.score("ab", ["cd", "xyz"]), [-2.0, -3.0])
    assert c.embed(["a", "bb", "ccc"]).shape == (3, 8)
    with pytest.raises(LLMError, match="NaN"):
        client(server[1], "nan").score("ab", ["cd"])


def test_api_key_from_the_environment(server, monkeypatch):
    state, url = server
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        client(url, "oracle", api_key_env="MY_KEY")
    monkeypatch.setenv("MY_KEY", "sekrit")
    client(url, "oracle", api_key_env="MY_KEY").generate([GenerationRequest((("user", "hi"),))])
    assert state.headers[-1].get("Authorization") == "Bearer sekrit"


def test_unsupported_verbs_name_the_backend(server):
    c = client(server[1], "oracle", capabilities=("generate",))
    with pytest.raises(ConfigError, match="openai_compat backend does not support 'score' .*supports: generate"):
        c.score("a", ["b"])
    with pytest.raises(ConfigError, match="does not support 'embed'"):
        c.embed(["a"])
    with pytest.raises(ConfigError, match="reranking needs 'generate'"):
        LLMRanker(client(server[1], "oracle", capabilities=("embed",)), TEXTS)
    with pytest.raises(ConfigError, match="unknown capabilities"):
        client(server[1], "oracle", capabilities=("think",))


def test_bad_config():
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatClient(base_url="localhost:8000")
    with pytest.raises(ConfigError, match="timeout_s"):
        OpenAICompatClient(timeout_s=0)


def test_retry_after_forms():
    assert _retry_after("1.5", 9.0) == 1.5 and _retry_after(None, 9.0) == 9.0 and _retry_after("soon", 9.0) == 9.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 9.0) == 0.0


def test_position_bias_of_a_consistent_and_an_echoing_model(server):
    _, url = server
    assert LLMRanker(client(url, "oracle"), TEXTS).position_bias(HISTORIES, CANDIDATES, shuffles=3) == 1.0
    ranker = LLMRanker(client(url, "prose"), TEXTS)
    tau = ranker.position_bias(HISTORIES, CANDIDATES, shuffles=3)
    assert -1.0 <= tau <= 1.0 and ranker.stats.to_dict()["position_bias_tau"] == tau


def test_cli_ping_writes_usage_to_a_run_folder(server, tmp_path, capsys):
    _, url = server
    out = tmp_path / "ping"
    assert main(["llm", "ping", "--backend", "openai_compat", "--set", f"base_url={url}", "--set", "model=oracle",
                 "--out", str(out), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generate"]["text"] == "[]" and result["embed"]["dim"] == 8
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "llm-ping" and run["llm"]["requests"] == 4
    assert main(["llm", "ping", "--backend", "openai_compat", "--set", f"base_url={url}", "--set", "model=empty"]) == 1
    assert "no choices" in capsys.readouterr().err
