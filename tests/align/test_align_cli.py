"""``recforge rm train|evaluate|synth`` and ``recforge align`` end to end on a small log, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from recforge.cli import main
from recforge.experiments.runs import load_run
from recforge.serve.app import create_app
from recforge.serve.settings import ServeSettings

SASREC = ["--set", "model.dim=16", "--set", "model.n_layers=1", "--set", "model.n_heads=1", "--set", "model.max_len=10",
          "--set", "model.train.epochs=2", "--set", "eval.n_boot=50"]
RM = ["--set", "dim=16", "--set", "max_len=10", "--set", "epochs=2", "--set", "dropout=0.0"]


@pytest.fixture(scope="module")
def runs(cluster_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("align")
    out = {"root": root, "sasrec": root / "sasrec", "rm": root / "rm", "knn": root / "knn"}
    assert main(["train", "sasrec", "--data", str(cluster_csv), "--out", str(out["sasrec"]), *SASREC]) == 0
    assert main(["train", "itemknn", "--data", str(cluster_csv), "--out", str(out["knn"]),
                 "--set", "eval.n_boot=50"]) == 0
    assert main(["rm", "train", "rm_bt", "--data", str(cluster_csv), "--out", str(out["rm"]), *RM]) == 0
    return out


def test_rm_train_writes_a_calibrated_run(runs: dict[str, Path]) -> None:
    rm = runs["rm"]
    meta = json.loads((rm / "run.json").read_text())
    metrics = json.loads((rm / "metrics.json").read_text())
    assert meta["kind"] == "reward-model" and meta["temperature"] > 0 and meta["split_hash"]
    assert {"accuracy", "auc", "ece", "log_loss"} <= set(metrics["test_scaled"])
    assert (rm / "reliability.png").is_file() and (rm / "artifact" / "meta.json").is_file()
    assert main(["rm", "evaluate", str(rm), "--json"]) == 0


@pytest.mark.parametrize("method", ["dpo", "sdpo"])
def test_align_writes_a_normal_recommender_run(runs: dict[str, Path], method: str) -> None:
    out = runs["root"] / f"aligned-{method}"
    extra = ["--negatives", "2"] if method == "sdpo" else []
    code = main(["align", str(runs["sasrec"]), "--method", method, "--pairs", "model-hard", "--reward", str(runs["rm"]),
                 "--epochs", "2", "--lr", "1e-3", "--out", str(out), *extra])
    assert code == 0
    run = load_run(out)
    assert run.meta["alignment"]["config"]["method"] == method
    assert "reward@10" in run.metrics["test"] and run.meta["split_hash"] == load_run(runs["sasrec"]).meta["split_hash"]
    assert main(["evaluate", str(out)]) == 0
    assert main(["compare", str(runs["sasrec"]), str(out)]) == 0
    assert main(["recommend", str(out), "--user", "u1", "--json"]) == 0


def test_an_aligned_run_serves_its_own_ranking(runs: dict[str, Path], tmp_path: Path) -> None:
    out = runs["root"] / "aligned-served"
    assert main(["align", str(runs["sasrec"]), "--method", "dpo", "--pairs", "model-hard", "--reward", str(runs["rm"]),
                 "--epochs", "2", "--lr", "1e-2", "--out", str(out)]) == 0
    aligned, reference = load_run(out).model, load_run(runs["sasrec"]).model
    users = ["u1", "u7", "u30"]
    expected = aligned.recommend(users, k=5).items
    assert expected != reference.recommend(users, k=5).items  # alignment moved the ranking, so serving can tell them apart
    with TestClient(create_app(out, ServeSettings(feedback_db=str(tmp_path / "feedback.sqlite")))) as client:
        served = [[r["item"] for r in client.post("/recommend", json={"user_id": u, "k": 5}).json()["items"]]
                  for u in users]
    assert served == expected


def test_rm_bench_scores_a_run_on_the_split_suite(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rm", "bench", str(runs["rm"])]) == 0
    table = capsys.readouterr().out
    assert "heldout-random" in table and "explicit ratings" in table  # the log has no ratings: said, not hidden
    res = json.loads((runs["rm"] / "bench.json").read_text())
    assert {"heldout-random", "heldout-popular", "hard-negatives"} <= set(res)
    test = json.loads((runs["rm"] / "metrics.json").read_text())["test_scaled"]
    assert res["heldout-random"]["accuracy"] == pytest.approx(test["accuracy"])  # the same pairs as rm train's
    # negatives a scorer ranks highly are harder than uniform ones
    assert res["hard-negatives"]["accuracy"] < res["heldout-random"]["accuracy"]


def test_align_ipa_with_a_constraint_writes_a_run_per_round(runs: dict[str, Path]) -> None:
    out = runs["root"] / "aligned-ipa"
    code = main(["align", str(runs["sasrec"]), "--method", "ipa", "--rounds", "2", "--candidates", "6",
                 "--reward", str(runs["rm"]), "--constraint", "coverage@10>=sft", "--constraint", "novelty@10>=sft",
                 "--lr", "1e-3", "--out", str(out)])
    assert code == 0
    run = load_run(out)
    al = run.meta["alignment"]
    assert al["method"] == "ipa" and [r["round"] for r in al["history"]] == [0, 1, 2]
    assert {"reward@10", "kl", "valid", "coverage@10>=sft", "novelty@10>=sft"} <= set(al["history"][1])
    assert set(al["constraints"]) == {"coverage@10>=sft", "novelty@10>=sft"}
    kept = al["history"][al["best_round"]]
    assert kept["feasible"] and kept["valid"] == max(r["valid"] for r in al["history"] if r["feasible"])
    assert "reward@10" in run.metrics["test"]
    assert main(["compare", str(runs["sasrec"]), str(out)]) == 0


def test_align_from_a_pair_file(runs: dict[str, Path], tmp_path: Path) -> None:
    from recforge.data.preferences import build_pairs
    from recforge.experiments.runs import load_data, make_split

    cfg = load_run(runs["sasrec"]).config
    split = make_split(cfg, load_data(cfg).interactions)
    file = build_pairs(split, "popular", k=1).to_parquet(tmp_path / "pairs.parquet")
    assert main(["align", str(runs["sasrec"]), "--pairs", str(file), "--out", str(tmp_path / "run")]) == 0


@pytest.mark.slow  # the same training as test_reward's cyclic target, through the CLI
def test_rm_synth_cyclic() -> None:
    assert main(["rm", "synth", "cyclic", "--json"]) == 0


# ------------------------------------------------------------------------------------------------------ bad inputs
def _pair_file(runs: dict[str, Path], tmp_path: Path, edit) -> Path:  # noqa: ANN001 - a frame -> frame function
    from recforge.data.preferences import build_pairs
    from recforge.experiments.runs import load_data, make_split

    cfg = load_run(runs["sasrec"]).config
    split = make_split(cfg, load_data(cfg).interactions)
    df = edit(build_pairs(split, "random", k=1).to_frame(), split)
    path = tmp_path / "bad.parquet"
    df.write_parquet(path)
    return path


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_bad_pair_files(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = str(runs["sasrec"])
    same = _pair_file(runs, tmp_path, lambda df, s: df.with_columns(pl.col("chosen").alias("rejected")))
    assert main(["align", run, "--pairs", str(same)]) == 1
    assert "equals the chosen item" in _err(capsys)
    unknown = _pair_file(runs, tmp_path, lambda df, s: df.with_columns(pl.lit("nope").alias("chosen")))
    assert main(["align", run, "--pairs", str(unknown)]) == 1
    err = _err(capsys)
    assert "unknown" in err and "'chosen'" in err

    def leak(df: pl.DataFrame, split) -> pl.DataFrame:  # noqa: ANN001 - the split
        user, item = split.test.user_vocab.decode(split.test.user[:1])[0], split.test.item_vocab.decode(
            split.test.item[:1])[0]
        hit = (df["user"] == user).arg_true()[0]
        return df.with_columns(pl.when(pl.int_range(pl.len()) == hit).then(pl.lit(item)).otherwise(pl.col("chosen"))
                               .cast(df["chosen"].dtype).alias("chosen"))

    leaky = _pair_file(runs, tmp_path, leak)
    assert main(["align", run, "--pairs", str(leaky)]) == 1
    assert "leakage" in _err(capsys)
    empty = _pair_file(runs, tmp_path, lambda df, s: df.head(0))
    assert main(["align", run, "--pairs", str(empty)]) == 1
    assert "empty" in _err(capsys)


def test_bad_options(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run = str(runs["sasrec"])
    assert main(["align", run, "--beta", "0"]) == 2
    assert "beta must be > 0" in _err(capsys)
    assert main(["align", run, "--method", "sdpo", "--negatives", "0"]) == 2
    assert "negatives (K) must be >= 1" in _err(capsys)
    assert main(["align", run, "--constraint", "coverage@10>=sft"]) == 2
    assert "--constraint needs --method ipa" in _err(capsys)
    assert main(["align", run, "--method", "ipa"]) == 2
    assert "needs --reward" in _err(capsys)
    assert main(["align", run, "--method", "ipa", "--reward", str(runs["rm"]), "--constraint", "recall@10>=sft"]) == 2
    assert "constraint metric must be one of" in _err(capsys)
    assert main(["align", str(runs["knn"])]) == 2
    err = _err(capsys)
    assert "has no log_prob" in err and "sasrec" in err


def test_reward_model_of_another_split(runs: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import write_cluster_log

    other_log = write_cluster_log(tmp_path / "other.csv", seed=1)
    other = tmp_path / "rm-other"
    assert main(["rm", "train", "rm_bt", "--data", str(other_log), "--out", str(other), *RM]) == 0
    assert main(["align", str(runs["sasrec"]), "--reward", str(other)]) == 1
    assert "another split or catalogue" in _err(capsys)
