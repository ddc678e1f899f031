"""protocol-check: flip detection on a hand table, the library function and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recforge.cli import main
from recforge.data.split import leave_last_out
from recforge.errors import ConfigError
from recforge.evaluate.protocol import flips, ordering, protocol_check
from recforge.models.popular import MostPopular
from recforge.models.random import RandomRecommender


def test_flips_hand_table():
    full = {"a": 0.30, "b": 0.20, "c": 0.10}
    sampled = {"a": 0.50, "b": 0.70, "c": 0.60}  # a>b, a>c flip; b>c kept
    got = {(f["full_better"], f["full_worse"]) for f in flips(full, sampled)}
    assert got == {("a", "b"), ("a", "c")}
    assert ordering(sampled) == ["b", "c", "a"]
    assert flips(full, {"a": 3.0, "b": 2.0, "c": 1.0}) == []
    assert flips({"a": 0.1, "b": 0.1}, {"a": 0.0, "b": 1.0}) == []  # a tie is not a flip


def test_protocol_check_on_a_small_log(tiny_log):
    split = leave_last_out(tiny_log, n=1, valid=False)
    models = {"popular": MostPopular().fit(split.train), "random": RandomRecommender().fit(split.train)}
    res = protocol_check(models, split, metrics=("ndcg@10", "hit@10"), n_negatives=20, n_boot=10)
    assert set(res["full"]) == {"popular", "random"}
    for name in models:
        # ranking among 20 negatives can only make a hit easier than ranking among all items
        assert res["sampled"][name]["hit@10"] >= res["full"][name]["hit@10"]
    assert set(res["orderings"]) == {"ndcg@10", "hit@10"}
    assert res["n_negatives"] == 20 and res["split_hash"] == split.hash
    with pytest.raises(ConfigError, match="two models"):
        protocol_check({"popular": models["popular"]}, split)
    with pytest.raises(ConfigError, match="sampling"):
        protocol_check(models, split, sampling="sampled-weird")


def test_protocol_check_cli(cluster_csv: Path, tmp_path: Path, capsys):
    out = tmp_path / "pc.json"
    code = main(["protocol-check", "--data", str(cluster_csv), "popular", "itemknn", "random",
                 "--n-negatives", "10", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "full ranking vs. 10" in text and "itemknn" in text
    res = json.loads(out.read_text())
    assert set(res["full"]) == {"popular", "itemknn", "random"}
    assert main(["protocol-check", "--data", str(cluster_csv), "popular"]) == 2
    assert main(["protocol-check", "--data", str(cluster_csv), "popular", "random", "--n-negatives", "0"]) == 2
    assert main(["protocol-check", "--data", str(cluster_csv), "popular", "nosuchmodel"]) == 2
