"""Sequential models as Embedders: query and item vectors whose inner products are the scores, served through faiss
and re-scored exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from recforge.errors import ConfigError
from recforge.index import build_retriever
from recforge.models.bert4rec import BERT4Rec
from recforge.models.gru4rec import GRU4Rec
from recforge.models.hstu import HSTU
from recforge.models.sasrec import SASRec
from recforge.protocols import Embedder
from recforge.serve import ServeSettings, create_app
from recforge.train.trainer import TrainConfig

SMALL = {"dim": 16, "max_len": 20, "train": TrainConfig(epochs=1, device="cpu")}
MODELS = {
    "sasrec": lambda: SASRec(n_heads=1, n_layers=1, **SMALL),
    "sasrec-cosine": lambda: SASRec(n_heads=1, n_layers=1, temperature=0.05, **SMALL),
    "gru4rec": lambda: GRU4Rec(**SMALL),
    "bert4rec": lambda: BERT4Rec(n_heads=1, n_layers=1, **SMALL),
    "hstu": lambda: HSTU(n_heads=1, n_layers=1, **SMALL),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, serve_log):
    return MODELS[request.param]().fit(serve_log)


def test_inner_products_are_the_scores(fitted):
    assert isinstance(fitted, Embedder)
    users = np.arange(1, fitted.n_users + 1)
    q, items = fitted.user_embeddings(users), fitted.item_embeddings()
    assert items.shape == (fitted.n_items + 1, q.shape[1])
    torch.testing.assert_close(q @ items[1:].T, fitted.score(users)[:, 1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_served_through_the_index_as_exact(fitted, index, tmp_path):
    """Forced through faiss (the catalogue is small), known users get the exact top-10."""
    exact_app = create_app(fitted, ServeSettings(feedback_db=str(tmp_path / "a.sqlite"), index="exact"))
    ann_app = create_app(fitted, ServeSettings(feedback_db=str(tmp_path / "b.sqlite"), index=index))
    assert ann_app.state.recforge.handle.retriever is not None
    with TestClient(exact_app) as exact, TestClient(ann_app) as ann:
        for user in ["u0", "u7", "u33"]:
            want = exact.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
            got = ann.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
            assert [x["item"] for x in got] == [x["item"] for x in want]
            np.testing.assert_allclose([x["score"] for x in got], [x["score"] for x in want], rtol=1e-5, atol=1e-5)


def test_search_params_change_without_a_rebuild():
    """ef_search / nprobe are set on a built index: a beam of 1 loses neighbours that a wide beam finds."""
    rng = np.random.default_rng(0)
    vectors = torch.from_numpy(rng.standard_normal((5001, 16)).astype(np.float32))
    queries = torch.from_numpy(rng.standard_normal((50, 16)).astype(np.float32))
    hnsw = build_retriever(vectors, "hnsw", m=4, ef_construction=8, ef_search=1)
    _, exact = build_retriever(vectors, "exact").search(queries, 10)

    def recall() -> float:
        _, got = hnsw.search(queries, 10)
        return np.mean([len(set(a.tolist()) & set(e.tolist())) / 10 for a, e in zip(got, exact)])

    narrow = recall()
    hnsw.set_search_params(ef_search=500)
    assert hnsw.info["params"]["ef_search"] == 500
    assert recall() > narrow + 0.2 and recall() > 0.9
    with pytest.raises(ConfigError, match="nprobe"):
        hnsw.set_search_params(nprobe=4)
    ivf = build_retriever(vectors, "ivf", nlist=64, nprobe=1)
    ivf.set_search_params(nprobe=64)  # every list: exact
    assert torch.equal(ivf.search(queries, 10)[1], exact)
