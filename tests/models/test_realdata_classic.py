"""Classic models on real data (RECFORGE_DATA_DIR): quick ML-100K sanity, and the Amazon Beauty EASE target (slow)."""

from __future__ import annotations

import pytest

from recforge.data.datasets import load_dataset
from recforge.data.split import Split, leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.models.ease import EASE
from recforge.models.itemknn import ItemKNN
from recforge.models.popular import MostPopular

pytestmark = pytest.mark.realdata


def _refit_split(name: str, data_dir) -> Split:
    """Leave-last-out; train = train + validation (the benchmark's protocol after tuning)."""
    split = leave_last_out(load_dataset(name, data_dir=data_dir).interactions, n=1, valid=True)
    return Split(train=split.train.concat(split.valid), test=split.test, name="leave_last_out+refit")


def test_ml100k_item_models_beat_popularity(data_dir):
    split = _refit_split("ml-100k", data_dir)
    ndcg = {
        type(m).__name__: evaluate(m.fit(split.train), split, metrics=("ndcg@10",), progress=False).metrics["ndcg@10"]
        for m in (MostPopular(), ItemKNN(), EASE(l2=100.0))
    }
    assert ndcg["EASE"]["ci_low"] > ndcg["MostPopular"]["mean"], ndcg
    assert ndcg["ItemKNN"]["mean"] > ndcg["MostPopular"]["mean"], ndcg
    assert ndcg["EASE"]["mean"] > ndcg["ItemKNN"]["mean"], ndcg


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a float64 Cholesky of 12,101^2: ~1 CPU-minute, far longer on a loaded machine
def test_beauty_ease_level(data_dir):
    """EASE on Amazon Beauty (leave-last-out, refit on train+valid, full ranking, seen masked) with the validation-
    chosen lambda. Issue 2's target is NDCG@10 >= 0.050; measured 0.0445 (docs/benchmarks.md), so this guards the
    measured level, not the target, which is NOT reached."""
    split = _refit_split("amazon-beauty", data_dir)
    report = evaluate(EASE(l2=LAMBDA_BEAUTY).fit(split.train), split, metrics=("ndcg@10",), progress=False)
    assert report.info["n_users"] == 22363 and report.info["n_items"] == 12101
    assert report.mean("ndcg@10") >= 0.043, report.metrics


#: lambda chosen on validation by bench/classic.py from {50, 100, 200} (see docs/benchmarks.md, "Classic models")
LAMBDA_BEAUTY = 50.0
