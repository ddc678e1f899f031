"""RecBole 1.2.1 side of bench/recbole_side_by_side.py. Runs ONLY under bench/.recbole-venv/bin/python.

Kept free of recforge imports: RecBole lives in its own venv (numpy 1.26, pandas 2.0) and is never a project
dependency. Prints one JSON object on the last stdout line (and rewrites ``--partial`` after every epoch).

    train — RecBole's own pipeline (Config, create_dataset, data_preparation, Trainer.fit, Trainer.evaluate) with its
            sequential defaults: early stopping on valid NDCG@10 with ``stopping_step`` 10, lr 1e-3, max length 50.
            Every epoch records the validation NDCG@10 against wall-clock and process CPU seconds since training
            began. ``--max-seconds`` caps the run: it stops once the next epoch would end past the cap (judged by the
            last epoch's duration); the test is then scored with the best checkpoint saved so far.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole reloads its own checkpoints with torch.load

import torch  # noqa: E402

SEQ_PROTOCOL = {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"}
#: RecBole's resolved settings recorded with every run (defaults included, as RecBole filled them in).
CONFIG_KEYS = ("learning_rate", "stopping_step", "epochs", "train_batch_size", "eval_batch_size",
               "MAX_ITEM_LIST_LENGTH", "hidden_size", "inner_size", "n_layers", "n_heads", "hidden_dropout_prob",
               "attn_dropout_prob", "loss_type", "weight_decay", "seed")


class _Cap(Exception):
    """Raised from RecBole's end-of-epoch callback when the next epoch would pass the wall-clock cap."""


def base_config(args: argparse.Namespace) -> dict:
    """RecBole's sequential defaults: max len 50, hidden 64, 2 layers, CE, batch 2048, lr 1e-3, stopping_step 10."""
    cfg = {
        "seed": 2020,
        "reproducibility": True,
        "train_batch_size": 2048,
        "learning_rate": args.lr,
        "epochs": args.epochs,
        "stopping_step": 10,
        "eval_step": 1,
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
        "worker": 0,
    }
    if args.model in ("SASRec", "BERT4Rec"):  # their defaults, written out (GRU4Rec's differ)
        cfg |= {"hidden_size": 64, "n_layers": 2}
    if args.dataset != "ml-100k":  # an atomic file written by the orchestrator (user, item, position as timestamp)
        cfg |= {"data_path": args.data_path, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
                "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp"}
    return cfg


def train(args: argparse.Namespace) -> dict:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    config = Config(model=args.model, dataset=args.dataset, config_dict=base_config(args))
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    prep_s = time.perf_counter() - t0

    curve: list[dict] = []
    state = {"stopped_by": "epochs"}
    orig_train = Trainer._train_epoch

    def timed_train(self, *a, **kw):
        s, c = time.perf_counter(), time.process_time()
        out = orig_train(self, *a, **kw)
        state["train_s"], state["train_cpu_s"] = time.perf_counter() - s, time.process_time() - c
        return out

    Trainer._train_epoch = timed_train
    w0, c0 = time.perf_counter(), time.process_time()

    def on_epoch(epoch_idx: int, valid_score: float) -> None:
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        last = wall - (curve[-1]["elapsed_s"] if curve else 0.0)
        curve.append({"epoch": epoch_idx + 1, "elapsed_s": wall, "elapsed_cpu_s": cpu, "train_s": state["train_s"],
                      "train_cpu_s": state["train_cpu_s"], "valid_ndcg@10": float(valid_score),
                      "load_avg_1m": os.getloadavg()[0]})
        print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
        if args.partial:
            _save(_result(args, curve, prep_s, "in progress", None, trainer), args.partial)
        if args.max_seconds and wall + last > args.max_seconds:
            raise _Cap

    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=on_epoch)
        if trainer.cur_step >= trainer.stopping_step:
            state["stopped_by"] = "early stopping"
    except _Cap:
        state["stopped_by"] = f"wall-clock cap ({args.max_seconds:.0f} s)"
    fit_wall, fit_cpu = time.perf_counter() - w0, time.process_time() - c0
    test = trainer.evaluate(test_data, load_best_model=True, model_file=trainer.saved_model_file,
                            show_progress=False)
    out = _result(args, curve, prep_s, state["stopped_by"], test, trainer)
    out |= {"fit_s": fit_wall, "fit_cpu_s": fit_cpu}
    return out


def _result(args: argparse.Namespace, curve: list[dict], prep_s: float, stopped_by: str, test: dict | None,
            trainer) -> dict:
    best = max(curve, key=lambda c: c["valid_ndcg@10"]) if curve else None
    return {
        "library": "recbole",
        "model": args.model,
        "dataset": args.dataset,
        "lr": args.lr,
        "config": {k: trainer.config[k] for k in CONFIG_KEYS},
        "max_seconds": args.max_seconds,
        "prep_s": prep_s,
        "stopped_by": stopped_by,
        "epochs_run": len(curve),
        "best_epoch": best["epoch"] if best else None,
        "best_valid_ndcg@10": best["valid_ndcg@10"] if best else None,
        "test_ndcg@10": float(test["ndcg@10"]) if test else None,
        "test_recall@10": float(test["recall@10"]) if test else None,
        "curve": curve,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1m": os.getloadavg()[0],
    }


def _save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=["train"])
    p.add_argument("--model", default="SASRec", choices=["SASRec", "BERT4Rec"])
    p.add_argument("--dataset", default="ml-100k", help="ml-100k (shipped with RecBole) or beauty (--data-path)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=300, help="RecBole's default epoch cap")
    p.add_argument("--max-seconds", type=float, default=0.0, help="wall-clock cap on training (0 = none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", default="bench/out/recbole-saved")
    p.add_argument("--data-path", default="bench/out/recbole-data")
    p.add_argument("--partial", type=Path, default=None, help="rewrite this JSON after every epoch")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    out = train(args)
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
