"""SASRec served through faiss on a large synthetic catalogue: recall@10 of the index against exact scoring, index
build time and /recommend latency, exact vs ANN.

The log is synthetic: items fall into clusters, each user draws a session from one or two clusters, so the trained
item vectors have structure (as real embeddings do). SASRec is trained with a sampled loss (a full softmax over
a million items does not fit this benchmark), then served twice: ``index="exact"`` (one matrix product over the
catalogue) and ``index="hnsw"`` or ``"ivf"`` (faiss over the Embedder's vectors, candidates re-scored exactly). Recall@10 is
measured by the server itself on the vectors of 200 training users (``/ready``'s ``index.recall``) and again here on
the answers of /recommend for other users.

    python bench/serve_ann.py --items 1000000 --users 20000 --index ivf,hnsw --nprobe 128,256 \
        --ef-search 128,256,512 --model-dir bench/out/sasrec-1m --out bench/results/serve_ann_1m.json

Search-time parameters (``nprobe``, ``ef_search``) are swept on one built index (``set_search_params``); each index
kind is built once, and its build time is reported with the load average just before the build.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient

from recforge.data.interactions import Interactions
from recforge.models.base import load_model
from recforge.models.sasrec import SASRec
from recforge.serve import ServeSettings, create_app
from recforge.train.trainer import TrainConfig


def synthetic_log(n_items: int, n_users: int, per_user: int, n_clusters: int, seed: int = 0) -> Interactions:
    """Users x ``per_user`` events; each user reads from 1-2 clusters of items (popularity Zipf within a cluster)."""
    rng = np.random.default_rng(seed)
    cluster_of_user = rng.integers(0, n_clusters, size=(n_users, 2))
    size = n_items // n_clusters
    second = rng.random((n_users, per_user)) < 0.3
    cluster = np.where(second, cluster_of_user[:, 1:], cluster_of_user[:, :1])
    offset = np.minimum(rng.zipf(1.2, size=(n_users, per_user)) - 1, size - 1)
    items = (cluster * size + offset + 1).ravel()
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    times = np.tile(np.arange(per_user), n_users)
    # make sure every item id exists once, so the catalogue really has n_items items
    extra = np.setdiff1d(np.arange(1, n_items + 1), items)
    users = np.concatenate([users, rng.integers(1, n_users + 1, len(extra))])
    items = np.concatenate([items, extra])
    times = np.concatenate([times, np.full(len(extra), -1)])
    return Interactions.from_arrays(users, items, time=times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--per-user", type=int, default=20)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--index", default="hnsw,ivf", help="hnsw and/or ivf, comma-separated, measured one after another")
    ap.add_argument("--m", type=int, default=32, help="hnsw: graph degree")
    ap.add_argument("--ef-construction", type=int, default=64, help="hnsw: build-time beam width")
    ap.add_argument("--ef-search", default="128,256,512", help="hnsw; several, comma-separated, are measured on the "
                                                                "same index one after another")
    ap.add_argument("--nlist", type=int, default=1024, help="ivf")
    ap.add_argument("--nprobe", default="128,256", help="ivf; several, comma-separated, as --ef-search")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="keep the trained model here and reuse it when it exists (same arguments)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    if args.model_dir is not None and (args.model_dir / "meta.json").is_file():
        model = load_model(args.model_dir)
    else:
        log = synthetic_log(args.items, args.users, args.per_user, args.clusters)
        model = SASRec(dim=args.dim, n_heads=1, n_layers=1, max_len=args.per_user, loss="bce", n_negatives=8,
                       train=TrainConfig(epochs=args.epochs, batch_size=256, device="cpu")).fit(log)
        if args.model_dir is not None:
            model.save(args.model_dir)
    train_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="serve-ann-"))
    exact_app = create_app(model, ServeSettings(feedback_db=str(tmp / "exact.sqlite"), index="exact"))
    rng = np.random.default_rng(1)
    users = [model.user_vocab.ids[i] for i in rng.choice(model.n_users, args.queries, replace=False)]
    kinds = [k.strip() for k in args.index.split(",")]
    if not set(kinds) <= {"hnsw", "ivf"}:
        raise SystemExit(f"--index takes hnsw and/or ivf, got {args.index!r}")
    rows = []
    with TestClient(exact_app) as exact:
        want, exact_lat = [], []
        for user in users:
            t = time.perf_counter()
            want.append({x["item"] for x in exact.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]})
            exact_lat.append(time.perf_counter() - t)
        for kind in kinds:
            name, sweep = (("ef_search", args.ef_search) if kind == "hnsw" else ("nprobe", args.nprobe))
            values = [int(v) for v in sweep.split(",")]
            params = ({"m": args.m, "ef_construction": args.ef_construction, "ef_search": values[0]} if kind == "hnsw"
                      else {"nlist": args.nlist, "nprobe": values[0]})
            load_build = os.getloadavg()[0]
            t0 = time.perf_counter()
            ann_app = create_app(model, ServeSettings(feedback_db=str(tmp / f"{kind}.sqlite"), index=kind,
                                                      index_params=params))
            build_s = time.perf_counter() - t0
            retriever = ann_app.state.recforge.handle.retriever
            info = dict(retriever.info)  # the server's own recall@10, measured at build time with values[0]
            with TestClient(ann_app) as ann:
                for value in values:
                    retriever.set_search_params(**{name: value})
                    hits, lat = [], []
                    for user, expected in zip(users, want):
                        t = time.perf_counter()
                        got = ann.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
                        lat.append(time.perf_counter() - t)
                        hits.append(len(expected & {x["item"] for x in got}) / 10)
                    row = {
                        "items": model.n_items, "users": model.n_users,
                        "dim_served": model.item_embeddings().shape[1], "index": kind,
                        "index_params": {**params, name: value}, "train_or_load_s": train_s,
                        "handle_build_s": build_s, "index_build_s": info["build_s"],
                        "server_recall_at_10": info["recall"] if value == values[0] else None,
                        "recall_at_10_recommend": float(np.mean(hits)), "queries": len(users),
                        "exact_p50_ms": float(np.percentile(exact_lat, 50) * 1e3),
                        "exact_p99_ms": float(np.percentile(exact_lat, 99) * 1e3),
                        "ann_p50_ms": float(np.percentile(lat, 50) * 1e3),
                        "ann_p99_ms": float(np.percentile(lat, 99) * 1e3),
                        "load_avg_1m_start": load0, "load_avg_1m_before_build": load_build,
                        "load_avg_1m_end": os.getloadavg()[0], "cores": os.cpu_count(),
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                    if args.out is not None:  # written after every row: a run cut short keeps what it measured
                        args.out.parent.mkdir(parents=True, exist_ok=True)
                        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
