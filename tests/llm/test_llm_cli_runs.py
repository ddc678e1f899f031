"""LLM models built from a TOML run config end to end: ``recforge train`` builds the toolkit over the configured
backend and the dataset's item texts, records its counters in run.json, and ``recforge evaluate`` re-attaches it."""

from __future__ import annotations

import json

from recforge.cli import main
from recforge.experiments.runs import load_run

CONFIG = """
[model]
name = "llm_rerank"
n_candidates = 10
base = {name = "popular"}
llm = {name = "mock", replies = ['["i1000", "no such id"]']}
[eval]
metrics = ["ndcg@10", "hit@10"]
n_boot = 20
"""


def test_llm_rerank_trains_and_evaluates_from_toml(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    out, base = tmp_path / "rerank", tmp_path / "popular"
    assert main(["train", "llm_rerank", "--config", str(cfg), "--out", str(out)]) == 0
    assert main(["train", "popular", "--set", "eval.n_boot=20", "--set", "eval.metrics=['ndcg@10','hit@10']",
                 "--out", str(base)]) == 0
    meta = json.loads((out / "run.json").read_text())
    ranking = meta["llm"]["ranking"]
    run = load_run(out)
    n_eval = sum(run.metrics[part]["_info"]["n_users"] for part in ("valid", "test"))
    assert meta["llm"]["backend"] == "mock" and ranking["answers"] == n_eval  # one prompt per evaluated user
    assert ranking["invention_rate"] == 1.0 and ranking["fill_rate"] == 1.0  # every id invented: base order kept
    ours, theirs = run.metrics["test"], load_run(base).metrics["test"]
    assert ours["ndcg@10"]["mean"] == theirs["ndcg@10"]["mean"]
    assert main(["evaluate", str(out)]) == 0  # the saved model gets its toolkit back (the mock answers again)
    model = load_run(out).model
    assert model.toolkit is not None and model.reranker is model.toolkit and model.toolkit.client.name == "mock"
