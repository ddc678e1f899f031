"""Recommender runs: train one model on one dataset split, evaluate it, and write everything needed to trust the numbers.

A recommender run is a :class:`~recforge.experiments.folder.RunFolder` of kind ``"recommender"``::

    config.toml      the resolved RunConfig (re-runnable with --config)
    run.json         model, dataset, split summary + hash, timings, provenance (seed, versions, git, hardware, sha256)
    metrics.json     {"valid": {...}, "test": {"ndcg@10": {"mean", "ci_low", "ci_high"}, ..., "_info": {...}}}
    per_user.parquet per-user test metrics and top-k lists (dense + external ids), for paired statistics
    artifact/        the fitted model in the one artifact format (load with recforge.models.base.load_model)
    curves.json      training curves of Trainer-based models (and curves.png), next to checkpoints/
    train.log        the log of the run

The config spells every registered thing one way, ``{"name": <registry key>, **its parameters}``::

    [model]
    name = "ease"
    l2 = 300.0
    [data]
    name = "ml-100k"          # a registered dataset or a file path; other keys go to load_dataset
    [split]
    name = "leave_last_out"   # a registered splitter; other keys are its parameters
    n = 1
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

from recforge.config import apply_overrides, from_dict, load_toml
from recforge.data.datasets import load_dataset
from recforge.data.io import option_hint
from recforge.data.split import Split
from recforge.errors import ConfigError, DataError
from recforge.evaluate.evaluator import Report, evaluate
from recforge.experiments.folder import RunFolder
from recforge.experiments.presets import read_preset
from recforge.experiments.provenance import dataset_files
from recforge.llm.toolkit import Toolkit, build_toolkit
from recforge.metrics.ranking import parse_metric
from recforge.models.base import load_model
from recforge.models.rank import SeenPolicy
from recforge.protocols import ItemSideConsumer, LLMUser
from recforge.registry import get_model, resolve
from recforge.text.side import bind_items
from recforge.text.templates import item_texts, text_fields

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10", "ndcg@20", "recall@20")
DEFAULT_DATA = "ml-latest-small"
DEFAULT_SPLITTER = "leave_last_out"


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate: metrics, user batch size, the repeat policy, bootstrap resamples."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    batch_size: int = 1024
    #: which already-seen items are masked: "all-seen", "none" or "seen-except-repeatable" (see models.rank);
    #: true / false mean "all-seen" / "none"
    exclude_seen: SeenPolicy | bool = "all-seen"
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ConfigError("eval.metrics must not be empty")
        for name in self.metrics:  # before any fitting: an unknown name must not cost a training run
            parse_metric(name)
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``model``, ``data`` and ``split`` each hold ``name`` (a registry key; for data a
    registered dataset or a path) plus that thing's own parameters: the model's config fields, ``load_dataset``'s
    options, the splitter's keyword arguments."""

    model: dict[str, Any]
    seed: int = 0
    data: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_DATA})
    split: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_SPLITTER})
    eval: EvalConfig = EvalConfig()
    #: fit on train + validation (settings fixed beforehand, e.g. by ``recforge tune``) and evaluate on test only;
    #: Trainer-based models then train for exactly ``train.epochs`` (there is no validation left to stop on)
    refit: bool = False

    def __post_init__(self) -> None:
        for section, example in (("model", "ease"), ("data", DEFAULT_DATA), ("split", DEFAULT_SPLITTER)):
            name = getattr(self, section).get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{section}.name is required (e.g. {section}.name='{example}'), got {name!r}")


def resolve_config(
    model: str | None = None,
    data: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    preset: str | None = None,
) -> RunConfig:
    """Merge (config file) <- (CLI positional model/data) <- (a shipped ``preset``, e.g. "tuned", for that model
    and dataset: its model table and ``refit``) <- (--set overrides) into a validated RunConfig."""
    raw: dict[str, Any] = load_toml(config_file) if config_file else {}
    raw.setdefault("model", {})
    raw.setdefault("data", {"name": DEFAULT_DATA})
    raw.setdefault("split", {"name": DEFAULT_SPLITTER})
    if model is not None:
        if raw["model"].get("name") not in (None, model):
            raw["model"] = {}  # a different model than the file's: its fields do not apply
        raw["model"]["name"] = model
    if data is not None:
        if raw["data"].get("name") not in (None, data):
            raw["data"] = {}  # a different dataset than the file's: its options do not apply
        raw["data"]["name"] = data
    if seed is not None:
        raw["seed"] = seed
    if preset is not None:
        raw.update(read_preset(preset, raw["model"].get("name") or "", raw["data"]["name"]))
    raw = apply_overrides(raw, list(overrides))
    cfg = from_dict(RunConfig, raw)
    build_model(cfg)  # validates the model and split sections early (unknown keys, bad values)
    _split_params(cfg)
    return cfg


def build_model(cfg: RunConfig) -> Any:
    """Instantiate the configured model; its ``seed`` field, or its trainer's ``train.seed``, follows the run seed
    unless set explicitly."""
    fields = {k: v for k, v in cfg.model.items() if k != "name"}
    cls = get_model(cfg.model["name"])
    names = {f.name for f in dataclasses.fields(cls.config_class)}
    if "seed" in names and "seed" not in fields:
        fields["seed"] = cfg.seed
    if "train" in names and isinstance(fields.get("train", {}), dict):  # trainer-based models keep theirs there
        fields["train"] = {"seed": cfg.seed, **fields.get("train", {})}
    return cls(from_dict(cls.config_class, fields, prefix="model."))


def bind_side_information(model: Any, dataset: Any, split: Split) -> None:
    """A model that reads item text or attributes (an ``ItemSideConsumer``) gets the dataset's item catalogue,
    rendered and embedded as it asks (vectors cached, see ``recforge.text.embed_items``); other models are untouched."""
    if not isinstance(model, ItemSideConsumer):
        return
    if dataset is None:
        raise ConfigError(f"model {model.name!r} reads the item catalogue: pass the dataset along with the split")
    bind_items(model, dataset.catalog, split.train)


def load_data(cfg: RunConfig) -> Any:
    """Load the configured dataset (named or path); the keys beside ``name`` go to ``load_dataset``."""
    options = {k: v for k, v in cfg.data.items() if k != "name"}
    return load_dataset(cfg.data["name"], **options)


def _split_params(cfg: RunConfig) -> tuple[Any, dict[str, Any]]:
    """The configured splitter and its keyword arguments (``seed`` follows the run seed unless set); ConfigError for
    an unknown splitter or parameter. Splitters are plain functions, so their parameters are their signature's."""
    name = cfg.split["name"]
    splitter = resolve("splitter", name)
    params = {k: v for k, v in cfg.split.items() if k != "name"}
    allowed = set(inspect.signature(splitter).parameters) - {"data"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"unknown split parameter(s) {['split.' + u for u in unknown]} for {name} "
                          f"(known: {sorted(allowed)})")
    if "seed" in allowed and "seed" not in params:
        params["seed"] = cfg.seed
    return splitter, params


def make_split(cfg: RunConfig, interactions: Any) -> Split:
    """Apply the configured splitter, with a ConfigError for unknown parameters; a ``refit`` run's split has
    train + validation as its training part (:func:`refit_split`)."""
    splitter, params = _split_params(cfg)
    split = _with_test(splitter(interactions, **params), cfg, interactions)
    return refit_split(split) if cfg.refit else split


def _with_test(split: Split, cfg: RunConfig, interactions: Any) -> Split:
    """The split, or a DataError (before any fitting) when it holds out nothing to evaluate on."""
    if len(split.test) == 0:
        raise DataError(f"split {cfg.split['name']!r} leaves no test interactions ({len(interactions)} interactions, "
                        f"{interactions.n_users} users): nothing to evaluate on; use more data or another split")
    return split


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_out(cfg: RunConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = cfg.data["name"]
    data = Path(name).stem if "/" in name else name
    return Path("runs") / f"{cfg.model['name']}-{data}-{stamp}"


def train_run(
    cfg: RunConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    dataset: Any = None,
    split: Split | None = None,
    overwrite: bool = False,
) -> Run | None:
    """Train ``cfg.model`` on the configured split, evaluate on valid and test, and write a run folder.

    ``dataset``/``split`` may be passed in to reuse an already loaded log (the quickstart trains several models).
    Under ``torchrun`` every process trains, but only rank 0 writes the folder; the other ranks return None.
    A run that fails leaves an existing folder as it was and leaves nothing behind where there was none, unless
    checkpoints (for ``--resume``) or the fitted model's artifact were already written. ``resume`` continues the run
    in ``out`` from its checkpoints. An existing non-empty ``out`` is refused unless ``overwrite`` (then it is replaced
    only when the new run succeeds).
    """
    out = Path(out) if out else default_out(cfg)
    if not resume and not overwrite and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists; pass {option_hint('overwrite', True)} to replace it (only once the "
                          "new run succeeds) or choose another output folder")
    if int(os.environ.get("RANK", "0")) != 0:
        _fit(cfg, out / "checkpoints", resume, dataset, split)
        return None
    with RunFolder.create(out, kind="recommender", name=cfg.model["name"], config=cfg, seed=cfg.seed,
                          in_place=resume) as folder:
        dataset, split, model, t_data, fit_s = _fit(cfg, folder.checkpoint_dir, resume, dataset, split)
        for name in ("curves.json", "curves.png"):  # the trainer writes them next to its checkpoints
            if (folder.checkpoint_dir / name).is_file():
                shutil.copyfile(folder.checkpoint_dir / name, folder.path / name)
        model.save(folder.artifact_dir)
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
        folder.write_metrics(metrics)
        write_per_user(folder.path / "per_user.parquet", test_report, split)
        info = dict(getattr(dataset, "info", {}) or {})
        extra_llm = {"llm": model.toolkit.report()} if isinstance(model, LLMUser) else {}
        folder.finish(data_files=info.get("files") or dataset_files(info), split=split, extra={
            **extra_llm,
            "model": cfg.model["name"],
            "dataset": cfg.data["name"],
            "dataset_info": {k: v for k, v in info.items() if k != "files"},
            "split": split.summary(),
            "fit_on": "train+valid" if cfg.refit else "train",
            "timings": {"data_s": round(t_data, 3), "fit_s": round(fit_s, 3), "eval_s": round(eval_s, 3)},
        })
    run = Run(out)
    run.__dict__["model"] = model
    return run


def _fit(cfg: RunConfig, checkpoint_dir: Path, resume: bool, dataset: Any, split: Split | None
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
    bind_side_information(model, dataset, split)
    attach_llm(model, dataset, split.train.item_vocab)
    t1 = time.perf_counter()
    # checkpoints (and --resume) concern Trainer-based models; the others ignore the folder and refuse resume
    model.fit(split.train, split.valid, checkpoint_dir=checkpoint_dir, resume=resume)
    return dataset, split, model, t_data, time.perf_counter() - t1


def attach_llm(model: Any, dataset: Any, item_vocab: Any) -> Toolkit | None:
    """Hand an :class:`~recforge.protocols.LLMUser` its toolkit: the backend of ``model.llm_spec()`` and the
    dataset's item catalogue aligned to ``item_vocab`` (item texts from the "title" template; "item <id>" where the
    dataset has no item text). Other models are left alone (None)."""
    if not isinstance(model, LLMUser):
        return None
    catalog = getattr(dataset, "catalog", None)
    catalog = catalog.align(item_vocab) if catalog is not None else None
    if catalog is not None and text_fields(catalog):
        texts = item_texts(catalog, "title", on_missing_text="attr_only").texts
        texts = ["", *[t or f"item {i}" for i, t in zip(item_vocab.ids, texts[1:])]]
    else:
        texts = ["", *[f"item {i}" for i in item_vocab.ids]]
    toolkit = build_toolkit(model.llm_spec(), texts, catalog)
    model.use_llm(toolkit)
    return toolkit


def refit_split(split: Split) -> Split:
    """The split to fit on once settings are fixed: train + validation as the training part, the same test part."""
    if split.valid is None:
        raise ConfigError(f"refit needs a split with a validation part ({split.name} has none)")
    return Split(train=split.train.concat(split.valid), test=split.test, fold_in=split.fold_in,
                 name=f"{split.name}+refit", params=split.params)


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


def _read_json(file: Path) -> dict[str, Any]:
    """A run folder's JSON file; damage (bad JSON, not an object, unreadable) is a one-line DataError."""
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"corrupt JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", path=str(file)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read ({getattr(exc, 'strerror', None) or exc})", path=str(file)) from None
    if not isinstance(doc, dict):
        raise DataError(f"expected a JSON object, got {type(doc).__name__}", path=str(file))
    return doc


def run_config(path: str | Path) -> RunConfig:
    """The resolved config of a (possibly unfinished) run folder."""
    file = Path(path) / "config.toml"
    if not file.is_file():
        raise DataError(f"not a run folder (missing config.toml): {path}")
    raw = load_toml(file)
    if not isinstance(raw.get("model"), dict):
        raise DataError("no model section: the run's config is damaged", path=str(file))
    return from_dict(RunConfig, raw)


class Run:
    """A recommender run folder on disk. ``model`` is loaded lazily from ``artifact/``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        for name in ("config.toml", "metrics.json", "run.json"):
            if not (self.path / name).is_file():
                raise DataError(f"not a run folder (missing {name}): {self.path}")
        self.meta: dict[str, Any] = _read_json(self.path / "run.json")
        kind = self.meta.get("kind", "recommender")
        if kind != "recommender":
            raise DataError(f"{self.path} is a {kind} run, not a recommender run")
        self.config = run_config(self.path)
        self.metrics: dict[str, Any] = _read_json(self.path / "metrics.json")

    @cached_property
    def model(self) -> Any:
        model = load_model(self.path / "artifact")
        if isinstance(model, LLMUser):  # the toolkit (client, catalogue) is not part of the artifact
            attach_llm(model, load_data(self.config), model.item_vocab)
        return model

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"Run({self.path})"


def _check_metrics(run: Run, on: str) -> None:
    """``metrics.json[on]`` must map metric names to {"mean", "ci_low", "ci_high"} numbers (a DataError otherwise)."""
    part = run.metrics[on]
    file = str(run.path / "metrics.json")
    if not isinstance(part, dict):
        raise DataError(f"{on!r} holds {type(part).__name__}, expected metric records", path=file)
    for name, rec in part.items():
        if name.startswith("_"):
            continue
        if not (isinstance(rec, dict) and all(isinstance(rec.get(k), int | float) for k in ("mean", "ci_low", "ci_high"))):
            raise DataError(f"{on!r} metric {name!r} is not a record of numbers mean / ci_low / ci_high", path=file)


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
        _check_metrics(r, on)
        row = {"run": r.name, "model": r.meta.get("model"), "dataset": r.meta.get("dataset"),
               "split_hash": r.meta.get("split_hash"), "fit_s": r.meta.get("timings", {}).get("fit_s")}
        row["metrics"] = {k: v for k, v in r.metrics[on].items() if not k.startswith("_")}
        rows.append(row)
    return rows


def reevaluate(run: Run, on: str = "test", metrics: tuple[str, ...] | None = None, protocol: str = "full",
               progress: bool | None = None) -> Report:
    """Rebuild the run's split from its config, check the split hash, and evaluate the saved model again."""
    cfg = run.config
    if not run.meta.get("split_hash"):
        raise DataError("records no split hash: the run's metadata is damaged", path=str(run.path / "run.json"))
    split = make_split(cfg, load_data(cfg).interactions)
    if split.hash != run.meta.get("split_hash"):
        raise DataError(f"the data changed since the run: split hash {split.hash} != recorded {run.meta.get('split_hash')}")
    return evaluate(run.model, split, metrics=metrics or cfg.eval.metrics, on=on, batch_size=cfg.eval.batch_size,
                    exclude_seen=cfg.eval.exclude_seen, n_boot=cfg.eval.n_boot, seed=cfg.seed, protocol=protocol,
                    progress=progress)
