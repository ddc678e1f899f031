"""Evaluation suite on real data (RECFORGE_DATA_DIR): beyond-accuracy sanity on ML-100K, protocol flips (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.beyond import beyond_accuracy
from recforge.evaluate.evaluator import evaluate
from recforge.metrics.stats import compare_paired
from recforge.registry import get_model

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def ml100k(data_dir):
    ds = load_dataset("ml-100k", data_dir=data_dir)
    return ds, leave_last_out(ds.interactions, n=1, valid=False)


def test_popularity_model_is_maximally_biased_and_knn_is_not(ml100k):
    ds, split = ml100k
    out = {}
    for name in ("popular", "itemknn"):
        model = get_model(name)().fit(split.train)
        rep = evaluate(model, split, metrics=("ndcg@10",), n_boot=200, progress=False)
        glob, per_user = beyond_accuracy(rep.top_items, rep.users, split.train, split.test, k=10,
                                         item_features=ds.catalog.attributes)
        out[name] = (rep, glob, per_user)
    pop_glob, pop_user = out["popular"][1], out["popular"][2]
    knn_glob, knn_user = out["itemknn"][1], out["itemknn"][2]
    # MostPopular only recommends head items, so its long-tail share is exactly 0 and exposure is concentrated
    assert pop_user["aplt@10"].max() == 0.0
    assert knn_glob["catalog_coverage@10"] > 2 * pop_glob["catalog_coverage@10"]
    assert pop_glob["gini@10"] > knn_glob["gini@10"] > 0.5
    assert np.mean(knn_user["arp@10"]) < np.mean(pop_user["arp@10"])
    assert 0.0 < np.mean(knn_user["ild@10"]) <= 1.0  # genres as attributes
    rows = compare_paired({n: r[0].per_user["ndcg@10"] for n, r in out.items()}, test="wilcoxon")
    assert rows[0]["model"] == "popular" and rows[0]["significant"]  # item-kNN beats popularity on ML-100K


@pytest.mark.slow
def test_protocol_check_ml100k_runs(ml100k):
    from recforge.evaluate.protocol import protocol_check

    _, split = ml100k
    models = {n: get_model(n)().fit(split.train) for n in ("popular", "itemknn", "ease")}
    res = protocol_check(models, split, n_negatives=100, n_boot=50)
    for name in models:
        assert res["sampled"][name]["hit@10"] > res["full"][name]["hit@10"]  # 100 negatives inflate every model
