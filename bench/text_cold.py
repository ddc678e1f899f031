"""Cold-start items on ML-latest-small (bundled): random, popularity and the zero-shot text recommender (text_knn over
hashing and MiniLM vectors), three ways: cold targets ranked among the cold items only, among all items, and the
warm leave-last-out protocol. HR@10 and NDCG@10 with bootstrap 95% CIs, tie-aware (expected over random orders of
tied items: popularity and random tie on cold items).

    python bench/text_cold.py [--mode random|temporal] [--embedders hashing,minilm] [--seed 0]

Prints a markdown table (docs/text.md carries it). MiniLM needs the ``text`` extra; its vectors are cached.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from recforge.data.cold import cold_item_holdout, cold_items
from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.models.popular import MostPopular
from recforge.models.random import RandomRecommender
from recforge.models.text_knn import TextKNN
from recforge.protocols import HistoryScorer
from recforge.registry import resolve
from recforge.text.vectors import embed_items

METRICS = ("recall@10", "ndcg@10")


class CandidatesOnly:
    """Wraps a model so that only ``items`` (dense ids) can be ranked: the cold-only candidate protocol."""

    def __init__(self, model, items: np.ndarray, n_items: int):
        self.model, self.name = model, model.name
        self.mask = torch.full((n_items + 1,), -torch.inf)
        self.mask[torch.from_numpy(items)] = 0.0

    def score(self, users):
        return self.model.score(users) + self.mask


class HistoryCandidatesOnly(CandidatesOnly):
    """The same for a model that scores ad-hoc histories (it keeps that capability)."""

    def score_histories(self, histories):
        return self.model.score_histories(histories) + self.mask


def candidates_only(model, items: np.ndarray, n_items: int) -> CandidatesOnly:
    return (HistoryCandidatesOnly if isinstance(model, HistoryScorer) else CandidatesOnly)(model, items, n_items)


def fmt(report, metric: str) -> str:
    m = report.metrics[metric]
    return f"{m['mean']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="random", choices=("random", "temporal"))
    ap.add_argument("--embedders", default="hashing,minilm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frac", type=float, default=0.2)
    args = ap.parse_args()
    ds = load_dataset("ml-latest-small")
    data = ds.interactions
    split = cold_item_holdout(data, args.frac, mode=args.mode, seed=args.seed)
    warm = leave_last_out(data)
    cold = cold_items(split)
    catalog = ds.catalog.align(data.item_vocab)
    models = {"random": lambda: RandomRecommender(), "popular": lambda: MostPopular()}
    for name in args.embedders.split(","):
        t0 = time.perf_counter()
        vec = embed_items(catalog, resolve("embedder", name)(), "kv")
        print(f"<!-- {name}: {catalog.n_items} items, {'cached' if vec.cached else 'embedded'} in "
              f"{time.perf_counter() - t0:.1f}s -->")
        models[f"text_knn ({name})"] = lambda v=vec.vectors: TextKNN(item_vectors=v)
    summary = split.summary()
    print(f"<!-- split {summary['hash']}: {summary['n_cold_items']} cold items, {summary['test']} test users, "
          f"{summary['train']} training events -->")
    print("| model | cold-only HR@10 | cold-only NDCG@10 | cold among all HR@10 | warm leave-last-out HR@10 |")
    print("|---|---|---|---|---|")
    for name, make in models.items():
        model = make().fit(split.train)
        only = evaluate(candidates_only(model, cold, data.n_items), split, METRICS, ties="expected", seed=args.seed)
        every = evaluate(model, split, METRICS, ties="expected", seed=args.seed)
        warm_model = make().fit(warm.train)
        w = evaluate(warm_model, warm, METRICS, ties="expected", seed=args.seed)
        print(f"| {name} | {fmt(only, 'recall@10')} | {fmt(only, 'ndcg@10')} | {fmt(every, 'recall@10')} | "
              f"{fmt(w, 'recall@10')} |", flush=True)
    print(f"\nchance, cold-only HR@10: {10 / len(cold):.4f} ({len(cold)} cold items)")


if __name__ == "__main__":
    main()
