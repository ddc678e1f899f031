"""Run folders: train one model on one dataset split, evaluate it, and write everything needed to trust the numbers.

A run folder holds::

    config.toml      the resolved RunConfig (re-runnable with --config)
    run.json         model, dataset, split summary + hash, timings, provenance (seed, versions, git, hardware, sha256)
    metrics.json     {"valid": {...}, "test": {"ndcg@10": {"mean", "ci_low", "ci_high"}, ..., "_info": {...}}}
    per_user.parquet per-user test metrics and top-k lists (dense + external ids), for paired statistics
    model/           model.json + model.safetensors (load with recforge.models.base.load_model)
    train.log        the log of the run
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.config import apply_overrides, dump_toml, from_dict, load_toml, to_dict
from recforge.data.datasets import load_dataset
from recforge.data.split import Split
from recforge.errors import ConfigError, DataError
from recforge.evaluate.evaluator import Report, evaluate
from recforge.experiments.provenance import dataset_files, provenance
from recforge.models.base import load_model
from recforge.registry import get_model, resolve

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10", "ndcg@20", "recall@20")


@dataclass(frozen=True)
class DataConfig:
    """Which data to load. ``name`` is a registered dataset name or a path; ``options`` go to ``load_dataset``."""

    name: str = "ml-latest-small"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitConfig:
    """Which splitter (registry name) and its keyword arguments."""

    kind: str = "leave_last_out"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate: metrics, user batch size, seen-item masking, bootstrap resamples."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    batch_size: int = 1024
    exclude_seen: bool = True
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ConfigError("eval.metrics must not be empty")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``model`` holds ``name`` plus the model's own config fields."""

    model: dict[str, Any]
    seed: int = 0
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    eval: EvalConfig = EvalConfig()

    def __post_init__(self) -> None:
        if "name" not in self.model:
            raise ConfigError("model.name is required (e.g. model.name='ease')")


def resolve_config(
    model: str | None = None,
    data: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
) -> RunConfig:
    """Merge (config file) <- (CLI positional model/data) <- (--set overrides) into a validated RunConfig."""
    raw: dict[str, Any] = load_toml(config_file) if config_file else {}
    raw.setdefault("model", {})
    if model is not None:
        if raw["model"].get("name") not in (None, model):
            raw["model"] = {}  # a different model than the file's: its fields do not apply
        raw["model"]["name"] = model
    if data is not None:
        raw.setdefault("data", {})["name"] = data
    if seed is not None:
        raw["seed"] = seed
    raw = apply_overrides(raw, list(overrides))
    cfg = from_dict(RunConfig, raw)
    build_model(cfg)  # validates the model section early (unknown keys, bad values)
    return cfg


def build_model(cfg: RunConfig) -> Any:
    """Instantiate the configured model; its ``seed`` field (if any) follows the run seed unless set explicitly."""
    fields = {k: v for k, v in cfg.model.items() if k != "name"}
    cls = get_model(cfg.model["name"])
    names = {f.name for f in dataclasses.fields(cls.config_class)}
    if "seed" in names and "seed" not in fields:
        fields["seed"] = cfg.seed
    return cls(from_dict(cls.config_class, fields, prefix="model."))


def load_data(cfg: RunConfig) -> Any:
    """Load the configured dataset (named or path)."""
    return load_dataset(cfg.data.name, **cfg.data.options)


def make_split(cfg: RunConfig, interactions: Any) -> Split:
    """Apply the configured splitter, with a ConfigError for unknown parameters."""
    splitter = resolve("splitter", cfg.split.kind)
    allowed = set(inspect.signature(splitter).parameters) - {"data"}
    unknown = sorted(set(cfg.split.params) - allowed)
    if unknown:
        raise ConfigError(f"unknown split parameter(s) {unknown} for {cfg.split.kind} (known: {sorted(allowed)})")
    params = dict(cfg.split.params)
    if "seed" in allowed and "seed" not in params:
        params["seed"] = cfg.seed
    return splitter(interactions, **params)


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_out(cfg: RunConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    data = Path(cfg.data.name).stem if "/" in cfg.data.name else cfg.data.name
    return Path("runs") / f"{cfg.model['name']}-{data}-{stamp}"


def train_run(
    cfg: RunConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    dataset: Any = None,
    split: Split | None = None,
) -> Run | None:
    """Train ``cfg.model`` on the configured split, evaluate on valid and test, and write a run folder.

    ``dataset``/``split`` may be passed in to reuse an already loaded log (the quickstart trains several models).
    Under ``torchrun`` every process trains, but only rank 0 writes the folder; the other ranks return None.
    """
    out = Path(out) if out else default_out(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        _fit(cfg, out, resume, dataset, split)
        return None
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("recforge")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    written = False
    try:
        dump_toml(to_dict(cfg), out / "config.toml")
        dataset, split, model, t_data, fit_s = _fit(cfg, out, resume, dataset, split)
        for name in ("curves.json", "curves.png"):  # the trainer writes them next to its checkpoints
            if (out / "checkpoints" / name).is_file():
                shutil.copyfile(out / "checkpoints" / name, out / name)
        model.save(out / "model")
        ev = cfg.eval
        kw = {"metrics": ev.metrics, "batch_size": ev.batch_size, "exclude_seen": ev.exclude_seen, "n_boot": ev.n_boot,
              "seed": cfg.seed, "progress": progress}
        t2 = time.perf_counter()
        valid_report = evaluate(model, split, on="valid", **kw) if split.valid is not None else None
        test_report = evaluate(model, split, on="test", **kw)
        eval_s = time.perf_counter() - t2
        metrics = {"test": test_report.to_dict()}
        if valid_report is not None:
            metrics["valid"] = valid_report.to_dict()
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        write_per_user(out / "per_user.parquet", test_report, split)
        info = dict(getattr(dataset, "info", {}) or {})
        data_files = info.get("files") or dataset_files(info)
        meta = {
            "model": cfg.model["name"],
            "dataset": cfg.data.name,
            "dataset_info": {k: v for k, v in info.items() if k != "files"},
            "split": split.summary(),
            "split_hash": split.hash,
            "timings": {"data_s": round(t_data, 3), "fit_s": round(fit_s, 3), "eval_s": round(eval_s, 3)},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "provenance": provenance(seed=cfg.seed, data_files=data_files, split=split, config=to_dict(cfg)),
        }
        (out / "run.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        log.info("run written to %s", out)
        written = True
    finally:
        root.removeHandler(handler)
        handler.close()
        # A run that failed before its first checkpoint or saved model (bad config value, unknown dataset, ...)
        # holds nothing to keep: leave no half-made folder behind. Checkpoints (for --resume) and a model saved
        # before a later failure are kept.
        if not written and fresh and not any((out / name).exists() for name in ("checkpoints", "model")):
            shutil.rmtree(out, ignore_errors=True)
    run = Run(out)
    run.__dict__["model"] = model
    return run


def _fit(cfg: RunConfig, out: Path, resume: bool, dataset: Any, split: Split | None
         ) -> tuple[Any, Split, Any, float, float]:
    """Seed, load and split (unless given), build and fit the model: what every torchrun rank does.
    Returns (dataset, split, model, data seconds, fit seconds)."""
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    if split is None:
        dataset = dataset if dataset is not None else load_data(cfg)
        split = make_split(cfg, dataset.interactions)
    t_data = time.perf_counter() - t0
    log.info("split %s: %s", split.name, split.summary())
    model = build_model(cfg)
    t1 = time.perf_counter()
    model.fit(split.train, split.valid, **_fit_kwargs(model, cfg, out, resume))
    return dataset, split, model, t_data, time.perf_counter() - t1


def _fit_kwargs(model: Any, cfg: RunConfig, out: Path, resume: bool) -> dict[str, Any]:
    """Checkpoint folder and resume flag for models whose fit() takes them (the Trainer-based ones)."""
    params = inspect.signature(model.fit).parameters
    kwargs: dict[str, Any] = {}
    if "checkpoint_dir" in params:
        kwargs["checkpoint_dir"] = out / "checkpoints"
    if "resume" in params:
        kwargs["resume"] = resume
    elif resume:
        raise ConfigError(f"model {cfg.model['name']!r} does not support --resume")
    return kwargs


def write_per_user(path: Path, report: Report, split: Split) -> None:
    """Per-user metric values and top-k lists as Parquet (paired tests and reports read it)."""
    import polars as pl

    users = report.users
    cols: dict[str, Any] = {
        "user": users.astype(np.int64),
        "user_id": [str(u) for u in split.test.user_vocab.decode(users)],
    }
    for name, vals in report.per_user.items():
        cols[name] = vals
    cols["top_items"] = report.top_items.astype(np.int64).tolist()
    pl.DataFrame(cols).write_parquet(path)


def run_config(path: str | Path) -> RunConfig:
    """The resolved config of a (possibly unfinished) run folder."""
    file = Path(path) / "config.toml"
    if not file.is_file():
        raise DataError(f"not a run folder (missing config.toml): {path}")
    return from_dict(RunConfig, load_toml(file))


class Run:
    """A run folder on disk. ``model`` is loaded lazily."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        for name in ("config.toml", "metrics.json", "run.json"):
            if not (self.path / name).is_file():
                raise DataError(f"not a run folder (missing {name}): {self.path}")
        self.config = run_config(self.path)
        self.metrics: dict[str, Any] = json.loads((self.path / "metrics.json").read_text(encoding="utf-8"))
        self.meta: dict[str, Any] = json.loads((self.path / "run.json").read_text(encoding="utf-8"))

    @cached_property
    def model(self) -> Any:
        return load_model(self.path / "model")

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"Run({self.path})"


def load_run(path: str | Path) -> Run:
    """Open a run folder."""
    return Run(path)


def compare_runs(paths: list[str | Path], on: str = "test", force: bool = False) -> list[dict[str, Any]]:
    """Leaderboard rows (one per run) of ``metrics.json[on]``; refuses runs on different splits unless ``force``."""
    runs = [load_run(p) for p in paths]
    if not runs:
        raise ConfigError("compare needs at least one run folder")
    hashes = {r.meta.get("split_hash") for r in runs}
    if len(hashes) > 1 and not force:
        detail = ", ".join(f"{r.name}={r.meta.get('split_hash')}" for r in runs)
        raise ConfigError(f"runs were evaluated on different splits ({detail}); numbers are not comparable "
                          "(use --force to compare anyway)")
    rows = []
    for r in runs:
        if on not in r.metrics:
            raise ConfigError(f"run {r.name} has no {on!r} metrics")
        row = {"run": r.name, "model": r.meta.get("model"), "dataset": r.meta.get("dataset"),
               "split_hash": r.meta.get("split_hash"), "fit_s": r.meta.get("timings", {}).get("fit_s")}
        row["metrics"] = {k: v for k, v in r.metrics[on].items() if not k.startswith("_")}
        rows.append(row)
    return rows


def reevaluate(run: Run, on: str = "test", metrics: tuple[str, ...] | None = None, protocol: str = "full",
               progress: bool | None = None) -> Report:
    """Rebuild the run's split from its config, check the split hash, and evaluate the saved model again."""
    cfg = run.config
    split = make_split(cfg, load_data(cfg).interactions)
    if split.hash != run.meta.get("split_hash"):
        raise DataError(f"the data changed since the run: split hash {split.hash} != recorded {run.meta.get('split_hash')}")
    return evaluate(run.model, split, metrics=metrics or cfg.eval.metrics, on=on, batch_size=cfg.eval.batch_size,
                    exclude_seen=cfg.eval.exclude_seen, n_boot=cfg.eval.n_boot, seed=cfg.seed, protocol=protocol,
                    progress=progress)
