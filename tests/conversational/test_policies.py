"""Every registered CRS policy through the simulator on the planted world: success above random, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recforge.cli.crs import train_run
from recforge.conversational.episode import simulate
from recforge.conversational.scorer import ScorerConfig
from recforge.conversational.state import CRSSetting
from recforge.conversational.train import CRSRunConfig, load_policy, make_policy
from recforge.errors import ConfigError, NotFittedError
from recforge.registry import CRS_POLICIES, resolve

EPISODES = 150  # test dialogues per policy
TRAIN_EPISODES = 200  # simulated training dialogues (EAR, SCPR)


def _sr(world, setting, policy) -> float:
    return simulate(policy, world, setting, episodes=EPISODES, seed=1).metrics[f"sr@{setting.max_turns}"]["mean"]


@pytest.fixture(scope="module")
def random_sr(world, setting):
    return {mode: _sr(world, s, make_policy("random", world, s, None))
            for mode, s in (("binary", setting), ("multiple_choice", CRSSetting(mode="multiple_choice", max_turns=8, list_size=5)))}


def test_registry_lists_all_issue_policies():
    assert set(CRS_POLICIES) == {"random", "max-entropy", "ear", "scpr", "fact-crs"}
    for name in CRS_POLICIES:
        assert resolve("crs_policy", name).name == name


@pytest.mark.parametrize("mode", ["binary", "multiple_choice"])
@pytest.mark.parametrize("name", ["max-entropy", "fact-crs", "scpr", "ear"])
def test_policy_beats_random(world, setting, scorer, random_sr, name, mode):
    s = setting if mode == "binary" else CRSSetting(mode="multiple_choice", max_turns=8, list_size=5)
    policy = make_policy(name, world, s, scorer)
    if policy.trainable:
        policy.fit(world, TRAIN_EPISODES, seed=0)
    sr = _sr(world, s, policy)
    # random is far from perfect here (short lists, 8 turns); binary margins are wide, the menu setting is easier
    # (EAR included: measured 0.61 vs 0.39 binary, 0.89 vs 0.73 multiple choice)
    margin = 0.05 if mode == "binary" else 0.02
    assert sr > random_sr[mode] + margin, (name, mode, sr, random_sr[mode])


def test_random_is_well_below_perfect(random_sr):
    assert random_sr["binary"] < 0.6


def test_trainable_policy_is_deterministic(world, setting, scorer):
    runs = []
    for _ in range(2):
        p = make_policy("scpr", world, setting, scorer)
        p.fit(world, 60, seed=5)
        runs.append(simulate(p, world, setting, episodes=40, seed=2).turns)
    assert np.array_equal(*runs)


@pytest.mark.parametrize("name", ["random", "fact-crs", "ear"])
def test_run_folder_roundtrip(world, tmp_path, name):
    cfg = CRSRunConfig(data="unused", policy={"name": name}, setting=CRSSetting(max_turns=8, list_size=5),
                       scorer=ScorerConfig(dim=8, epochs=2, batch_size=512), train_episodes=30, eval_episodes=40)
    policy, report, meta = train_run(cfg, tmp_path / "run", dataset=world)
    for f in ("config.toml", "metrics.json", "run.json", "success_curve.png", "artifact/meta.json",
              "artifact/weights.safetensors", "train.log"):
        assert (tmp_path / "run" / f).exists(), f
    again, _ = load_policy(tmp_path / "run", dataset=world)
    replay = simulate(again, world, cfg.setting, episodes=40, seed=cfg.seed)
    assert np.array_equal(replay.turns, report.turns)
    assert set(meta) == {"timings", "train_stats"}
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["kind"] == "crs-train" and run["name"] == name and run["policy"] == name
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert metrics["sr@8"]["ci_low"] <= metrics["sr@8"]["mean"] <= metrics["sr@8"]["ci_high"]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("scpr", {"gamma": 0.0}, "gamma"),
        ("scpr", {"eps_start": 0.1, "eps_end": 0.5}, "eps_end"),
        ("ear", {"n_attrs": 0}, "n_attrs"),
        ("ear", {"pretrain_fraction": 2.0}, "pretrain_fraction"),
        ("fact-crs", {"feature_fraction": 0.0}, "feature_fraction"),
        ("fact-crs", {"n_trees": 0}, "n_trees"),
        ("max-entropy", {"recommend_prob": -1.0}, "recommend_prob"),
        ("random", {"ask_prob": 1.5}, "ask_prob"),
        ("random", {"bogus": 1}, "unknown config key"),
        ("random", {"ask_prob": "high"}, "random.ask_prob: expected float"),
        ("nope", {}, "unknown crs_policy"),
    ],
)
def test_bad_policy_configs(world, setting, scorer, name, params, message):
    with pytest.raises(ConfigError, match=message):
        make_policy({"name": name, **params}, world, setting, scorer)


def test_run_config_checks_the_policy_up_front():
    with pytest.raises(ConfigError, match="policy.name is required"):
        CRSRunConfig(policy={"hidden": 3})
    with pytest.raises(ConfigError, match="policy.hidden"):
        CRSRunConfig(policy={"name": "scpr", "hidden": "wide"})
    with pytest.raises(ConfigError, match="mode: expected one of"):
        CRSSetting(mode="open")


def test_scorer_required_and_forest_required(world, setting, scorer):
    with pytest.raises(ConfigError, match="needs a trained scorer"):
        make_policy("scpr", world, setting, None)
    with pytest.raises(NotFittedError):
        simulate(make_policy("fact-crs", world, setting, scorer), world, setting, episodes=2)


def test_docs_config_example_is_a_valid_run_config(tmp_path):
    import re
    from pathlib import Path

    from recforge.config import from_dict, load_toml

    doc = (Path(__file__).parents[2] / "docs" / "conversational.md").read_text()
    block = re.search(r"^```toml\n(.*?)^```", doc, re.S | re.M).group(1)
    (tmp_path / "c.toml").write_text(block)
    cfg = from_dict(CRSRunConfig, load_toml(tmp_path / "c.toml"))
    assert cfg.policy == {"name": "scpr", "hidden": 32} and cfg.setting.mode == "multiple_choice"
