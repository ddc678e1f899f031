"""Multiple seeds: the t-interval on a hand table and `recforge train --seeds`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats as sst

from recforge.cli import main
from recforge.errors import ConfigError
from recforge.experiments.seeds import aggregate, seed_ci


def test_seed_ci_hand_values():
    res = seed_ci([0.1, 0.2, 0.3])  # mean .2, sd .1, t_{.975, 2} = 4.302653
    half = sst.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert res["mean"] == pytest.approx(0.2) and res["std"] == pytest.approx(0.1)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    one = seed_ci([0.4])
    assert one["ci_low"] == one["ci_high"] == 0.4 and math.isnan(one["std"])
    with pytest.raises(ConfigError):
        seed_ci([])


def test_aggregate_keeps_common_metrics():
    per_seed = {0: {"ndcg@10": {"mean": 0.1}, "x@1": {"mean": 1.0}}, 1: {"ndcg@10": {"mean": 0.3}}}
    agg = aggregate(per_seed)
    assert list(agg) == ["ndcg@10"] and agg["ndcg@10"]["mean"] == pytest.approx(0.2)


def test_train_seeds_cli(cluster_csv: Path, tmp_path: Path, capsys):
    out = tmp_path / "seeds"
    code = main(["train", "random", "--data", str(cluster_csv), "--seeds", "3", "--seed", "5", "--out", str(out),
                 "--set", "eval.n_boot=10"])
    assert code == 0
    res = json.loads((out / "seeds.json").read_text())
    assert res["seeds"] == [5, 6, 7]
    assert all((out / f"seed-{s}" / "run.json").is_file() for s in res["seeds"])
    vals = [res["per_seed"][str(s)]["ndcg@10"]["mean"] for s in res["seeds"]]
    assert len(set(vals)) > 1  # the random model really used different seeds
    agg = res["aggregate"]["ndcg@10"]
    assert agg["mean"] == pytest.approx(sum(vals) / 3) and agg["ci_low"] <= agg["mean"] <= agg["ci_high"]
    assert "across seeds" in capsys.readouterr().out
    assert main(["train", "random", "--data", str(cluster_csv), "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
