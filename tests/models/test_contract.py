"""The contract every registered model honours, parametrized over ``registry.MODELS`` (later models join by
registering). A model may shrink its test-time cost with a class attribute ``test_config``: a config instance, or a
dict of overrides of the default config."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from recforge import registry
from recforge.config import from_dict, to_dict
from recforge.data.split import leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, NotFittedError, UnknownIdError
from recforge.evaluate.evaluator import evaluate
from recforge.models.base import Recommender, load_model
from recforge.protocols import HistoryScorer

NAMES = sorted(registry.MODELS)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def make(name: str) -> Recommender:
    """A fresh, unfitted model with its ``test_config`` overrides applied."""
    cls = registry.get_model(name)
    cfg = getattr(cls, "test_config", {})
    if isinstance(cfg, dict):
        cfg = from_dict(cls.config_class, _merge(to_dict(cls.config_class()), cfg))
    return cls(cfg)


@pytest.fixture(scope="module")
def split():
    """Planted user-cluster x item-cluster structure: 300 users, 200 items, 20 events each."""
    return leave_last_out(planted_clusters(n_users=300, n_items=200, events_per_user=20, seed=7))


_FITTED: dict[str, Recommender] = {}


@pytest.fixture()
def fitted(split, request) -> Recommender:
    """One fit per model per session (fitting is the slow part); the test that fits first checks fit returns self."""
    name = request.param
    if name not in _FITTED:
        model = make(name)
        assert model.fit(split.train) is model, "fit must return self"
        _FITTED[name] = model
    return _FITTED[name]


def by_name(test):
    return pytest.mark.parametrize("fitted", NAMES, indirect=True)(test)


@by_name
def test_score_shape_and_padding_column(fitted, split):
    users = np.arange(1, 8)
    scores = fitted.score(users)
    assert scores.shape == (7, split.train.n_items + 1)
    assert scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()


@by_name
def test_score_is_batch_invariant(fitted):
    users = np.arange(1, 40)
    together = fitted.score(users)
    apart = torch.cat([fitted.score(users[:13]), fitted.score(users[13:])])
    torch.testing.assert_close(together, apart, rtol=1e-5, atol=1e-5)


@by_name
def test_score_histories(fitted, split):
    if not isinstance(fitted, HistoryScorer):
        with pytest.raises(ConfigError):
            fitted.recommend_history(list(split.train.item_vocab.decode(np.array([1, 2]))), k=5)
        return
    items, offsets = split.train.sequences()
    hists = [items[offsets[u] : offsets[u + 1]] for u in (1, 2, 3)]
    scores = fitted.score_histories(hists)
    assert scores.shape == (3, split.train.n_items + 1)
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()
    one = fitted.score_histories(hists[1:2])
    torch.testing.assert_close(scores[1:2], one, rtol=1e-5, atol=1e-5)
    with pytest.raises(UnknownIdError):
        fitted.score_histories([np.array([split.train.n_items + 5])])
    known = list(split.train.item_vocab.decode(hists[0]))
    recs, ignored = fitted.recommend_history(known + ["never-seen"], k=5)
    assert ignored == ["never-seen"] and len(recs.items[0]) == 5 and not set(known) & set(recs.items[0])
    for bad_k in (0, -3, split.train.n_items + 1):
        with pytest.raises(ConfigError, match="k must be in"):
            fitted.recommend_history(known, k=bad_k)


@by_name
def test_recommend_masks_seen_items(fitted, split):
    users = list(split.train.user_vocab.decode(np.arange(1, 31)))
    recs = fitted.recommend(users, k=10)
    seen = split.train.to_csr()
    for user, items in zip(recs.users, recs.items):
        dense = split.train.user_vocab.encode([user])[0]
        assert len(items) == 10
        assert not set(split.train.item_vocab.encode(items)) & set(seen[[dense]].indices), user
        assert all(s1 >= s2 for s1, s2 in zip(recs.scores[0], recs.scores[0][1:]))


@by_name
def test_unknown_user_policy(fitted, split):
    known = split.train.user_vocab.decode(np.array([1]))[0]
    with pytest.raises(UnknownIdError):
        fitted.recommend([known, "nobody"], k=5, on_unknown="raise")
    recs = fitted.recommend([known, "nobody"], k=5, on_unknown="popular")
    assert recs.fallback == [False, True]
    top_popular = split.train.item_vocab.decode(np.argsort(-split.train.item_counts()[1:], kind="stable")[:5] + 1)
    assert set(recs.items[1]) == set(top_popular[:5]) or len(set(recs.items[1]) & set(top_popular)) >= 4  # ties
    skipped = fitted.recommend([known, "nobody"], k=5, on_unknown="skip")
    assert skipped.users == [known]


@by_name
def test_deterministic_with_seed(fitted, split):
    again = make(fitted.name).fit(split.train)
    users = np.arange(1, 50)
    assert torch.equal(fitted.score(users), again.score(users)), "same config and seed must give identical scores"


@by_name
def test_save_load_round_trip(fitted, split, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(fitted) and loaded.config == fitted.config
    users = np.arange(1, split.train.n_users + 1)
    assert torch.equal(fitted.score(users), loaded.score(users))
    ext = list(split.train.user_vocab.decode(users[:5]))
    assert fitted.recommend(ext, k=5).items == loaded.recommend(ext, k=5).items
    if isinstance(fitted, HistoryScorer):
        hist = [np.array([1, 5, 9])]
        assert torch.equal(fitted.score_histories(hist), loaded.score_histories(hist))


@pytest.fixture(scope="module")
def random_ndcg(split) -> dict[str, float]:
    return evaluate(make("random").fit(split.train), split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]


@by_name
def test_beats_random_on_planted_signal(fitted, split, random_ndcg):
    if fitted.name == "random":
        pytest.skip("random is the baseline itself")
    report = evaluate(fitted, split, metrics=("ndcg@10",), progress=False)
    ours = report.metrics["ndcg@10"]
    # Confidence intervals must not overlap: a clear win, not a lucky draw.
    assert ours["ci_low"] > random_ndcg["ci_high"], (fitted.name, ours, random_ndcg)


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_model_refuses_to_score(name):
    with pytest.raises(NotFittedError):
        make(name).score([1])


@pytest.mark.parametrize("name", NAMES)
def test_unknown_config_key_is_a_config_error(name):
    cls = registry.get_model(name)
    with pytest.raises(ConfigError, match="no_such_key"):
        from_dict(cls.config_class, {"no_such_key": 1})


@pytest.mark.parametrize("name", NAMES)
def test_config_is_frozen_and_round_trips(name):
    cfg = make(name).config
    fields = dataclasses.fields(cfg)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, fields[0].name, getattr(cfg, fields[0].name))
    assert from_dict(type(cfg), to_dict(cfg)) == cfg
