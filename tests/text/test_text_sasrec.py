"""text_sasrec on a planted world whose item text names the item's group: cold items (no training interaction) and
items added after training are ranked from their text; every tower learns; calibration moves cold items up; the
state round-trips with added items."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recforge.data.catalog import ItemCatalog
from recforge.data.cold import cold_item_holdout, cold_items
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError
from recforge.models.base import load_model
from recforge.models.text_sasrec import TextSASRec
from recforge.protocols import ItemSide, ItemSideSpec
from recforge.testing import GROUP_WORDS, contract_catalog
from recforge.text.side import add_catalog_items, bind_items

FAST = {"embedder": {"name": "hashing", "dim": 64}, "dim": 32, "n_layers": 1, "n_heads": 1, "max_len": 20,
        "train": {"epochs": 6, "batch_size": 64, "lr": 3e-3, "threads": 1, "seed": 0}}


@pytest.fixture(scope="module")
def world():
    data = planted_clusters(n_users=300, n_items=200, events_per_user=20, p_in_cluster=0.9, seed=5)
    split = cold_item_holdout(data, frac=0.2, seed=0, min_history=5)
    return split, contract_catalog(split)


def fit(world, **over):
    split, catalog = world
    model = TextSASRec(**{**FAST, **over})
    bind_items(model, catalog, split.train, use_cache=False)
    return model.fit(split.train, split.valid)


def cold_hits(model, split, among_all: bool = False) -> float:
    """HR@10 of the cold test targets, ranked among the cold items (or among all unseen items)."""
    users, targets = split.test.user.copy(), split.test.item.copy()
    scores = model.score(users).clone()
    seen = model.seen_[users]
    scores[torch.from_numpy(np.repeat(np.arange(len(users)), np.diff(seen.indptr))),
           torch.from_numpy(seen.indices.astype(np.int64))] = -torch.inf
    if not among_all:
        keep = torch.zeros(scores.shape[1], dtype=torch.bool)
        keep[torch.from_numpy(cold_items(split))] = True
        scores[:, ~keep] = -torch.inf
    rank = (scores > scores[torch.arange(len(users)), torch.from_numpy(targets)][:, None]).sum(1)
    return float((rank < 10).float().mean())


@pytest.mark.parametrize("tower", ["text", "attr", "text+attr", "text+id"])
def test_cold_items_are_found_from_their_side_information(world, tower):
    split, _ = world
    n_cold = len(cold_items(split))
    hr = cold_hits(fit(world, tower=tower, calibration="none"), split)
    # chance is 10 / 40 cold items; the group carries the signal (8 cold items per group, 90 % of events in-group)
    assert hr > 2.5 * 10 / n_cold, (tower, hr)


def test_calibration_lifts_cold_items_among_all(world):
    split, _ = world
    plain, calibrated = fit(world, calibration="none"), fit(world, calibration="valid")
    assert calibrated.cold_offset_ > 0
    assert cold_hits(calibrated, split, among_all=True) > cold_hits(plain, split, among_all=True) + 0.1


def test_calibration_without_signal_keeps_the_scores(world):
    split, _ = world
    model = fit(world, calibration="none")
    users = np.unique(split.train.user)[:20]
    # every target is one of the user's own training items: masked, so no offset can rank it and all tie at NDCG 0
    targets = np.array([model.seen_[[u]].indices[0] for u in users])
    model._calibrate(SimpleNamespace(user=users, item=targets))
    assert model.cold_offset_ == 0.0


def test_added_items_are_ranked_from_their_text(world, tmp_path):
    split, catalog = world
    model = fit(world, calibration="none")
    groups = split.train.meta["user_cluster"]
    user = next(u for u in range(300) if groups[u] == 2)
    bigger = ItemCatalog.from_records([*catalog.item_vocab.ids, "new-love", "new-space"],
                                      text=[*catalog.text[1:], GROUP_WORDS[2], GROUP_WORDS[1]])
    added = add_catalog_items(model, bigger, model.item_vocab, ItemSideSpec(embedder={"name": "hashing", "dim": 64}))
    assert added == ["new-love", "new-space"] and model.n_items == 202
    dense = int(model.user_vocab.encode([f"u{user}"])[0])
    scores = model.score(np.array([dense]))[0]
    love, space = scores[201], scores[202]
    # the new item shares its text with the 40 items of the user's group, so it ties with them at the top
    assert int((scores > love + 1e-5).sum()) < 45 and love > space + 1.0
    path = model.save(tmp_path / "m")
    again = load_model(path)
    torch.testing.assert_close(again.score(np.array([dense]))[0], scores)
    with pytest.raises(ConfigError, match="width"):
        model.add_items(ItemSide(item_ids=["x"], vectors=np.zeros((2, 8), np.float32)))


def test_bad_configs_and_unbound_fit():
    with pytest.raises(ConfigError, match="temperature"):
        TextSASRec(temperature=0.0)
    with pytest.raises(ConfigError, match="id_dropout"):
        TextSASRec(id_dropout=1.0)
    with pytest.raises(ConfigError, match="tower"):
        TextSASRec(tower="image")
    data = planted_clusters(n_users=20, n_items=20, events_per_user=5, seed=1)
    with pytest.raises(ConfigError, match="bound before fit"):
        TextSASRec(**FAST).fit(data)
