"""GRU4Rec, SASRec, BERT4Rec and HSTU: planted sequential signal, history scoring, model-specific invariants."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from recforge.cli import main
from recforge.config import from_dict
from recforge.data.split import leave_last_out
from recforge.data.synthetic import sequential_world
from recforge.errors import ConfigError, UnknownIdError
from recforge.evaluate.evaluator import evaluate
from recforge.models.base import history_scores
from recforge.models.bert4rec import BERT4Rec, BERT4RecConfig
from recforge.models.gru4rec import GRU4Rec, GRU4RecConfig
from recforge.models.hstu import HSTU, HSTUConfig, time_buckets
from recforge.models.popular import MostPopular
from recforge.models.sasrec import SASRec, SASRecConfig
from recforge.protocols import Embedder, HistoryScorer, LogProb, TimedHistoryScorer
from recforge.registry import get_model
from recforge.train.trainer import TrainConfig

FAST = TrainConfig(epochs=12, batch_size=32, lr=5e-3, threads=1, patience=3)


def _hstu(**flags):
    return lambda **kw: HSTU(HSTUConfig(dim=32, n_layers=1, n_heads=1, max_len=10, train=FAST, **flags, **kw))


MODELS = {
    "sasrec": lambda **kw: SASRec(SASRecConfig(dim=32, n_layers=1, n_heads=1, max_len=10, train=FAST, **kw)),
    "gru4rec": lambda **kw: GRU4Rec(GRU4RecConfig(dim=32, hidden=32, max_len=10, train=FAST, **kw)),
    "bert4rec": lambda **kw: BERT4Rec(BERT4RecConfig(dim=32, n_layers=1, n_heads=1, max_len=10, train=FAST, **kw)),
    "hstu": _hstu(),
    "hstu+position_emb": _hstu(position_emb=True),
    "hstu+reference_layer": _hstu(reference_layer=True),
    "hstu+wide_uv": _hstu(linear_dim=64, attention_dim=16),
    "hstu+attn_dropout": _hstu(attn_dropout=0.3),
}


@pytest.fixture(scope="module")
def split():
    """A successor rule followed 90% of the time; popularity is flat, so only order carries signal."""
    return leave_last_out(sequential_world(n_users=250, n_items=60, length=10, p_follow=0.9, seed=4))


_FITTED: dict[str, object] = {}


def fitted(name: str, split):
    if name not in _FITTED:
        _FITTED[name] = MODELS[name]().fit(split.train, split.valid)
    return _FITTED[name]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_learns_the_planted_next_item_rule_and_beats_popularity(name, split):
    model = fitted(name, split)
    ours = evaluate(model, split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]
    pop = evaluate(MostPopular().fit(split.train), split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]
    # BERT4Rec learns from masked items only (fewer targets per epoch); the others see every next item.
    floor = 0.3 if name == "bert4rec" else 0.5
    assert ours["ci_low"] > pop["ci_high"] and ours["mean"] > floor, (name, ours, pop)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trimmed_chunked_scoring_equals_one_full_width_pass(name, split, monkeypatch):
    """Scoring sorts histories by length, trims padding per chunk and computes only the last position of the last
    layer; it must give the scores of the plain forward pass over full left-padded windows."""
    import recforge.models.sequential as seq

    model = fitted(name, split)
    rng = np.random.default_rng(0)
    # lengths 1..25 around max_len=10: short, exactly max_len, and truncated histories
    hists = [rng.integers(1, split.train.n_items, size=n) for n in rng.integers(1, 26, size=40)]
    times = [np.cumsum(rng.integers(1, 10_000, size=len(h))) for h in hists]
    monkeypatch.setattr(seq, "SCORE_TOKENS", 30)  # many small chunks of different widths
    timed = isinstance(model, TimedHistoryScorer)
    got = history_scores(model, hists, np.concatenate(times) if timed else None)
    items = np.concatenate(hists)
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in hists])])
    window = torch.from_numpy(model._window(items, offsets))
    t = torch.from_numpy(model._window(np.concatenate(times), offsets)) if timed else None
    if name == "bert4rec":  # the prediction at an appended [mask] token
        window = torch.cat([window[:, 1:], torch.full_like(window[:, :1], model.net_.mask_token)], dim=1)
    with torch.inference_mode():
        expected = model.net_.scores(model.net_.encode(window, t)[:, -1])
    # column 0 is the padding id (masked to -inf in the public scores)
    torch.testing.assert_close(got[:, 1:], expected[:, 1:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_known_user_scores_equal_their_history_scores(name, split):
    model = fitted(name, split)
    items, offsets = split.train.sequences()
    users = np.array([1, 2, 7])
    hists = [items[offsets[u] : offsets[u + 1]] for u in users]
    torch.testing.assert_close(model.score(users), model.score_histories(hists))


def test_hstu_uses_timestamps_when_given(split):
    model = fitted("hstu", split)
    items, offsets = split.train.sequences()
    hist, times = [items[offsets[1] : offsets[2]]], split.train.time[offsets[1] : offsets[2]]
    # Known users are scored with their time gaps; so are histories that come with times (as in evaluation).
    torch.testing.assert_close(model.score([1]), model.score_timed_histories(hist, times))
    # Without times only the position bias applies: the learned time bias makes the scores differ.
    assert not torch.allclose(model.score([1]), model.score_histories(hist))
    no_time = HSTU(HSTUConfig(dim=16, n_layers=1, n_heads=1, max_len=10, time_bias=False,
                              train=TrainConfig(epochs=1, threads=1))).fit(split.train)
    torch.testing.assert_close(no_time.score([1]), no_time.score_histories(hist))


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "hstu"])
def test_declared_capabilities(name, split):
    model = fitted(name, split)
    assert isinstance(model, HistoryScorer) and isinstance(model, LogProb) and isinstance(model, Embedder)
    assert isinstance(model, TimedHistoryScorer) == (name == "hstu")


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "hstu"])
def test_log_prob_is_a_softmax_over_items(name, split):
    model = fitted(name, split)
    items, offsets = split.train.sequences()
    n = split.train.n_items
    hists = [items[offsets[u] : offsets[u + 1]] for u in (1, 2)]
    for hist in hists:
        every = model.log_prob([hist] * n, np.arange(1, n + 1))  # log p(i | hist) for every item i
        assert every.shape == (n,)
        torch.testing.assert_close(every.exp().sum(), torch.tensor(1.0), rtol=1e-5, atol=1e-5)
    # a softmax of the scores: log-probability differences are score differences
    scores = model.score_histories(hists)
    a, b = np.array([3, 7]), np.array([11, 2])
    diff = model.log_prob(hists, a) - model.log_prob(hists, b)
    torch.testing.assert_close(diff, scores[[0, 1], a] - scores[[0, 1], b], rtol=1e-4, atol=1e-4)
    with pytest.raises(UnknownIdError):
        model.log_prob(hists, np.array([0, 1]))
    with pytest.raises(ConfigError, match="one id per history"):
        model.log_prob(hists, np.array([1]))


def test_history_is_the_time_ordered_training_sequence(split):
    model = fitted("sasrec", split)
    items, offsets = split.train.sequences()
    assert np.array_equal(model.history(5), items[offsets[5] : offsets[6]])
    assert model.history(0).size == 0 and model.history(5).dtype == np.int64


def test_the_sequential_configs_share_one_base():
    """The fields every sequential model has live once, in SequentialConfig; the choices are Literal types, checked
    for a config built directly as well as through from_dict."""
    from typing import get_args

    from recforge.models.sequential import AttentionConfig, Loss, SequentialConfig
    from recforge.nn.losses import LOSSES

    assert set(get_args(Loss)) == set(LOSSES)
    shared = {f for f in SequentialConfig.__dataclass_fields__}
    for cls in (SASRecConfig, GRU4RecConfig, BERT4RecConfig, HSTUConfig):
        assert issubclass(cls, SequentialConfig) and shared <= set(cls.__dataclass_fields__)
    assert all(issubclass(c, AttentionConfig) for c in (SASRecConfig, BERT4RecConfig, HSTUConfig))
    assert GRU4RecConfig().n_layers == 1 and GRU4RecConfig().train.lr == 3e-3  # its own defaults are kept
    assert SASRecConfig().n_layers == 2 and SASRecConfig().train.lr == 1e-3
    with pytest.raises(ConfigError, match="sampler: expected one of"):
        HSTUConfig(sampler="zipf")
    with pytest.raises(ConfigError, match="train.schedule: expected one of"):
        TrainConfig(schedule="step")


def test_time_buckets_are_log2_of_the_gap():
    t = torch.tensor([[0, 1, 3, 1000]])
    b = time_buckets(t, 64)[0]
    assert b[1, 0] == 1 and b[2, 0] == 2 and b[3, 2] == 9 and b[0, 3] == 0  # future keys clamp to gap 0
    assert time_buckets(torch.tensor([[0, 2**40]]), 8)[0, 1, 0] == 7


@pytest.mark.parametrize("name", ["sasrec", "hstu"])
def test_causal_models_do_not_look_ahead(name, split):
    net = fitted(name, split).net_
    x = torch.tensor([[0, 0, 5, 9, 13, 2, 7, 11, 3, 4]])
    y = x.clone()
    y[0, -1] = 30
    with torch.no_grad():
        torch.testing.assert_close(net.encode(x)[:, :-1], net.encode(y)[:, :-1])


def test_gru4rec_ignores_left_padding(split):
    net = fitted("gru4rec", split).net_
    with torch.no_grad():
        short = net.encode(torch.tensor([[5, 9, 13]]))[:, -1]
        batch = net.encode(torch.tensor([[0, 0, 0, 0, 5, 9, 13], [1, 2, 3, 4, 5, 9, 13]]))  # mixed lengths
    torch.testing.assert_close(short, batch[:1, -1])
    assert torch.equal(batch[0, :4], torch.zeros_like(batch[0, :4]))  # padding positions carry no state
    assert not torch.allclose(batch[0, -1], batch[1, -1])  # the longer history changes the state


def test_bert4rec_output_layer_is_tied_to_item_embeddings(split):
    net = fitted("bert4rec", split).net_
    assert net.item_weight is net.encoder.item_emb.weight
    assert net.item_weight.shape[0] == split.train.n_items + 2  # items, padding and [mask]


def test_recommend_history_for_an_anonymous_session(split):
    model = fitted("sasrec", split)
    successor = split.train.meta["successor"]
    start = 3
    session = [f"i{start}", f"i{successor[start]}"]
    recs, ignored = model.recommend_history(session + ["never-seen"], k=5)
    assert ignored == ["never-seen"]
    assert f"i{successor[successor[start]]}" in recs.items[0]


def test_hstu_scores_an_anonymous_session_with_its_timestamps(split):
    """recommend_history hands ``times`` to HSTU's time-gap bias, aligned with the items that are kept."""
    model = copy.deepcopy(fitted("hstu", split))
    g = torch.Generator().manual_seed(0)
    for layer in model.net_.layers:  # a strong time-gap bias, so the timestamps visibly move the scores
        layer.time_bias.weight.data = 3.0 * torch.randn(layer.time_bias.weight.shape, generator=g)
    session, times = ["i3", "i5", "i7"], [0, 10, 10**6]
    dense = model.item_vocab.encode(session)
    with_times = model.score_timed_histories([dense], np.array(times))
    assert not torch.allclose(with_times, model.score_timed_histories([dense], np.array([0, 1, 2])))
    scores = with_times.clone()
    scores[0, torch.from_numpy(dense)] = -torch.inf
    expected = model.item_vocab.decode(torch.topk(scores[0], 5).indices.numpy())
    without = model.score_histories([dense]).clone()
    without[0, torch.from_numpy(dense)] = -torch.inf
    assert model.item_vocab.decode(torch.topk(without[0], 5).indices.numpy()) != expected  # the test can tell
    recs, ignored = model.recommend_history(["i3", "never-seen", "i5", "i7"], k=5, times=[0, 5, 10, 10**6])
    assert ignored == ["never-seen"] and recs.items[0] == expected  # the unknown item's time left out with it
    with pytest.raises(ConfigError, match="one value per history item"):
        model.recommend_history(session, k=5, times=[0, 10])


@pytest.fixture(scope="module")
def large_catalog():
    """The successor world with 2,000 items: 256 sampled negatives are a small fraction of the catalogue."""
    return leave_last_out(sequential_world(n_users=500, n_items=2000, length=10, p_follow=0.9, seed=4))


@pytest.mark.parametrize("name", ["sasrec", "hstu", "gru4rec"])
@pytest.mark.parametrize("loss", ["bce", "sampled_softmax", "gbce"])
@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_every_loss_learns_a_large_catalog(name, loss, sampler, large_catalog):
    """Each sampled loss learns the rule (NDCG@10 0.12-0.45; popularity scores ~0.005 here). Guards the binary
    losses' start at the prior logit: from a zero bias, gBCE pushed every score down together and every user's
    state collapsed onto one direction (SASRec NDCG@10 0.004)."""
    arch = {"gru4rec": {"hidden": 32}}.get(name, {"n_layers": 1, "n_heads": 1})
    cls = get_model(name)
    model = cls(cls.config_class(dim=32, max_len=10, loss=loss, sampler=sampler, n_negatives=256, **arch,
                                 train=TrainConfig(epochs=6, batch_size=32, lr=5e-3, threads=1))).fit(large_catalog.train)
    losses = [r["loss"] for r in model.train_result_.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert evaluate(model, large_catalog, metrics=("ndcg@10",), n_boot=0, progress=False).mean("ndcg@10") > 0.08


@pytest.mark.parametrize("name", ["sasrec", "hstu", "gru4rec", "bert4rec"])
def test_cosine_head_scores_are_cosines_over_temperature(name, split):
    model = MODELS[name](temperature=0.1)
    model.fit(split.train)
    net = model.net_
    with torch.no_grad():
        net.out_bias.normal_()  # a trained-looking bias, so that the check covers it
        hidden = torch.randn(3, net.item_weight.shape[1])
        w = net.item_weight[: net.n_items + 1]
        cos = torch.nn.functional.cosine_similarity(hidden[:, None], w[None], dim=-1, eps=1e-6)
        torch.testing.assert_close(net.scores(hidden), cos / 0.1 + net.out_bias, rtol=1e-4, atol=1e-4)
    losses = [r["loss"] for r in model.train_result_.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    users = split.train.user_vocab.decode(split.test.active_users()[:2])
    assert [len(row) for row in model.recommend(list(users), k=3).items] == [3, 3]


@pytest.mark.parametrize(
    ("cls", "values", "match"),
    [
        (SASRecConfig, {"dim": 30, "n_heads": 4}, "n_heads must divide dim"),
        (SASRecConfig, {"dropout": 1.0}, "dropout"),
        (SASRecConfig, {"loss": "hinge"}, "loss: expected one of"),
        (SASRecConfig, {"sampler": "zipf"}, "sampler"),
        (SASRecConfig, {"max_len": 0}, "max_len"),
        (GRU4RecConfig, {"hidden": 0}, "hidden"),
        (BERT4RecConfig, {"mask_prob": 0.0}, "mask_prob"),
        (BERT4RecConfig, {"max_len": 1}, "max_len"),
        (HSTUConfig, {"n_time_buckets": 0}, "n_time_buckets"),
        (HSTUConfig, {"gbce_t": 2.0}, "gbce_t"),
        (HSTUConfig, {"reference_layer": "yes"}, "reference_layer: expected true/false"),
        (HSTUConfig, {"n_heads": 2, "linear_dim": 129}, "linear_dim must be 0"),
        (HSTUConfig, {"attention_dim": -2}, "attention_dim must be 0"),
        (HSTUConfig, {"attn_dropout": 1.0}, "attn_dropout must be in"),
        (GRU4RecConfig, {"temperature": -0.1}, "temperature"),
        (SASRecConfig, {"temperature": float("nan")}, "temperature"),
        (HSTUConfig, {"train": {"lr": -1.0}}, "train.lr"),
        (HSTUConfig, {"train": {"epochs": "ten"}}, "epochs"),
    ],
)
def test_bad_configs(cls, values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(cls, values)


def test_cli_train_writes_curves_and_resumes(tmp_path):
    data = sequential_world(n_users=80, n_items=30, length=8, seed=2)
    csv = tmp_path / "world.csv"
    rows = zip(data.user_vocab.decode(data.user), data.item_vocab.decode(data.item), data.time.tolist())
    csv.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    run = tmp_path / "run"
    sets = ["--set", "model.train.epochs=2", "--set", "model.train.threads=1", "--set", "model.dim=16",
            "--set", "model.n_heads=1"]
    assert main(["train", "hstu", "--data", str(csv), "--out", str(run), *sets]) == 0
    curves = json.loads((run / "checkpoints" / "curves.json").read_text())
    assert [r["epoch"] for r in curves] == [1, 2]
    assert (run / "checkpoints" / "curves.png").is_file()
    first = json.loads((run / "metrics.json").read_text())["test"]["ndcg@10"]["mean"]
    # Resuming a finished run replays nothing and reproduces its metrics.
    assert main(["train", "hstu", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["test"]["ndcg@10"]["mean"] == first
    assert (run / "curves.json").is_file()  # copied to the run folder's root, where reports look
    # An interrupted run has only config.toml and checkpoints: --resume must still work.
    for name in ("metrics.json", "run.json"):
        (run / name).unlink()
    assert main(["train", "hstu", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["test"]["ndcg@10"]["mean"] == first
