"""RecBole 1.2.1 side of bench/recbole_side_by_side.py. Runs ONLY under bench/.recbole-venv/bin/python.

Kept free of recforge imports: RecBole lives in its own venv (numpy 1.26, pandas 2.0) and is never a project
dependency. Prints one JSON object on the last stdout line.

    train  — run_recbole(model, "ml-100k", config_dict) with RecBole's sequential defaults and an epoch cap;
             per-epoch train / valid seconds are recorded by wrapping Trainer._train_epoch / _valid_epoch;
             ``--max-batches N`` stops each epoch after N batches and extrapolates its time to the full epoch.
    evalbeauty — full-ranking evaluation of every Beauty user (atomic file written by the orchestrator) by an
             untrained SASRec; the timing does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole reloads its own checkpoints with torch.load

import torch  # noqa: E402

SEQ_PROTOCOL = {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"}


def base_config(args: argparse.Namespace) -> dict:
    """RecBole's sequential defaults: max len 50, hidden 64, 2 layers, CE, batch 2048, seed 2020."""
    cfg = {
        "seed": 2020,
        "reproducibility": True,
        "train_batch_size": 2048,
        "MAX_ITEM_LIST_LENGTH": 50,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "eval_args": SEQ_PROTOCOL,
        "metrics": ["NDCG", "Recall"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "show_progress": False,
        "checkpoint_dir": args.workdir,
        "log_wandb": False,
        "epochs": args.epochs,
        "worker": 0,
    }
    if args.model in ("SASRec", "BERT4Rec"):
        cfg.update({"hidden_size": 64, "n_layers": 2})
    return cfg


def train(args: argparse.Namespace) -> dict:
    from recbole.quick_start import run_recbole
    from recbole.trainer import Trainer

    epochs: list[dict] = []
    orig_train, orig_valid = Trainer._train_epoch, Trainer._valid_epoch

    def timed_train(self, train_data, *a, **kw):
        n_total = len(train_data)
        data = _FirstBatches(train_data, args.max_batches) if args.max_batches else train_data
        t0, c0 = time.perf_counter(), time.process_time()
        out = orig_train(self, data, *a, **kw)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        n_run = min(args.max_batches or n_total, n_total)
        # A capped epoch is extrapolated linearly from the batches that ran (batches are equal-sized but the last).
        epochs.append({"train_s": seconds * n_total / n_run, "train_cpu_s": cpu * n_total / n_run,
                       "batches_run": n_run, "batches_per_epoch": n_total, "measured_s": seconds})
        return out

    def timed_valid(self, *a, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        out = orig_valid(self, *a, **kw)
        if epochs:
            epochs[-1]["valid_s"] = time.perf_counter() - t0
            epochs[-1]["valid_cpu_s"] = time.process_time() - c0
            epochs[-1]["valid_score"] = float(out[0])
        return out

    Trainer._train_epoch, Trainer._valid_epoch = timed_train, timed_valid
    t0 = time.perf_counter()
    res = run_recbole(model=args.model, dataset="ml-100k", config_dict=base_config(args), saved=True)
    total = time.perf_counter() - t0
    test = res["test_result"]
    train_s = sorted(e["train_s"] for e in epochs)
    return {
        "library": "recbole",
        "model": args.model,
        "epochs": epochs,
        "train_s_per_epoch_median": train_s[len(train_s) // 2] if train_s else None,
        "train_and_valid_s": sum(e["train_s"] + e.get("valid_s", 0.0) for e in epochs),
        "total_s": total,
        "test_ndcg@10": float(test["ndcg@10"]),
        "test_recall@10": float(test["recall@10"]),
        "best_valid_ndcg@10": float(res["best_valid_score"]),
    }


class _FirstBatches:
    """A RecBole dataloader that stops after ``n`` batches (everything else is delegated)."""

    def __init__(self, loader, n: int):
        self._loader, self._n = loader, n

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def __len__(self) -> int:
        return min(self._n, len(self._loader))

    def __iter__(self):
        for i, batch in enumerate(self._loader):
            if i >= self._n:
                break
            yield batch


def eval_beauty(args: argparse.Namespace) -> dict:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    cfg = base_config(args) | {
        "data_path": args.data_path,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
    }
    config = Config(model="SASRec", dataset="beauty", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    _, _, test_data = data_preparation(config, dataset)
    load_s = time.perf_counter() - t0
    model = SASRec(config, test_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    t1, c1 = time.perf_counter(), time.process_time()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_s, eval_cpu_s = time.perf_counter() - t1, time.process_time() - c1
    return {
        "library": "recbole",
        "task": "eval-beauty",
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        "n_test_users": int(len(test_data._dataset)),
        "load_s": load_s,
        "eval_s": eval_s,
        "eval_cpu_s": eval_cpu_s,
        "ndcg@10_untrained": float(result["ndcg@10"]),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=["train", "evalbeauty"])
    p.add_argument("--model", default="SASRec")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-batches", type=int, default=0, help="train: cap each epoch at this many batches; "
                   "s/epoch is extrapolated from them (0 = full epochs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default="bench/out/recbole-saved")
    p.add_argument("--data-path", default="bench/out/recbole-data")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    out = train(args) if args.task == "train" else eval_beauty(args)
    out["threads"] = torch.get_num_threads()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_avg_1m"] = os.getloadavg()[0]
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
