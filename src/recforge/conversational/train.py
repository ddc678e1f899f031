"""Train or evaluate a CRS policy into the common run folder, and persist policies as artifacts.

A CRS run folder (:class:`recforge.experiments.folder.RunFolder` layout)::

    config.toml          the resolved CRSRunConfig (re-runnable: ``recforge crs train --config config.toml``)
    metrics.json         {"test": {"sr@15": {"mean", "ci_low", "ci_high"}, "at": ..., "hdcg": ..., "_info": {...}}}
    run.json             kind, policy, dataset summary, timings, training statistics, provenance (seed, versions,
                         git commit, hardware, sha256 of the data files)
    artifact/            the policy in the one artifact format (table "crs_policy"): meta.json (policy config, setting,
                         dataset reference) + weights.safetensors (scorer embeddings + the policy's learned weights)
    success_curve.png    SR@t per turn on the evaluation dialogues
    train.log

A run is written into a fresh sibling folder and moved into place only when complete, so a failed command never
modifies an existing run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from recforge.artifacts import load_artifact, save_artifact
from recforge.config import from_dict, to_dict
from recforge.conversational.data import CRSDataset, load_crs_dataset
from recforge.conversational.episode import CRSReport, simulate
from recforge.conversational.metrics import plot_success_curves
from recforge.conversational.policies.base import Policy
from recforge.conversational.scorer import Scorer, ScorerConfig, train_scorer
from recforge.conversational.state import CRSSetting
from recforge.errors import ConfigError, DataError
from recforge.experiments.folder import RunFolder
from recforge.registry import configured, resolve

log = logging.getLogger(__name__)

TABLE = "crs_policy"


@dataclass(frozen=True)
class CRSRunConfig:
    """Everything a CRS training run needs; saved as config.toml."""

    data: str = "lastfm-crs"  # dataset name (lastfm-crs) or folder written by `recforge crs build`
    policy: dict[str, Any] = field(default_factory=lambda: {"name": "scpr"})  # {"name": <crs_policy key>, **its config}
    setting: CRSSetting = field(default_factory=CRSSetting)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    train_episodes: int = 2000  # simulated training dialogues on the "valid" pairs (EAR, SCPR)
    eval_episodes: int = 1000  # test dialogues to evaluate on (0 = all)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train_episodes < 0 or self.eval_episodes < 0:
            raise ConfigError(f"episode counts must be >= 0, got {self.train_episodes}, {self.eval_episodes}")
        configured(TABLE, self.policy, prefix="policy.")  # a known policy with valid fields, checked up front


@dataclass(frozen=True)
class CRSEvalConfig:
    """An evaluation of a trained policy; saved as config.toml of an evaluation run."""

    run: str  # the trained run folder (or its artifact/)
    data: str | None = None  # dataset (default: the one the policy was trained on)
    split: Literal["valid", "test"] = "test"
    episodes: int = 1000  # dialogues (a seeded sample; 0 = all)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ConfigError(f"episodes must be >= 0, got {self.episodes}")


def make_policy(spec: Mapping[str, Any] | str, dataset: CRSDataset, setting: CRSSetting,
                scorer: Scorer | None) -> Policy:
    """A registered CRS policy from ``{"name": <crs_policy key>, **config fields}`` (or just its name)."""
    spec = {"name": spec} if isinstance(spec, str) else spec
    cls, config = configured(TABLE, spec, prefix=f"{spec.get('name')}.")
    return cls(config, dataset, setting, scorer)


def save_policy(policy: Policy, path: str | Path, data: str) -> Path:
    """Write ``policy`` (with its scorer) as a "crs_policy" artifact; ``data`` is the dataset it plays on."""
    tensors = dict(policy.scorer.tensors()) if policy.scorer is not None else {}
    tensors.update({f"policy.{k}": v.contiguous() for k, v in policy.state_dict().items()})
    config = to_dict(policy.config) if dataclasses.is_dataclass(policy.config) else {}
    extra = {"setting": to_dict(policy.setting), "data": data, "dataset": policy.dataset.summary()}
    return save_artifact(path, table=TABLE, name=policy.name, config=config, tensors=tensors, extra=extra)


def load_policy(path: str | Path, dataset: CRSDataset | None = None,
                setting: CRSSetting | None = None) -> tuple[Policy, CRSDataset]:
    """Rebuild a trained policy from a run folder or its ``artifact/`` (and its dataset, unless given).

    DataError (one line) for a missing, corrupt or tampered artifact, or one that does not fit the dataset."""
    path = Path(path)
    art = load_artifact(path / "artifact" if (path / "artifact").is_dir() else path, table=TABLE)
    try:
        ds = dataset if dataset is not None else load_crs_dataset(art.extra["data"])
        st = setting if setting is not None else from_dict(CRSSetting, art.extra["setting"])
        weights = art.tensors
        scorer = Scorer.from_tensors(weights) if "scorer.user" in weights else None
        if scorer is not None and (scorer.item.shape[0] != ds.n_items or scorer.attr.shape[0] != ds.n_attrs):
            raise DataError(f"the policy's scorer has {scorer.item.shape[0]} items / {scorer.attr.shape[0]} attributes "
                            f"but dataset {ds.name!r} has {ds.n_items} / {ds.n_attrs}", path=str(art.path))
        policy = make_policy({"name": art.name, **art.config}, ds, st, scorer)
        policy.load_state_dict({k[len("policy."):]: v for k, v in weights.items() if k.startswith("policy.")})
    except (KeyError, RuntimeError, ValueError, TypeError, ConfigError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"artifact does not rebuild a {art.name} policy: {first}", path=str(art.path)) from None
    return policy, ds


def fit_policy(config: CRSRunConfig, dataset: CRSDataset,
               show_progress: bool | None = None) -> tuple[Policy, CRSReport, dict[str, Any]]:
    """Fit the scorer (if the policy needs one), train the policy, evaluate on test. Returns the policy, the test
    report and {"timings", "train_stats"}."""
    timings: dict[str, float] = {}
    cls = resolve(TABLE, config.policy["name"])
    scorer = None
    if cls.needs_scorer:
        t0 = time.perf_counter()
        scorer = train_scorer(dataset, config.scorer)
        timings["scorer_s"] = time.perf_counter() - t0
    policy = make_policy(config.policy, dataset, config.setting, scorer)
    t0 = time.perf_counter()
    train_stats = policy.fit(dataset, config.train_episodes, seed=config.seed) if cls.trainable else {}
    timings["policy_s"] = time.perf_counter() - t0
    report = simulate(policy, dataset, config.setting, "test", config.eval_episodes or None, config.seed, show_progress)
    timings["eval_s"] = report.seconds
    return policy, report, {"timings": timings, "train_stats": train_stats}


def train_policy(config: CRSRunConfig, out: str | Path | None = None, dataset: CRSDataset | None = None,
                 show_progress: bool | None = None) -> tuple[Policy, CRSReport, dict[str, Any]]:
    """:func:`fit_policy`, written to run folder ``out`` when given (see the module doc)."""
    ds = dataset if dataset is not None else load_crs_dataset(config.data)
    if out is None:
        return fit_policy(config, ds, show_progress)
    with _staged(Path(out)) as stage, RunFolder.create(stage, kind="crs-train", name=config.policy["name"],
                                                       config=config, seed=config.seed) as run:
        policy, report, meta = fit_policy(config, ds, show_progress)
        save_policy(policy, run.artifact_dir, config.data)
        _write_report(run, report, ds, meta)
    return policy, report, meta


def evaluate_run(config: CRSEvalConfig, out: str | Path | None = None, dataset: CRSDataset | None = None,
                 show_progress: bool | None = None) -> CRSReport:
    """Play a trained policy on ``config.split``; written to run folder ``out`` (no artifact) when given."""
    ds = dataset if dataset is not None else (load_crs_dataset(config.data) if config.data else None)
    policy, ds = load_policy(config.run, ds)
    if out is None:
        return simulate(policy, ds, policy.setting, config.split, config.episodes or None, config.seed, show_progress)
    with _staged(Path(out)) as stage, RunFolder.create(stage, kind="crs-evaluate", name=policy.name, config=config,
                                                       seed=config.seed) as run:
        report = simulate(policy, ds, policy.setting, config.split, config.episodes or None, config.seed, show_progress)
        _write_report(run, report, ds, {"timings": {"eval_s": report.seconds}})
    return report


def _write_report(run: RunFolder, report: CRSReport, ds: CRSDataset, meta: dict[str, Any]) -> None:
    metrics: dict[str, Any] = dict(report.metrics)
    metrics["_info"] = {"episodes": int(len(report.turns)), "split": report.split, "mode": report.setting.mode,
                        "max_turns": report.setting.max_turns, "list_size": report.setting.list_size,
                        "success_curve": report.to_dict()["success_curve"]}
    run.write_metrics({report.split: metrics})
    plot_success_curves({report.policy: report.curve()}, run.path / "success_curve.png",
                        title=f"{report.policy} on {report.dataset} ({report.setting.mode})")
    run.finish(data_files=list(ds.files), extra={"policy": report.policy, "dataset": ds.summary(), **meta})


class _staged:
    """Context manager: a fresh sibling folder of ``out`` to write into; on success it replaces ``out``, on failure
    it is removed and ``out`` stays as it was."""

    def __init__(self, out: Path):
        self.out = out
        self.stage = out.with_name(f".{out.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        shutil.rmtree(self.stage, ignore_errors=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        return self.stage

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            return
        if self.out.exists():
            shutil.rmtree(self.out)
        self.stage.rename(self.out)
        log.info("CRS run written to %s", self.out)
