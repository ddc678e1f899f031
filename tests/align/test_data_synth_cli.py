"""``recforge data synth preferences``: each world written as a PreferencePairs parquet whose labels agree with the
ground truth written beside it; the utility world's log and pairs load together; bad options refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recforge.cli import main
from recforge.data.interactions import Interactions
from recforge.data.preferences import PreferencePairs


def test_cyclic_pairs_follow_the_cycle(tmp_path: Path) -> None:
    out = tmp_path / "cyclic.parquet"
    assert main(["data", "synth", "preferences", "cyclic", "--pairs", "500", "--out", str(out)]) == 0
    df = pl.read_parquet(out)
    truth = json.loads(out.with_suffix(".truth.json").read_text())["item_class"]
    assert df.height == 500
    chosen = np.array([truth[i] for i in df["chosen"]])
    rejected = np.array([truth[r[0]] for r in df["rejected"]])
    assert (chosen == (rejected + 1) % 3).all()  # class c+1 beats class c, every pair


def test_sources_world_labels_sources(tmp_path: Path) -> None:
    out = tmp_path / "sources.parquet"
    assert main(["data", "synth", "preferences", "sources", "--pairs", "600", "--out", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df["source"].value_counts().sort("source")["count"].to_list() == [600, 1000, 1000]
    shared = tmp_path / "shared.parquet"
    assert main(["data", "synth", "preferences", "sources", "--part", "shared", "--out", str(shared)]) == 0
    util = json.loads(shared.with_suffix(".truth.json").read_text())["shared_utility"]
    sh = pl.read_parquet(shared)
    agree = np.mean([util[c] > util[r[0]] for c, r in zip(sh["chosen"], sh["rejected"])])
    assert 0.6 < agree < 1.0  # labels drawn from sigmoid(utility difference): mostly, not always, the better one


def test_utility_world_with_its_log(tmp_path: Path) -> None:
    out, log = tmp_path / "utility.parquet", tmp_path / "log.csv"
    assert main(["data", "synth", "preferences", "utility", "--out", str(out), "--log", str(log)]) == 0
    frame = pl.read_csv(log, schema_overrides={"user": pl.String, "item": pl.String})
    data = Interactions.from_frame(frame, user="user", item="item", time="time")
    pairs = PreferencePairs.read_parquet(out, data.user_vocab, data.item_vocab)
    util = json.loads(out.with_suffix(".truth.json").read_text())["utility"]
    assert max(util, key=util.get) == "i0"  # the known optimum
    decode = data.item_vocab.decode
    assert all(util[c] > util[r] for c, r in zip(decode(pairs.chosen), decode(pairs.rejected[:, 0])))


@pytest.mark.parametrize(("argv", "message"), [
    (["cyclic", "--out", "x.csv"], ".parquet"),
    (["cyclic", "--pairs", "0", "--out", "x.parquet"], "--pairs"),
    (["cyclic", "--log", "l.csv", "--out", "x.parquet"], "--log is for the utility world"),
])
def test_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "preferences", *argv]) == 2
    assert message in capsys.readouterr().err
