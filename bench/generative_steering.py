"""Preference steering of a generative retriever on MovieLens-100K (leave-last-out, full catalogue, seen items masked).

A SID table is built from the training split (cf + the catalogue's genres); two ``tiger`` (or ``tiger_decoder``)
models are trained with the same seed and budget: one with the target item's genres as preference tokens (randomly
dropped, ``preference_drop``), one without. On the test users:

- **unconditioned Recall@10 / NDCG@10** of both (bootstrap CIs, paired bootstrap of the difference): steering must not
  cost the ordinary request anything;
- for every genre g with at least ``--min-items`` items: the share of g among each user's top-10 without a preference
  and with ``--prefer genre=g`` (the same request, steered), and the lift (points).

One JSON line per seed in --out. ``--save-model DIR`` keeps the steerable model; ``--diagnose DIR`` loads one and,
instead of training, writes where its steering goes for every genre (seeded test users, ``--eval-users``):

- the genre's **likelihood mass** under exact decoding (the sum of its items' normalised likelihoods), unsteered and
  steered: whether the model's distribution moves at all, or only the beam misses it;
- the genre's share of the top-10 by **beam** and by **exact** decoding, steered;
- the **first-level mass** on the first codes the genre dominates (at least half their items), unsteered and steered,
  and how concentrated the genre's items are in the SID table (first codes holding 80% of them, the mean share of the
  genre among the items of its items' first codes);
- the three genres that fill the steered top-10, and the genre's share when steered together with its most frequent
  companion genre (what the training prefixes of its items usually hold);
- the training windows whose last item (the one the preference tokens condition) holds the genre, and the norm of
  the genre's learnt preference embedding.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/generative_steering.py --data ml-100k \
        --model tiger_decoder --diagnose bench/out/ml100k-steer --eval-users 300 \
        --out bench/results/generative-steering-ml100k-diagnose.jsonl

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/generative_steering.py --data ml-100k \
        --model tiger --budget-min 4 --out bench/results/generative-steering-ml100k.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from recforge.config import apply_overrides, from_dict, to_dict
from recforge.data.datasets import load_dataset
from recforge.data.jagged import gather_jagged
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.metrics.stats import paired_bootstrap
from recforge.models.base import load_model
from recforge.models.generative.semantic_ids import SemanticIds, SidConfig, build_semantic_ids
from recforge.models.generative.tiger import Tiger, TigerConfig
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig
from recforge.models.rank import mask_seen, top_k

log = logging.getLogger("bench.generative_steering")
METRICS = ("recall@10", "ndcg@10")
MODELS = {"tiger": (Tiger, TigerConfig), "tiger_decoder": (TigerDecoder, TigerDecoderConfig)}
#: the models one run trains (same seed and settings): with the target's genres as preference tokens, and without
ARMS = {"steerable": {"preference": "genre"}, "plain": {"preference": ""}}


def genre_matrix(sids, group: str = "genre") -> tuple[np.ndarray, list[str]]:
    """(n_items+1, G) bool: item has genre g; and the genre names "genre=..." (from the SID table's attributes)."""
    names = list(sids.attribute_names)
    cols = [j for j, n in enumerate(names) if n.split("=", 1)[0] == group]
    dense = sids.attributes.tocsc()[:, cols].toarray() > 0
    return dense, [names[j] for j in cols]


def run_seed(args: argparse.Namespace, split, sid_dir: Path, sids, seed: int) -> dict:
    cls, cfg_cls = MODELS[args.model]
    base = {"sid": str(sid_dir), "dim": args.dim, "n_layers": args.layers, "n_heads": args.heads,
            "beam": args.beam, "max_items": 20,
            "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                      "threads": 1, "seed": seed, "eval_users": args.eval_users, "budget_s": args.budget_min * 60}}
    row: dict = {"model": args.model, "data": args.data, "seed": seed, "sid_hash": sids.hash}
    reports, steerable = {}, {}
    for arm in sorted(args.arms, key=lambda a: a == "plain", reverse=True):  # the plain arm first
        cfg = from_dict(cfg_cls, apply_overrides({**base, **ARMS[arm]}, args.set))
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        model = cls(cfg).fit(split.train, split.valid)
        fit_s = time.perf_counter() - t0
        rep = evaluate(model, split, metrics=METRICS, on="test", progress=False)
        reports[arm] = rep
        row[arm] = {"config": to_dict(cfg), "fit_s": round(fit_s, 1), "epochs_run": len(model.train_result_.history),
                    "best_epoch": model.train_result_.best_epoch,
                    "curve": model.train_result_.history,
                    "test": rep.metrics, "load_avg_1m": [load0, os.getloadavg()[0]]}
        if arm != "plain":
            steerable[arm] = model
            if args.save_model:
                model.save(args.save_model / arm)
    has, names = genre_matrix(sids)
    t0 = time.perf_counter()
    for arm, model in steerable.items():
        if "plain" in reports:
            row[arm]["unconditioned_diff"] = {
                m: paired_bootstrap(reports[arm].per_user[m], reports["plain"].per_user[m], seed=seed) for m in METRICS}
        base_top = reports[arm].top_items
        genres = []
        for g, name in enumerate(names):
            if has[1:, g].sum() < args.min_items:
                continue
            with model.steer([name]):
                steered = evaluate(model, split, metrics=METRICS, on="test", progress=False)
            before = has[base_top, g].mean(1)  # (U,) share of the genre in each user's top-10
            after = has[steered.top_items, g].mean(1)
            genres.append({"genre": name, "items": int(has[1:, g].sum()), "share_before": float(before.mean()),
                           "share_steered": float(after.mean()), "lift_points": float(100 * (after - before).mean()),
                           "steered_recall@10": steered.metrics["recall@10"]["mean"]})
            log.info("%s %s: %.3f -> %.3f", arm, name, before.mean(), after.mean())
        row[arm]["genres"] = genres
        row[arm]["mean_lift_points"] = float(np.mean([g["lift_points"] for g in genres]))
        row[arm]["min_lift_points"] = float(np.min([g["lift_points"] for g in genres]))
    row["steer_eval_s"] = round(time.perf_counter() - t0, 1)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def _ranked(model, jag, seen, decoding: str, preference: list[str]) -> tuple[torch.Tensor, np.ndarray]:
    """(scores (B, n_items+1) as decoded, top-10 items (B, 10) with seen items masked) under ``decoding``, steered by
    ``preference`` (none: the unconditioned request)."""
    model.config = dataclasses.replace(model.config, decoding=decoding)
    with model.steer(preference) if preference else contextlib.nullcontext():
        scores = model.score_histories(jag).clone()
    masked = scores.clone()
    mask_seen(masked, seen)
    return scores, top_k(masked, 10).items.numpy()


def diagnose(args: argparse.Namespace, split, sids) -> dict:
    """Where a saved steerable model's steering goes, genre by genre (see the module docstring)."""
    model = load_model(args.diagnose)
    model.check_sid_table(args.sid_dir)
    has, names = genre_matrix(sids)
    users = np.sort(np.random.default_rng(0).choice(np.unique(split.test.user), args.eval_users, replace=False))
    hist = split.train.concat(split.valid)
    items, offsets = hist.sequences()
    jag = gather_jagged(items, offsets, users)
    seen = hist.to_csr()[users]
    first = model.codes_[:, 0].numpy()  # (n_items+1,) each item's first code (row 0: padding)
    n_codes = int(first[1:].max()) + 1
    code_items = np.bincount(first[1:], minlength=n_codes)
    # training events per genre and the genre pairs their targets hold (what the training prefixes read)
    train_items = split.train.item
    events = has[train_items].sum(0)
    pair = has[train_items].T.astype(np.int64) @ has[train_items].astype(np.int64)  # (G, G) co-occurrence in events
    # the preference tokens condition only the last item of each training window: how many windows end on the genre
    windows = model._training_rows(*split.train.sequences())
    conditioned = has[windows.windows[:, windows.target_col].numpy()].sum(0)
    token = {n: i + 1 for i, n in enumerate(model.preference_values())}
    norms = model.net_.prefix.weight.detach().norm(dim=1).numpy()  # (values+1,) the learnt preference embeddings
    t0 = time.perf_counter()
    base_exact, _ = _ranked(model, jag, seen, "exact", [])
    base_p = base_exact.exp().numpy()  # (B, n_items+1) normalised item likelihoods
    _, beam_base_top = _ranked(model, jag, seen, "beam", [])
    load0 = os.getloadavg()[0]
    rows = []
    for g, name in enumerate(names):
        n_g = int(has[1:, g].sum())
        if n_g < args.min_items:
            continue
        ex, ex_top = _ranked(model, jag, seen, "exact", [name])
        _, beam_top = _ranked(model, jag, seen, "beam", [name])
        p = ex.exp().numpy()
        per_code = np.bincount(first[1:], weights=has[1:, g], minlength=n_codes)  # the genre's items per first code
        purity = per_code / np.maximum(code_items, 1)
        dominated = purity >= 0.5
        on_codes = dominated[first]  # (n_items+1,) items under a first code the genre dominates
        on_codes[0] = False
        fill = has[beam_top].mean((0, 1))  # (G,) each genre's share of the steered beam top-10
        others = [j for j in np.argsort(-fill) if j != g][:3]
        row_pairs = pair[g].copy()
        row_pairs[g] = -1
        partner = int(np.argmax(row_pairs))
        _, pair_top = _ranked(model, jag, seen, "beam", [name, names[partner]])
        rows.append({
            "genre": name, "items": n_g, "train_events": int(events[g]), "train_windows": len(windows),
            "conditioned_windows": int(conditioned[g]), "token_norm": float(norms[token[name]]),
            "single_genre_items": float((has[1:, g] & (has[1:].sum(1) == 1)).sum() / n_g),
            "mass_unsteered": float((base_p * has[:, g]).sum(1).mean()),
            "mass_steered": float((p * has[:, g]).sum(1).mean()),
            "share_beam_unsteered": float(has[beam_base_top, g].mean()),
            "share_beam_steered": float(has[beam_top, g].mean()),
            "share_exact_steered": float(has[ex_top, g].mean()),
            "dominated_first_codes": int(dominated.sum()),
            "first_codes_for_80pct": int(np.searchsorted(np.cumsum(np.sort(per_code)[::-1]) / n_g, 0.8) + 1),
            "own_first_code_purity": float(purity[first[1:]][has[1:, g]].mean()),
            "first_level_mass_unsteered": float(base_p[:, on_codes].sum(1).mean()),
            "first_level_mass_steered": float(p[:, on_codes].sum(1).mean()),
            "steered_top10_filled_by": {names[j]: float(fill[j]) for j in others},
            "partner": names[partner], "partner_event_share": float(pair[g, partner] / max(events[g], 1)),
            "share_beam_steered_with_partner": float(has[pair_top, g].mean()),
        })
        log.info("%s", json.dumps(rows[-1]))
    model.config = dataclasses.replace(model.config, decoding="beam")
    return {"diagnose": str(args.diagnose), "data": args.data, "users": len(users), "genres": rows,
            "seconds": round(time.perf_counter() - t0, 1), "load_avg_1m": [load0, os.getloadavg()[0]],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--model", choices=tuple(MODELS), default="tiger")
    p.add_argument("--features", default="cf+attributes")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook-size", type=int, default=32)
    p.add_argument("--collisions", default="dedup")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--eval-users", type=int, default=500)
    p.add_argument("--budget-min", type=float, default=4, help="training budget per model (minutes)")
    p.add_argument("--min-items", type=int, default=50, help="steer only towards genres with this many items")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", nargs="*", default=[], help="model overrides key=value")
    p.add_argument("--sid-dir", type=Path, default=Path("bench/out/ml100k-sid"))
    p.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=["steerable", "plain"],
                   help="models to train (the unconditioned comparison needs plain)")
    p.add_argument("--save-model", type=Path, default=None, help="save each steerable arm under DIR/<arm>")
    p.add_argument("--diagnose", type=Path, default=None,
                   help="a saved steerable model: write where its steering goes instead of training")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    if args.diagnose:  # the SID table the model was trained on (its catalogue attributes name the genres)
        row = diagnose(args, split, SemanticIds.load(args.sid_dir))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
        return
    sids = build_semantic_ids(split.train, SidConfig(features=args.features, levels=args.levels,
                                                     codebook_size=args.codebook_size, collisions=args.collisions),
                              catalog=ds.catalog)
    sids.save(args.sid_dir)
    for seed in args.seeds:
        row = run_seed(args, split, args.sid_dir, sids, seed)
        log.info("%s", json.dumps(row)[:600])
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
