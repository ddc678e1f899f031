"""`recforge bandit simulate` and `recforge ope` through recforge.cli.main."""

import json

import numpy as np
import pytest

from recforge.cli import main


def test_simulate_writes_curves_and_summary(tmp_path):
    out = tmp_path / "sim"
    rc = main(["bandit", "simulate", "--env", "recovering", "--policy", "periodic", "--policy", "ucb1",
               "--rounds", "1500", "--env-set", "n_arms=4", "--set", "ucb1.c=1.0", "--out", str(out)])
    assert rc == 0
    for name in ("regret.png", "reward.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    runs = {r["policy"]: r for r in summary["runs"]}
    assert summary["env_params"] == {"n_arms": 4} and runs["ucb1"]["rounds"] == 1500
    assert runs["periodic"]["mean_expected_reward"] > runs["ucb1"]["mean_expected_reward"]


def test_simulate_repeats_report_a_ci(tmp_path):
    out = tmp_path / "rep"
    rc = main(["bandit", "simulate", "--env", "contextual", "--env-set", "dim=1", "--policy", "ucb1", "--policy", "uniform",
               "--rounds", "800", "--repeats", "4", "--out", str(out)])
    assert rc == 0
    runs = {r["policy"]: r for r in json.loads((out / "summary.json").read_text())["runs"]}
    ucb = runs["ucb1"]
    assert ucb["repeats"] == 4 and len(set(ucb["regret_per_run"])) == 4  # independent runs differ
    assert ucb["regret_ci"][0] <= ucb["cumulative_regret"] <= ucb["regret_ci"][1]
    assert runs["uniform"]["regret_ci"][0] > ucb["regret_ci"][1]  # UCB1 clearly beats uniform


def test_ope_on_csv_logs(tmp_path, obd_csv):
    logs = obd_csv(tmp_path / "rnd" / "rnd.csv", n=600, n_items=5, seed=1)
    truth = obd_csv(tmp_path / "on" / "on.csv", n=600, n_items=5, seed=2)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"action_dist": [0.6, 0.1, 0.1, 0.1, 0.1]}))
    out = tmp_path / "ope.json"
    rc = main(["ope", "--logs", str(logs), "--policy", str(policy), "--truth-logs", str(truth), "--n-boot", "100",
               "--out", str(out)])
    assert rc == 0
    payload = json.loads(out.read_text())
    names = [e["estimator"] for e in payload["estimates"]]
    assert names == ["dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os"]
    for e in payload["estimates"]:
        assert e["ci_low"] <= e["value"] <= e["ci_high"]
    ips = payload["estimates"][1]
    # hand check of IPS: mean of pi_e(a)/pscore * click
    import polars as pl

    df = pl.read_csv(logs)
    dist = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
    expected = np.mean(dist[df["item_id"].to_numpy()] / df["propensity_score"].to_numpy() * df["click"].to_numpy())
    assert ips["value"] == pytest.approx(expected)
    assert payload["truth"] == pytest.approx(pl.read_csv(truth)["click"].mean())


def test_ope_uniform_ips_equals_mean_click(tmp_path, obd_csv):
    logs = obd_csv(tmp_path / "u.csv", n=300, n_items=4)
    out = tmp_path / "o.json"
    assert main(["ope", "--logs", str(logs), "--policy", "uniform", "--estimators", "ips", "--out", str(out)]) == 0
    import polars as pl

    assert json.loads(out.read_text())["estimates"][0]["value"] == pytest.approx(pl.read_csv(logs)["click"].mean())


def test_replay_command(tmp_path, obd_csv, capsys):
    logs = obd_csv(tmp_path / "r.csv", n=2000, n_items=4)
    assert main(["bandit", "replay", "--logs", str(logs), "--policy", "ucb1", "--policy", "epsilon-greedy",
                 "--set", "epsilon-greedy.epsilon=0.2"]) == 0
    out = capsys.readouterr().out
    assert "ucb1" in out and "epsilon-greedy" in out and "(logging policy)" in out
    assert main(["bandit", "replay", "--logs", str(logs), "--policy", "ucb1", "--set", "linucb.alpha=1"]) == 2


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["bandit", "simulate", "--env", "contextual", "--policy", "ucb1", "--set", "linucb.alpha=1", "--out", "X"], 2,
         "policies not being run"),
        (["bandit", "simulate", "--env", "contextual", "--policy", "ucb1", "--env-set", "n_actions=1", "--out", "X"], 2,
         "n_actions"),
        (["bandit", "simulate", "--env", "nope", "--policy", "ucb1", "--out", "X"], 2, ""),
        (["bandit", "simulate", "--env", "contextual", "--policy", "ucb1", "--repeats", "0", "--out", "X"], 2, "--repeats"),
        (["ope", "--logs", "LOGS", "--policy", "bernoulli-ts"], 2, "needs --prior"),
        (["ope", "--logs", "LOGS", "--policy", "bernoulli-ts", "--prior", "obd-kids"], 2, "--prior must be one of"),
        (["ope", "--logs", "LOGS", "--policy", "greedy"], 2, "--policy must be"),
        (["ope", "--logs", "LOGS", "--policy", "uniform", "--estimators", "rips"], 2, "slate estimator"),
        (["ope", "--logs", "MISSING", "--policy", "uniform"], 1, "file not found"),
    ],
)
def test_cli_errors(tmp_path, obd_csv, capsys, argv, code, message):
    logs = obd_csv(tmp_path / "l.csv", n=50, n_items=4)
    argv = [str(logs) if a == "LOGS" else str(tmp_path / "missing.csv") if a == "MISSING" else
            str(tmp_path / "out") if a == "X" else a for a in argv]
    assert main(argv) == code
    assert message in capsys.readouterr().err


@pytest.mark.realdata
def test_ope_open_bandit_bts_from_random(obd_root, tmp_path):
    out = tmp_path / "obd.json"
    rc = main(["ope", "--logs", str(obd_root / "random" / "all"), "--policy", "bernoulli-ts", "--prior", "obd-all",
               "--truth-logs", str(obd_root / "bts" / "all"), "--n-sim", "20000", "--n-boot", "200", "--out", str(out)])
    assert rc == 0
    payload = json.loads(out.read_text())
    assert payload["truth"] == pytest.approx(0.0042)  # 42 clicks in 10,000 BTS impressions
    for e in payload["estimates"]:
        # ~40 clicks: every estimate is noisy, but each must land within a factor 2 of the on-policy value
        assert 0.5 * payload["truth"] < e["value"] < 2 * payload["truth"], e
