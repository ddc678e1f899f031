"""Run under torchrun by tests/train/test_distributed.py: trains SASRec on a planted sequential world and, on rank 0,
writes the test NDCG@10 and the world size to the JSON file given as argv[1]."""

from __future__ import annotations

import json
import os
import sys

import torch.distributed as dist

from recforge.data.split import leave_last_out
from recforge.data.synthetic import sequential_world
from recforge.evaluate.evaluator import evaluate
from recforge.models.sasrec import SASRec, SASRecConfig
from recforge.train.trainer import TrainConfig


def main() -> None:
    split = leave_last_out(sequential_world(n_users=300, n_items=80, length=12, seed=3))
    cfg = SASRecConfig(dim=32, n_layers=1, n_heads=1, max_len=12, dropout=0.1,
                       train=TrainConfig(epochs=int(sys.argv[2]), batch_size=64, lr=5e-3, threads=1, patience=0))
    model = SASRec(cfg).fit(split.train, split.valid)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if int(os.environ.get("RANK", "0")) == 0:
        ndcg = evaluate(model, split, metrics=("ndcg@10",), n_boot=0, progress=False).mean("ndcg@10")
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            json.dump({"world": world, "ndcg@10": ndcg, "history": model.train_result_.history}, f)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
