"""Reward models: the synthetic targets (GPM on cyclic pairs, MORE on several sources), calibration, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.align.checks import SYNTH_CONFIG, cyclic_check, sources_check
from recforge.align.evaluation import (
    calibrate,
    fit_temperature,
    list_reward,
    pair_report,
    report_from_margins,
)
from recforge.align.reward import BradleyTerryRM, GeneralPreferenceRM, agreement_weights, load_reward_model
from recforge.align.synthetic import cyclic_pairs, multi_source_pairs
from recforge.errors import ConfigError, DataError, UnknownIdError


@pytest.fixture(scope="module")
def cyclic() -> dict:
    return cyclic_check(seed=0)


def test_gpm_learns_cycles_bt_cannot(cyclic: dict) -> None:
    assert cyclic["rm_gpm"]["accuracy"] >= 0.95
    assert abs(cyclic["rm_bt"]["accuracy"] - 0.5) < 0.08


def test_more_lowers_shared_preference_ece() -> None:
    res = sources_check(seed=0)
    assert res["ece_reduction"] >= 0.20
    assert res["more"]["raw"]["accuracy"] > res["uniform"]["raw"]["accuracy"]


def test_gpm_logits_are_antisymmetric_and_persist(tmp_path) -> None:
    pairs = cyclic_pairs(600, seed=3)
    model = GeneralPreferenceRM(SYNTH_CONFIG, epochs=2).fit(pairs)
    hist = pairs.histories()
    a = np.asarray(pairs.chosen)[:, None]
    b = np.asarray(pairs.rejected)
    ab, ba, aa = model.preference_logits(hist, a, b), model.preference_logits(hist, b, a), \
        model.preference_logits(hist, a, a)
    assert torch.allclose(ab, -ba, atol=1e-5) and torch.allclose(aa, torch.zeros_like(aa), atol=1e-5)
    model.temperature = 1.7
    model.save(tmp_path / "rm")
    again = load_reward_model(tmp_path / "rm")
    assert again.temperature == 1.7 and again.name == "rm_gpm"
    assert torch.equal(again.preference_logits(hist, a, b), model.preference_logits(hist, a, b))


def test_bt_reward_differences_are_its_logits() -> None:
    pairs = cyclic_pairs(300, seed=4)
    model = BradleyTerryRM(SYNTH_CONFIG, epochs=1).fit(pairs)
    hist = pairs.histories()
    a, b = np.asarray(pairs.chosen)[:, None], np.asarray(pairs.rejected)
    r = model.reward(hist, np.concatenate([a, b], axis=1))
    assert torch.allclose(r[:, :1] - r[:, 1:], model.preference_logits(hist, a, b), atol=1e-5)


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 50_000)
    wins = rng.random(len(true_logits)) < 1 / (1 + np.exp(-true_logits))
    margins = np.where(wins, true_logits, -true_logits) * 3.0  # over-confident by a factor of 3
    assert fit_temperature(margins) == pytest.approx(3.0, rel=0.05)


def test_calibration_lowers_ece_of_an_overconfident_model() -> None:
    world = multi_source_pairs(sizes=(3000,), source_noise=(0.0,), seed=1)
    model = BradleyTerryRM(SYNTH_CONFIG, epochs=6).fit(world["train"], world["valid"])
    model.temperature = 0.25  # 4x over-confident
    before = pair_report(model, world["shared"]).ece
    calibrate(model, world["valid"])
    assert pair_report(model, world["shared"]).ece < before


def test_report_names_nan_rewards() -> None:
    pairs = cyclic_pairs(10, seed=0)
    margins = np.zeros((10, 1))
    margins[3] = np.nan
    with pytest.raises(DataError, match="non-finite.*row\\(s\\) 3"):
        report_from_margins(margins, pairs)


def test_list_reward_names_nan_rows() -> None:
    class NaNModel(BradleyTerryRM):
        def win_rate(self, histories, items, against):  # noqa: ANN001, ANN202 - a broken reward model
            return torch.full(np.asarray(items).shape, float("nan"))

    with pytest.raises(DataError, match="non-finite"):
        list_reward(NaNModel(), [np.array([1])], np.array([[1, 2]]), np.array([[3]]))


def test_agreement_weights_mute_the_odd_source() -> None:
    g = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.2]])
    w = agreement_weights(g)
    assert w.sum().item() == pytest.approx(1.0) and w[2] < 0.05


def test_bad_configs_and_ids() -> None:
    with pytest.raises(ConfigError, match="n_heads"):
        BradleyTerryRM(dim=10, n_heads=3)
    with pytest.raises(ConfigError, match="lr"):
        GeneralPreferenceRM(lr=0.0)
    pairs = cyclic_pairs(200, seed=0)
    model = BradleyTerryRM(SYNTH_CONFIG, epochs=1).fit(pairs)
    with pytest.raises(UnknownIdError):
        model.preference_logits([np.array([1])], np.array([[999]]), np.array([[1]]))
