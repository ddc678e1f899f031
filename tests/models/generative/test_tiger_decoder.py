"""tiger_decoder on a planted log: beam search is exact when the beam covers the catalogue, the projection head,
training windows, persistence of the SID table's hash, and the bad inputs (beam < k, empty history, a SID table of
another split, a hash mismatch at load, non-unique IDs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recforge.data.split import leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, DataError
from recforge.models.base import load_model
from recforge.models.generative.semantic_ids import SidConfig, build_semantic_ids
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig, training_windows
from recforge.models.rank import mask_seen, top_k
from recforge.train.trainer import TrainConfig

SID = SidConfig(levels=2, codebook_size=16, dim=16, collisions="dedup")
TRAIN = TrainConfig(epochs=4, batch_size=64, lr=1e-2, threads=1)


@pytest.fixture(scope="module")
def split():
    return leave_last_out(planted_clusters(n_users=150, n_items=80, events_per_user=12, seed=3))


@pytest.fixture(scope="module")
def model(split):
    cfg = TigerDecoderConfig(sid_config=SID, dim=32, n_layers=1, n_heads=2, max_items=8, head="projection",
                             beam=10, train=TRAIN)
    return TigerDecoder(cfg).fit(split.train)


def test_beam_covering_every_item_equals_exact(model, split):
    users = np.arange(1, 30)
    wide = dataclasses.replace(model.config, beam=split.train.n_items)
    model.config = dataclasses.replace(wide, decoding="exact")
    exact = model.score(users).clone()
    model.config = wide
    beam = model.score(users).clone()
    seen = split.train.to_csr()[users]
    mask_seen(exact, seen)
    mask_seen(beam, seen)
    assert torch.equal(top_k(exact, 10).items, top_k(beam, 10).items)
    found = beam > -1e8
    assert torch.allclose(beam[found], exact[found], atol=1e-4)
    model.config = dataclasses.replace(model.config, beam=10, decoding="beam")


def test_narrow_beam_returns_valid_unseen_items_with_exact_scores(model, split):
    users = np.arange(1, 20)
    items, scores = model.topk(users, 10)
    model.config = dataclasses.replace(model.config, decoding="exact")
    exact = model.score(users)
    model.config = dataclasses.replace(model.config, decoding="beam")
    seen = split.train.to_csr()
    for u, row, vals in zip(users, items, scores):
        assert (row > 0).all() and not set(row) & set(seen[[u]].indices)
        assert np.allclose(vals, exact[u - 1, row].numpy(), atol=1e-4)


def test_excluded_items_never_take_a_place_in_the_beam(model, split):
    """Excluding the beam's best 8 of 10 still returns 10 items: the beam prunes prefixes whose items are all banned
    (without the pruning, excluded items take beam slots and 4 of these 19 users get 8 or 9 items); the scores stay
    exact log-likelihoods."""
    users = np.arange(1, 20)
    first, _ = model.topk(users, 10)
    excluded = [row[:8] for row in first]
    items, scores = model.topk(users, 10, exclude=excluded)
    model.config = dataclasses.replace(model.config, decoding="exact")
    exact = model.score(users)
    model.config = dataclasses.replace(model.config, decoding="beam")
    seen = split.train.to_csr()
    for u, row, vals, ban in zip(users, items, scores, excluded):
        assert (row > 0).all() and not set(row) & set(ban) and not set(row) & set(seen[[u]].indices)
        assert np.allclose(vals, exact[u - 1, row].numpy(), atol=1e-4)


def test_projection_head_scores_every_item(model):
    model.config = dataclasses.replace(model.config, decoding="projection")
    s = model.score(np.arange(1, 5))
    model.config = dataclasses.replace(model.config, decoding="beam")
    assert s.shape == (4, model.n_items + 1) and torch.isfinite(s[:, 1:]).all()


def test_every_training_item_is_a_target_once():
    items = np.arange(1, 31)
    offsets = np.array([0, 1, 5, 30])
    win, users = training_windows(items, offsets, 6)
    win = win.numpy()
    assert set(users.tolist()) == {1, 2}  # the user with one item has no window
    # targets: the last item of each window and every non-first real item inside it
    targets = sorted(int(t) for row in win for j, t in enumerate(row) if t > 0 and j > 0 and row[j - 1] > 0)
    expected = sorted(list(range(3, 6)) + list(range(7, 31)))
    assert targets == expected


def test_save_load_keeps_the_sid_hash(model, tmp_path):
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.sid_hash_ == model.sid_hash_
    assert np.array_equal(back.codes_.numpy(), model.codes_.numpy())


# ------------------------------------------------------------------------------------------------- bad inputs


def test_beam_smaller_than_k(model):
    with pytest.raises(ConfigError, match="beam"):
        model.topk(np.array([1]), 11)


def test_empty_history(model):
    with pytest.raises(DataError, match="empty history"):
        model.score_histories([np.array([], dtype=np.int64)])


def test_sid_table_of_another_split(split, tmp_path):
    other = leave_last_out(planted_clusters(n_users=150, n_items=80, events_per_user=12, seed=4))
    build_semantic_ids(other.train, SID).save(tmp_path / "sid")
    cfg = TigerDecoderConfig(sid=str(tmp_path / "sid"), dim=16, n_layers=1, n_heads=1, train=TRAIN)
    with pytest.raises(DataError, match="another training split"):
        TigerDecoder(cfg).fit(split.train)


def test_hash_mismatch_at_load(model, tmp_path):
    state = model._state()
    codes = state["sid.codes"].clone()
    codes[[1, 2]] = codes[[2, 1]]  # two items swap IDs: the recorded hash no longer matches
    state["sid.codes"] = codes
    fresh = TigerDecoder(model.config)
    fresh.item_vocab, fresh.user_vocab = model.item_vocab, model.user_vocab
    with pytest.raises(DataError, match="does not match the hash"):
        fresh._load_state(state)
    other = build_semantic_ids(leave_last_out(planted_clusters(n_users=150, n_items=80, seed=9)).train, SID)
    other.save(tmp_path / "other")
    with pytest.raises(DataError, match="not the one this model was trained on"):
        model.check_sid_table(tmp_path / "other")


def test_non_unique_ids(model):
    codes = model.codes_.numpy().copy()
    codes[2] = codes[1]
    with pytest.raises(DataError, match="not unique"):
        TigerDecoder(model.config)._set_sids(codes, model.sizes_, "x", "y")


@pytest.mark.parametrize("bad", [{"beam": 0}, {"decoding": "projection"}, {"n_heads": 3}])
def test_bad_configs(bad):
    with pytest.raises(ConfigError):
        TigerDecoderConfig(**bad)
