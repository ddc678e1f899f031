"""Cold-start items: which models can recommend an item nobody has touched, and what it costs on the warm items.

Every model is fitted twice: on a cold-item split (``cold_item_holdout``: a fraction of the items never occur in
training; each eligible user's last event on one of them is held out) and on the warm leave-last-out split of the same
log. Reported, tie-aware (``ties="expected"``: models that give every cold item the same score get chance, not the
luck of an index order), with bootstrap 95 % CIs:

- cold-only: the cold target ranked among the cold items only;
- cold among all: the cold target ranked among all unseen items;
- warm: leave-last-out HR@10 of the model fitted on the warm split.

Models (``--models``, comma-separated):

- ``random``, ``popular``;
- ``genre``: zero-shot over multi-hot genre (+ decade of the title's year) vectors, mean of the last 5 items, cosine;
- ``text_knn:<embedder>``: zero-shot over text vectors of the ``kv`` sentences (mean of the last 5 items, cosine);
- ``sasrec``: ID-SASRec, reported twice: as fitted, and with every cold item scored by one shared token (the mean
  of their embeddings: they tie, so the tie-aware metrics give them chance among themselves);
- ``text_sasrec:<tower>:<embedder>``: text_sasrec with that item tower (text, attr, text+attr, text+id); its cold
  fit calibrates the cold offset on the split's validation events (cold targets of other users), and the row also
  reports the uncalibrated cold-among-all figure.

Neural models early-stop on validation (``--patience`` epochs without a better validation NDCG@10, at most
``--budget-s`` seconds per fit): the warm fit on the warm validation events; ID-SASRec's cold fit trains for the warm
fit's best epoch count (its cold validation targets are unreachable by construction); text_sasrec's cold fit
early-stops on the cold validation targets. Each fit's validation curve (NDCG@10 per epoch) is kept in the results.
``--split-seed`` draws the cold items (0, as the cold-start protocol fixes it); ``--seed`` seeds the models.
Torch runs on ``--threads`` CPU threads (1 by default: the machine is shared).

    RECFORGE_DATA_DIR=... python bench/text_cold.py --data ml-1m --models random,popular,genre,text_knn:minilm
    RECFORGE_DATA_DIR=... python bench/text_cold.py --data ml-1m --models text_sasrec:text:minilm --seed 1 --budget-s 600
    python bench/text_cold.py --data ml-latest-small --mode temporal --models text_knn:minilm,text_sasrec:text:minilm

Prints one markdown row per model and appends a JSON line per model (with the command line and the load average)
to ``bench/results/text_cold.jsonl`` (``--out`` another file).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recforge.data.cold import cold_item_holdout, cold_items
from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.models.popular import MostPopular
from recforge.models.random import RandomRecommender
from recforge.models.sasrec import SASRec
from recforge.models.text_knn import TextKNN
from recforge.models.text_sasrec import TextSASRec
from recforge.protocols import HistoryScorer, ItemSide
from recforge.text import bind_items, split_year

METRICS = ("recall@10", "ndcg@10")
RESULTS = Path(__file__).parent / "results" / "text_cold.jsonl"
#: the sequence model settings shared by ID-SASRec and text_sasrec (early stopping picks the epoch count)
SEQ = {"dim": 64, "n_layers": 2, "n_heads": 2, "max_len": 100, "dropout": 0.2}
TRAIN = {"epochs": 200, "batch_size": 128, "lr": 1e-3, "patience": 5, "eval_users": 500, "threads": 1}


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


class SharedColdToken:
    """A fitted model whose items without training interactions all get one shared score (their mean): ID-SASRec
    with one token standing for every cold item (scores are linear in the item vector, so this equals a shared
    token whose vector is the mean of theirs)."""

    def __init__(self, model, cold: np.ndarray):
        self.model, self.name, self.cold = model, model.name, torch.from_numpy(cold)

    def _shared(self, s: torch.Tensor) -> torch.Tensor:
        s = s.clone()
        s[:, self.cold] = s[:, self.cold].mean(1, keepdim=True)
        return s

    def score(self, users):
        return self._shared(self.model.score(users))

    def score_histories(self, histories):
        return self._shared(self.model.score_histories(histories))


def genre_vectors(catalog) -> np.ndarray:
    """(n_items+1, n_genres+n_decades) multi-hot genres plus a one-hot decade of the title's year."""
    genres = np.asarray(catalog.attributes.todense(), np.float32)[:, 1:]
    decades = [None] + [(int(y) // 10 * 10 if y else None) for y in (split_year(t or "")[1] for t in catalog.titles[1:])]
    keys = sorted({d for d in decades if d is not None})
    dec = np.zeros((len(decades), len(keys)), np.float32)
    for i, d in enumerate(decades):
        if d is not None:
            dec[i, keys.index(d)] = 1.0
    return np.hstack([genres, dec])


def fmt(m: dict) -> str:
    return f"{m['mean']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


def make(spec: str, ds, train, seed: int):
    """A fitted model for ``spec`` on ``train`` (side information bound from the dataset's catalogue)."""
    kind, *rest = spec.split(":")
    if kind == "random":
        return RandomRecommender(seed=seed).fit(train)
    if kind == "popular":
        return MostPopular().fit(train)
    if kind == "genre":
        model = TextKNN()
        model.bind_items(ItemSide(item_ids=list(train.item_vocab.ids),
                                  vectors=genre_vectors(ds.catalog.align(train.item_vocab))))
        return model.fit(train)
    if kind == "text_knn":
        model = TextKNN(embedder={"name": rest[0]})
        bind_items(model, ds.catalog, train)
        return model.fit(train)
    raise ValueError(spec)


def fit_seq(spec: str, ds, train, valid, seed: int, budget_s: float, epochs: int | None = None,
            train_overrides: dict | None = None):
    """ID-SASRec or text_sasrec fitted on ``train``: early stopping on ``valid``, or exactly ``epochs`` epochs."""
    kind, *rest = spec.split(":")
    train_cfg = {**TRAIN, **(train_overrides or {}), "seed": seed, "budget_s": budget_s,
                 **({"epochs": epochs, "patience": 0} if epochs else {})}
    if kind == "sasrec":
        model = SASRec(**SEQ, train=train_cfg)
    else:
        tower, embedder = rest
        model = TextSASRec(**SEQ, tower=tower, embedder={"name": embedder}, train=train_cfg)
        bind_items(model, ds.catalog, train)
    return model.fit(train, None if epochs else valid)


def curve(result) -> dict:
    """A fit's learning curve: validation NDCG@10 per epoch, the chosen epoch, why it stopped, its seconds."""
    return {"valid_ndcg@10": [round(h["valid_ndcg@10"], 5) for h in result.history if "valid_ndcg@10" in h],
            "epochs": len(result.history), "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
            "out_of_budget": result.out_of_budget, "seconds": round(result.seconds, 1)}


def run(spec: str, ds, split, warm, cold: np.ndarray, seed: int, budget_s: float,
        train_overrides: dict | None = None) -> dict:
    n = ds.interactions.n_items
    t0 = time.perf_counter()
    out: dict = {"model": spec}
    if spec.split(":")[0] in ("sasrec", "text_sasrec"):
        warm_model = fit_seq(spec, ds, warm.train, warm.valid, seed, budget_s, train_overrides=train_overrides)
        out["warm_best_epoch"] = warm_model.train_result_.best_epoch
        out["warm_fit"] = curve(warm_model.train_result_)
        if spec.startswith("sasrec"):
            model = fit_seq(spec, ds, split.train, split.valid, seed, budget_s,
                            epochs=warm_model.train_result_.best_epoch, train_overrides=train_overrides)
        else:
            model = fit_seq(spec, ds, split.train, split.valid, seed, budget_s, train_overrides=train_overrides)
            out["cold_best_epoch"] = model.train_result_.best_epoch
            out["cold_offset_cosine"] = getattr(model, "cold_offset_", 0.0) * model.config.temperature
        out["cold_fit"] = curve(model.train_result_)
    else:
        model, warm_model = make(spec, ds, split.train, seed), make(spec, ds, warm.train, seed)
    kw = {"metrics": METRICS, "ties": "expected", "seed": seed, "progress": False}
    if spec == "sasrec":  # the same fitted models with one shared token for the items without interactions
        shared, warm_shared = SharedColdToken(model, cold), SharedColdToken(
            warm_model, np.flatnonzero(warm.train.item_counts()[1:] == 0) + 1)
        out["cold_token"] = {"cold_only": evaluate(candidates_only(shared, cold, n), split, **kw).metrics,
                             "cold_among_all": evaluate(shared, split, **kw).metrics,
                             "warm": evaluate(warm_shared, warm, **kw).metrics}
    only = evaluate(candidates_only(model, cold, n), split, **kw).metrics
    every = evaluate(model, split, **kw).metrics
    out.update(cold_only=only, cold_among_all=every, warm=evaluate(warm_model, warm, **kw).metrics)
    if spec.startswith("text_sasrec"):
        model.net_.out_bias.zero_()
        out["cold_among_all_uncalibrated"] = evaluate(model, split, **kw).metrics
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="ml-latest-small")
    ap.add_argument("--mode", default="random", choices=("random", "temporal"))
    ap.add_argument("--models", default="random,popular,genre,text_knn:hashing")
    ap.add_argument("--seed", type=int, default=0, help="model seed (initialisation, data order, dropout)")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the cold item draw (mode random)")
    ap.add_argument("--frac", type=float, default=0.2)
    ap.add_argument("--budget-s", type=float, default=360.0,
                    help="wall-clock seconds per neural fit (the run stays within about 15 minutes on busy cores)")
    ap.add_argument("--lr", type=float, default=TRAIN["lr"], help="learning rate of the neural models")
    ap.add_argument("--patience", type=int, default=TRAIN["patience"],
                    help="epochs without a better validation NDCG@10 before a neural fit stops")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON-lines file the rows are appended to")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    overrides = {"lr": args.lr, "patience": args.patience, "threads": args.threads}
    ds = load_dataset(args.data)
    split = cold_item_holdout(ds.interactions, args.frac, mode=args.mode, seed=args.split_seed)
    warm = leave_last_out(ds.interactions)
    cold = cold_items(split)
    s = split.summary()
    print(f"<!-- {args.data} {args.mode}: split {s['hash']}, {len(cold)} cold items (chance cold-only HR@10 "
          f"{10 / len(cold):.4f}), {s['test']} test users, {s['train']} training events -->")
    print("| model | cold-only HR@10 | cold-only NDCG@10 | cold among all HR@10 | warm leave-last-out HR@10 | s |")
    print("|---|---|---|---|---|---|")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python bench/text_cold.py " + shlex.join(sys.argv[1:])
    for spec in args.models.split(","):
        load = os.getloadavg()[0]
        r = run(spec, ds, split, warm, cold, args.seed, args.budget_s, overrides)
        r.update(budget_s=args.budget_s, data=args.data, mode=args.mode, frac=args.frac, seed=args.seed,
                 split_seed=args.split_seed, train=overrides, split_hash=s["hash"], n_cold=len(cold),
                 load_avg_1m_start=round(load, 1), load_avg_1m_end=round(os.getloadavg()[0], 1), command=command)
        extra = f" (uncalibrated {fmt(r['cold_among_all_uncalibrated']['recall@10'])})" \
            if "cold_among_all_uncalibrated" in r else ""
        rows = [(spec, r, extra)] + ([("sasrec + shared cold token", r["cold_token"], "")] if "cold_token" in r else [])
        for name, m, note in rows:
            print(f"| {name} | {fmt(m['cold_only']['recall@10'])} | {fmt(m['cold_only']['ndcg@10'])} | "
                  f"{fmt(m['cold_among_all']['recall@10'])}{note} | {fmt(m['warm']['recall@10'])} | {r['seconds']} |",
                  flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
