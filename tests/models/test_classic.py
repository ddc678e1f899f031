"""Model-specific checks of the classic models against plain reference implementations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recforge.artifacts import load_artifact
from recforge.data.interactions import Interactions
from recforge.data.split import leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, DataError
from recforge.models.als import ALS, _side, _solve_cg, _solve_exact, als_loss
from recforge.models.base import Recommender, history_scores, load_model
from recforge.models.bpr import BPR, BPRConfig
from recforge.models.ease import EASE
from recforge.models.itemknn import ItemKNN
from recforge.models.popular import MostPopular
from recforge.models.random import RandomRecommender
from recforge.models.userknn import UserKNN
from recforge.protocols import Embedder, HistoryScorer, LogProb, TimedHistoryScorer
from recforge.train.trainer import TrainConfig


@pytest.fixture(scope="module")
def valued_log() -> Interactions:
    """40 users x 30 items with continuous values, so similarities have no ties (top-k is then unambiguous)."""
    rng = np.random.default_rng(3)
    mask = rng.random((40, 30)) < 0.3
    u, i = np.nonzero(mask)
    return Interactions.from_arrays(u, i, value=rng.random(len(u)) * 4 + 1)


def _dense(log: Interactions, binary: bool) -> np.ndarray:
    return log.to_csr(binary=binary).toarray()[1:, 1:].astype(np.float64)


def _cosine(x: np.ndarray, shrink: float) -> np.ndarray:
    """Plain column cosine with shrinkage and a zero diagonal."""
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / (np.outer(norms, norms) + shrink)
    np.fill_diagonal(sim, 0.0)
    return sim


def _keep_topk_per_column(sim: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(sim)
    for j in range(sim.shape[1]):  # reference code: clarity over speed
        top = np.argsort(-sim[:, j])[:k]
        top = top[sim[top, j] > 0]
        out[top, j] = sim[top, j]
    return out


@pytest.mark.parametrize("k,shrink,block", [(5, 0.0, 2048), (5, 10.0, 7), (100, 2.0, 4)])
def test_itemknn_matches_brute_force(valued_log, k, shrink, block):
    model = ItemKNN(k=k, shrink=shrink, binary=False, block_size=block).fit(valued_log)
    w = _keep_topk_per_column(_cosine(_dense(valued_log, binary=False), shrink), k)
    expected = _dense(valued_log, binary=True) @ w
    got = model.score(np.arange(1, valued_log.n_users + 1))[:, 1:].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert model.w_.nnz <= k * valued_log.n_items


def test_userknn_matches_brute_force(valued_log):
    k, shrink = 4, 1.0
    x = _dense(valued_log, binary=False)  # continuous values: no ties at the top-k boundary
    sim = _cosine(x.T, shrink)  # user x user
    expected = _keep_topk_per_column(sim, k).T @ x  # rows: each user's top-k neighbours
    got = UserKNN(k=k, shrink=shrink, binary=False).fit(valued_log).score(np.arange(1, valued_log.n_users + 1))
    np.testing.assert_allclose(got[:, 1:].double().numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("l2", [1.0, 50.0])
def test_ease_matches_dense_numpy(valued_log, l2):
    x = _dense(valued_log, binary=True)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = EASE(l2=l2).fit(valued_log)
    got = model.score(np.arange(1, valued_log.n_users + 1))[:, 1:].double().numpy()
    np.testing.assert_allclose(got, x @ b, rtol=1e-4, atol=1e-5)
    # An ad-hoc history scores exactly like the training user with that history.
    items, offsets = valued_log.sequences()
    torch.testing.assert_close(model.score_histories([items[offsets[3] : offsets[4]]]), model.score([3]))


def test_ease_recency_weights_the_history_by_position(tmp_path):
    """recency=r scores x_u B with the k-th most recent item weighted r**k (a repeat keeps its latest weight)."""
    # user 1: items 1, 2, 3, 2 in time order -> weights 3: r, 2: 1 (latest), 1: r**3
    log = Interactions.from_arrays([1, 1, 1, 1, 2, 2, 3, 3, 3], [1, 2, 3, 2, 1, 4, 2, 3, 4],
                                   time=[1, 2, 3, 4, 1, 2, 1, 2, 3])
    plain = EASE(l2=2.0).fit(log)
    r = 0.5
    model = EASE(l2=2.0, recency=r).fit(log)
    b = plain.b_[1:, 1:].double().numpy()
    x = np.zeros(4)
    for raw, w in ((1, r**3), (3, r), (2, 1.0)):
        x[log.item_vocab.encode(raw)[0] - 1] = w
    u = int(log.user_vocab.encode(1)[0])
    np.testing.assert_allclose(model.score([u])[0, 1:].double().numpy(), x @ b, rtol=1e-5, atol=1e-6)
    # the same row for the training user and for the same ad-hoc history; recency=1 is plain EASE
    hist = log.item_vocab.encode([1, 2, 3, 2])
    torch.testing.assert_close(model.score_histories([hist]), model.score([u]))
    torch.testing.assert_close(EASE(l2=2.0, recency=1.0).fit(log).score([u]), plain.score([u]))
    model.save(tmp_path / "m")
    torch.testing.assert_close(load_model(tmp_path / "m").score([u]), model.score([u]))
    with pytest.raises(ConfigError, match="recency"):
        EASE(recency=0.0)


@pytest.fixture(scope="module")
def planted():
    return leave_last_out(planted_clusters(n_users=200, n_items=120, events_per_user=15, seed=1))


def test_als_exact_loss_never_increases(planted):
    model = ALS(factors=8, iterations=6, solver="exact", reg=0.1, alpha=5.0).fit(planted.train)
    losses = np.array(model.loss_history_)
    assert np.all(np.diff(losses) <= 1e-6 * losses[:-1]), losses  # each exact half-step is a minimiser


def test_als_cg_loss_decreases(planted):
    losses = ALS(factors=8, iterations=8, solver="cg", cg_steps=3).fit(planted.train).loss_history_
    assert losses[-1] < 0.8 * losses[0], losses


def test_als_exact_solve_matches_per_user_numpy(planted):
    rng = np.random.default_rng(0)
    r = planted.train.to_csr()
    y = torch.from_numpy(rng.normal(size=(r.shape[1], 6)).astype(np.float32))
    alpha, reg = 3.0, 0.5
    side = _side(r, alpha)
    got = _solve_exact(y, side, r.shape[0], reg, budget=500)  # a tiny budget forces many chunks
    yd = y.double().numpy()
    for u in (1, 17, 150):
        c = np.ones(r.shape[1])
        c[r[[u]].indices] += alpha
        p = np.zeros(r.shape[1])
        p[r[[u]].indices] = 1.0
        a = yd.T @ (c[:, None] * yd) + reg * np.eye(6)
        np.testing.assert_allclose(got[u].double().numpy(), np.linalg.solve(a, yd.T @ (c * p)), rtol=1e-3, atol=1e-4)
    # Conjugate gradient converges to the same solution (f = 6 steps solve a 6-dim system exactly in theory).
    cg = _solve_cg(torch.zeros(r.shape[0], 6), y, side, reg, steps=12)
    torch.testing.assert_close(cg, got, rtol=1e-3, atol=1e-3)


def test_als_loss_formula_matches_dense(planted):
    rng = np.random.default_rng(1)
    r = planted.train.to_csr()
    x = torch.from_numpy(rng.normal(size=(r.shape[0], 4)).astype(np.float32))
    y = torch.from_numpy(rng.normal(size=(r.shape[1], 4)).astype(np.float32))
    rd = r.toarray()
    pred = x.double().numpy() @ y.double().numpy().T
    dense = ((1 + 2.0 * rd) * (rd - pred) ** 2).sum() + 0.3 * ((x.double() ** 2).sum() + (y.double() ** 2).sum()).item()
    assert als_loss(x, y, _side(r, 2.0), 0.3) == pytest.approx(dense, rel=1e-4)


def test_als_fold_in_is_the_user_half_step(planted):
    model = ALS(factors=16, iterations=3, solver="cg").fit(planted.train)
    items, offsets = planted.train.sequences()
    users = np.arange(1, 21)
    folded = model.score_histories([items[offsets[u] : offsets[u + 1]] for u in users])
    # Folding a training user's history in must equal one exact ALS user step against the learned item factors.
    x = _solve_exact(model.y_, _side(planted.train.to_csr(), model.config.alpha), planted.train.n_users + 1,
                     model.config.reg)
    expected = x[torch.from_numpy(users)] @ model.y_.T
    torch.testing.assert_close(folded[:, 1:], expected[:, 1:], rtol=1e-4, atol=1e-5)


def test_loaded_weights_live_in_aligned_memory_and_fold_in_is_bit_identical(planted, tmp_path):
    # safetensors' views sit at the header's offset; BLAS on misaligned data takes other paths (last-bit differences).
    model = ALS(factors=16, iterations=2).fit(planted.train)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.y_.data_ptr() % 64 == 0 and loaded.x_.data_ptr() % 64 == 0
    hist = [np.array([1, 5, 9]), np.array([2, 3])]
    assert torch.equal(loaded.score_histories(hist), model.score_histories(hist))


def test_bpr_loss_decreases_and_uses_trainer(planted):
    cfg = BPRConfig(factors=8, train=TrainConfig(epochs=4, batch_size=512, lr=0.02, patience=0))
    model = BPR(cfg).fit(planted.train)
    losses = [row["loss"] for row in model.train_result_.history]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_random_is_batch_invariant_and_seed_dependent(planted):
    a = RandomRecommender(seed=1).fit(planted.train)
    b = RandomRecommender(seed=2).fit(planted.train)
    s = a.score(np.arange(1, 11))
    assert torch.equal(s[3:4], a.score([4]))
    assert not torch.equal(s, b.score(np.arange(1, 11)))
    assert ((s[:, 1:] >= 0) & (s[:, 1:] < 1)).all()


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (RandomRecommender, {"seed": -1}, "seed"),
        (ItemKNN, {"k": 0}, "k must be"),
        (ItemKNN, {"shrink": -1.0}, "shrink"),
        (ItemKNN, {"block_size": 0}, "block_size"),
        (UserKNN, {"k": 0}, "k must be"),
        (UserKNN, {"shrink": -0.5}, "shrink"),
        (EASE, {"l2": 0.0}, "l2"),
        (EASE, {"l2": -3.0}, "l2"),
        (ALS, {"factors": 0}, "factors"),
        (ALS, {"iterations": 0}, "iterations"),
        (ALS, {"cg_steps": 0}, "cg_steps"),
        (ALS, {"reg": -1.0}, "reg"),
        (ALS, {"alpha": -1.0}, "alpha"),
        (ALS, {"solver": "svd"}, "solver"),
        (BPR, {"factors": 0}, "factors"),
        (BPR, {"reg": -1e-3}, "reg"),
        (BPR, {"init_std": 0.0}, "init_std"),
        (BPR, {"train": {"epochs": 0}}, "epochs"),
        (EASE, {"l2": "big"}, "l2"),
    ],
)
def test_bad_config_values_are_config_errors(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("cls", "history", "embedder"),
    [(ALS, True, True), (BPR, False, True), (EASE, True, False), (ItemKNN, True, False), (MostPopular, True, False),
     (UserKNN, False, False), (RandomRecommender, False, False)],
)
def test_declared_capabilities(cls, history, embedder):
    """Capabilities are the protocols a model implements, nothing else; none of the classic models is a LogProb."""
    model = cls()
    assert isinstance(model, HistoryScorer) == history and isinstance(model, Embedder) == embedder
    assert not isinstance(model, TimedHistoryScorer) and not isinstance(model, LogProb)
    assert not hasattr(Recommender, "score_histories")


@pytest.mark.parametrize("make", [lambda: ALS(factors=8, iterations=2),
                                  lambda: BPR(BPRConfig(factors=8, train=TrainConfig(epochs=2, patience=0)))])
def test_embedder_scores_are_inner_products(make, planted):
    model = make().fit(planted.train)
    users = np.arange(1, 30)
    q, v = model.user_embeddings(users), model.item_embeddings()
    assert v.shape[0] == planted.train.n_items + 1
    torch.testing.assert_close(model.score(users)[:, 1:], q @ v[1:].T, rtol=1e-5, atol=1e-5)


def test_non_history_models_refuse_ad_hoc_histories(planted):
    model = UserKNN().fit(planted.train)
    with pytest.raises(ConfigError, match="cannot score ad-hoc histories"):
        model.recommend_history(list(planted.train.item_vocab.decode(np.array([1, 2]))), k=3)
    with pytest.raises(ConfigError, match="cannot score ad-hoc histories"):
        history_scores(model, [np.array([1, 2])])


def test_saved_model_is_an_artifact_and_tampering_is_caught(planted, tmp_path):
    model = EASE(l2=50.0).fit(planted.train)
    path = model.save(tmp_path / "m")
    art = load_artifact(path)
    assert art.table == "model" and art.name == "ease" and art.config == {"l2": 50.0, "binary": True, "recency": 1.0}
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "weights.safetensors"]
    assert art.extra["item_vocab"]["ids"] == list(planted.train.item_vocab.ids)
    weights = path / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit in the last tensor's data
    weights.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="changed since they were written"):
        load_model(path)


def test_load_model_errors_are_one_data_error_line(planted, tmp_path):
    MostPopular().fit(planted.train).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta | {"name": "no-such-model"}))
    with pytest.raises(DataError, match="cannot load model.*no-such-model"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta | {"table": "policy"}))
    with pytest.raises(DataError, match="holds a policy artifact, expected a model"):
        load_model(tmp_path / "m")
    with pytest.raises(DataError, match="artifact not found"):
        load_model(tmp_path / "nothing")
