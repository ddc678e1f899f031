"""tiger (encoder-decoder) on planted logs: beam search is exact when the beam covers the catalogue, the hashed user
token, save/load, list mode on a planted successor rule (tiger and tiger_decoder), the sparse-MoE block, and the
bad inputs (beam < k, empty history, list longer than trained, bad configs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recforge.data.split import leave_last_out
from recforge.data.synthetic import planted_clusters, sequential_world
from recforge.errors import ConfigError, DataError
from recforge.models.base import load_model
from recforge.models.generative.semantic_ids import SidConfig, build_semantic_ids
from recforge.models.generative.tiger import Tiger, TigerConfig, event_windows
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig
from recforge.models.rank import mask_seen, top_k
from recforge.nn.moe import MoEFeedForward, moe_aux_loss
from recforge.train.trainer import TrainConfig

SID = SidConfig(levels=2, codebook_size=16, dim=16, collisions="dedup")


@pytest.fixture(scope="module")
def split():
    return leave_last_out(planted_clusters(n_users=150, n_items=80, events_per_user=12, seed=3))


@pytest.fixture(scope="module")
def model(split):
    cfg = TigerConfig(sid_config=SID, dim=32, n_layers=1, n_heads=2, max_items=8, head="projection", beam=10,
                      user_buckets=40, experts=4, dropout=0.0,
                      train=TrainConfig(epochs=3, batch_size=128, lr=5e-3, threads=1))
    return Tiger(cfg).fit(split.train)


def test_beam_covering_every_item_equals_exact(model, split):
    users = np.arange(1, 25)
    wide = dataclasses.replace(model.config, beam=split.train.n_items)
    model.config = dataclasses.replace(wide, decoding="exact")
    exact = model.score(users).clone()
    model.config = wide
    beam = model.score(users).clone()
    model.config = dataclasses.replace(wide, beam=10, decoding="beam")
    seen = split.train.to_csr()[users]
    mask_seen(exact, seen)
    mask_seen(beam, seen)
    assert torch.equal(top_k(exact, 10).items, top_k(beam, 10).items)
    found = beam > -1e8
    assert torch.allclose(beam[found], exact[found], atol=1e-4)
    # item likelihoods are normalised over the catalogue
    full = model.log_prob([model.history(int(u)) for u in users[:3] for _ in range(model.n_items)],
                          np.tile(np.arange(1, model.n_items + 1), 3))
    assert torch.allclose(torch.logsumexp(full.view(3, -1), 1), torch.zeros(3), atol=1e-4)


def test_the_user_token_makes_two_users_with_one_history_differ(model):
    h = model.history(1)
    a = model._score_histories(h, np.array([0, len(h)]), np.array([1]))
    b = model._score_histories(h, np.array([0, len(h)]), np.array([2]))
    assert not torch.allclose(a, b)  # same history, different hashed users
    anon = model.score_histories([h])
    assert anon.shape == (1, model.n_items + 1)


def test_save_load_gives_the_same_scores(model, tmp_path):
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.sid_hash_ == model.sid_hash_
    users = np.arange(1, 6)
    assert torch.allclose(back.score(users), model.score(users))


def test_moe_block_routes_to_two_experts_and_balances():
    torch.manual_seed(0)
    moe = MoEFeedForward(8, 16, 0.0, n_experts=4)
    same = moe.experts[0].state_dict()
    for e in moe.experts[1:]:
        e.load_state_dict(same)  # identical experts: the gate-weighted sum of two of them is one expert's output
    x = torch.randn(5, 7, 8)
    assert torch.allclose(moe(x), moe.experts[0](x), atol=1e-5)
    with torch.no_grad():
        moe.router.weight.zero_()  # uniform router probabilities: the balance loss is 1
    moe(x)
    assert torch.isclose(moe.aux_loss, torch.tensor(1.0))
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 0.0
        moe.router.weight[0, 0] = 50.0
    moe(torch.ones(6, 8))  # every token's first choice is expert 0: the loss approaches E
    assert moe.aux_loss > 3.5 and moe.last_load[0] == 6
    assert moe_aux_loss(torch.nn.Sequential(moe)) == moe.aux_loss
    with pytest.raises(ConfigError, match="experts"):
        MoEFeedForward(8, 16, 0.0, n_experts=1)


def test_moe_model_trains_with_the_balance_loss(model):
    assert model.train_result_.history[-1]["loss"] < model.train_result_.history[0]["loss"]
    assert any(isinstance(m, MoEFeedForward) for m in model.net_.modules())


def test_event_windows_hold_the_history_and_the_next_items():
    items = np.arange(1, 8)
    offsets = np.array([0, 0, 3, 7])  # user 1: 1,2,3; user 2: 4..7
    rows, users = event_windows(items, offsets, history=2, m=2)
    assert users.tolist() == [1, 1, 2, 2, 2]
    assert rows.tolist() == [[0, 1, 2, 3], [1, 2, 3, 0], [0, 4, 5, 6], [4, 5, 6, 7], [5, 6, 7, 0]]


# ------------------------------------------------------------------------------------------------- list mode


@pytest.fixture(scope="module")
def world():
    data = sequential_world(n_users=300, n_items=40, length=12, p_follow=1.0, seed=0)
    return leave_last_out(data), data.meta["successor"]


def _follows(model, split, successor, m):
    vocab = split.train.item_vocab
    hist = [model.history(u) for u in range(1, 61)]
    out = model.generate(hist, m)
    assert out.shape == (60, m) and (out > 0).all()
    for row, h in zip(out, hist):
        assert len(set(row.tolist())) == m and not set(row.tolist()) & set(h.tolist())
    ext = lambda d: int(str(vocab.decode([int(d)])[0])[1:])  # noqa: E731
    ok = [ext(row[0]) == successor[ext(h[-1])] and ext(row[1]) == successor[ext(row[0])]
          for row, h in zip(out, hist) if successor[ext(h[-1])] not in [ext(i) for i in h]
          and successor[successor[ext(h[-1])]] not in [ext(i) for i in h]]
    return np.mean(ok), len(ok)


def test_tiger_list_mode_generates_the_planted_continuation(world):
    split, successor = world
    cfg = TigerConfig(sid_config=SID, dim=32, n_layers=1, n_heads=2, max_items=5, list_size=2, beam=10,
                      dropout=0.0, train=TrainConfig(epochs=6, batch_size=128, lr=1e-2, threads=1))
    model = Tiger(cfg).fit(split.train)
    acc, n = _follows(model, split, successor, 2)
    assert n > 10 and acc >= 0.8
    with pytest.raises(ConfigError, match="m must be in 1..2"):
        model.generate([model.history(1)], 3)


def test_decoder_list_mode_generates_the_planted_continuation(world):
    split, successor = world
    cfg = TigerDecoderConfig(sid_config=SID, dim=32, n_layers=1, n_heads=2, max_items=5, beam=10, dropout=0.0,
                             train=TrainConfig(epochs=6, batch_size=64, lr=1e-2, threads=1))
    model = TigerDecoder(cfg).fit(split.train)
    acc, n = _follows(model, split, successor, 2)
    assert n > 10 and acc >= 0.8


# ------------------------------------------------------------------------------------------------- bad inputs


def test_beam_smaller_than_k(model):
    with pytest.raises(ConfigError, match="beam"):
        model.topk(np.array([1]), 11)


def test_empty_history(model):
    with pytest.raises(DataError, match="empty history"):
        model.score_histories([np.array([], dtype=np.int64)])
    with pytest.raises(DataError, match="empty history"):
        model.generate([np.array([], dtype=np.int64)], 1)


@pytest.mark.parametrize("bad", [{"list_size": 0}, {"user_buckets": -1}, {"experts": 1}, {"beam": 0},
                                 {"decoding": "projection"}, {"n_heads": 3}, {"preference_drop": 1.5}])
def test_bad_configs(bad):
    with pytest.raises(ConfigError):
        TigerConfig(**bad)


def test_sid_table_of_another_split_and_hash_mismatch_at_load(model, split, tmp_path):
    other = leave_last_out(planted_clusters(n_users=150, n_items=80, events_per_user=12, seed=4))
    build_semantic_ids(other.train, SID).save(tmp_path / "sid")
    cfg = TigerConfig(sid=str(tmp_path / "sid"), dim=16, n_layers=1, n_heads=1, train=TrainConfig(epochs=1))
    with pytest.raises(DataError, match="another training split"):
        Tiger(cfg).fit(split.train)
    state = model._state()
    codes = state["sid.codes"].clone()
    codes[[1, 2]] = codes[[2, 1]]  # two items swap IDs: the recorded hash no longer matches
    state["sid.codes"] = codes
    fresh = Tiger(model.config)
    fresh.item_vocab, fresh.user_vocab = model.item_vocab, model.user_vocab
    with pytest.raises(DataError, match="does not match the hash"):
        fresh._load_state(state)
    with pytest.raises(DataError, match="not the one this model was trained on"):
        model.check_sid_table(tmp_path / "sid")
