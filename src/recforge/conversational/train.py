"""Train a CRS policy into a run folder, and load it back.

A CRS run folder holds::

    config.toml          the resolved CRSRunConfig (re-runnable: ``recforge crs train --config config.toml``)
    metrics.json         {"test": {"sr@15": {"mean", "ci_low", "ci_high"}, "at": ..., "hdcg": ..., "_info": {...}}}
    policy.json          policy name, its config, the setting, the dataset reference
    policy.safetensors   scorer embeddings + the policy's learned weights (never pickle)
    run.json             dataset summary, seed, timings, versions
    success_curve.png    SR@t per turn on the test episodes
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from recforge.config import dump_toml, from_dict, to_dict
from recforge.conversational.data import CRSDataset, load_crs_dataset
from recforge.conversational.episode import CRSReport, simulate
from recforge.conversational.metrics import plot_success_curves
from recforge.conversational.policies.base import Policy
from recforge.conversational.scorer import Scorer, ScorerConfig, train_scorer
from recforge.conversational.state import CRSSetting
from recforge.errors import ConfigError, DataError
from recforge.registry import resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CRSRunConfig:
    """Everything a CRS training run needs; saved as config.toml."""

    data: str = "lastfm-crs"  # dataset name (lastfm-crs) or folder written by `recforge crs build`
    policy: str = "scpr"  # registry name in the crs_policy table
    policy_params: dict[str, Any] = field(default_factory=dict)  # fields of the policy's config dataclass
    setting: CRSSetting = field(default_factory=CRSSetting)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    train_episodes: int = 2000  # simulated training dialogues on the "valid" pairs (EAR, SCPR)
    eval_episodes: int = 1000  # test dialogues to evaluate on (0 = all)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train_episodes < 0 or self.eval_episodes < 0:
            raise ConfigError(f"episode counts must be >= 0, got {self.train_episodes}, {self.eval_episodes}")


def make_policy(name: str, dataset: CRSDataset, setting: CRSSetting, scorer: Scorer | None,
                params: dict[str, Any] | None = None) -> Policy:
    """Instantiate a registered CRS policy with config fields ``params`` (unknown keys raise ConfigError)."""
    cls = resolve("crs_policy", name)
    config = from_dict(cls.config_class, dict(params or {}), prefix=f"{name}.")
    return cls(config, dataset, setting, scorer)


def train_policy(config: CRSRunConfig, out: str | Path | None = None, dataset: CRSDataset | None = None,
                 show_progress: bool | None = None) -> tuple[Policy, CRSReport, dict[str, Any]]:
    """Fit the scorer (if the policy needs one), train the policy, evaluate on test; write a run folder to ``out``."""
    ds = dataset if dataset is not None else load_crs_dataset(config.data)
    timings: dict[str, float] = {}
    cls = resolve("crs_policy", config.policy)
    scorer = None
    if cls.needs_scorer:
        t0 = time.perf_counter()
        scorer = train_scorer(ds, config.scorer)
        timings["scorer_s"] = time.perf_counter() - t0
    policy = make_policy(config.policy, ds, config.setting, scorer, config.policy_params)
    t0 = time.perf_counter()
    train_stats = policy.fit(ds, config.train_episodes, seed=config.seed) if cls.trainable else {}
    timings["policy_s"] = time.perf_counter() - t0
    report = simulate(policy, ds, config.setting, "test", config.eval_episodes or None, config.seed, show_progress)
    timings["eval_s"] = report.seconds
    meta = {"policy": config.policy, "dataset": ds.summary(), "seed": config.seed, "timings": timings,
            "train_stats": train_stats, "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                                     "numpy": np.__version__}}
    if out is not None:
        save_run(Path(out), config, policy, report, meta)
    return policy, report, meta


def save_run(path: Path, config: CRSRunConfig, policy: Policy, report: CRSReport, meta: dict[str, Any]) -> Path:
    """Write the run folder described in the module doc."""
    path.mkdir(parents=True, exist_ok=True)
    dump_toml(to_dict(config), path / "config.toml")
    metrics = dict(report.metrics)
    metrics["_info"] = {"episodes": int(len(report.turns)), "split": report.split, "mode": report.setting.mode,
                        "max_turns": report.setting.max_turns, "list_size": report.setting.list_size,
                        "success_curve": report.to_dict()["success_curve"]}
    (path / "metrics.json").write_text(json.dumps({"test": metrics}, indent=2), encoding="utf-8")
    tensors = dict(policy.scorer.tensors()) if policy.scorer is not None else {}
    tensors.update({f"policy.{k}": v.contiguous() for k, v in policy.state_dict().items()})
    if tensors:
        save_file(tensors, str(path / "policy.safetensors"))
    policy_meta = {"format": "recforge-crs-policy-1", "policy": config.policy,
                   "config": to_dict(policy.config) if dataclasses.is_dataclass(policy.config) else {},
                   "setting": to_dict(config.setting), "data": config.data}
    (path / "policy.json").write_text(json.dumps(policy_meta, indent=2), encoding="utf-8")
    (path / "run.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    plot_success_curves({config.policy: report.curve()}, path / "success_curve.png",
                        title=f"{config.policy} on {report.dataset} ({report.setting.mode})")
    log.info("wrote CRS run to %s", path)
    return path


def load_policy(run: str | Path, dataset: CRSDataset | None = None,
                setting: CRSSetting | None = None) -> tuple[Policy, CRSDataset]:
    """Rebuild the trained policy of a run folder (and its dataset, unless given)."""
    path = Path(run)
    meta_path = path / "policy.json"
    if not meta_path.exists():
        raise DataError("not a CRS run folder (policy.json missing)", path=str(path))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=str(meta_path), line=exc.lineno) from None
    if meta.get("format") != "recforge-crs-policy-1":
        raise DataError(f"unknown policy format {meta.get('format')!r}", path=str(meta_path))
    ds = dataset if dataset is not None else load_crs_dataset(meta["data"])
    st = setting if setting is not None else from_dict(CRSSetting, meta["setting"])
    weights = load_file(str(path / "policy.safetensors")) if (path / "policy.safetensors").exists() else {}
    scorer = Scorer.from_tensors(weights) if "scorer.user" in weights else None
    if scorer is not None and (scorer.item.shape[0] != ds.n_items or scorer.attr.shape[0] != ds.n_attrs):
        raise DataError(f"the run's scorer has {scorer.item.shape[0]} items / {scorer.attr.shape[0]} attributes but dataset "
                        f"{ds.name!r} has {ds.n_items} / {ds.n_attrs}", path=str(path))
    policy = make_policy(meta["policy"], ds, st, scorer, meta.get("config", {}))
    policy.load_state_dict({k[len("policy."):]: v for k, v in weights.items() if k.startswith("policy.")})
    return policy, ds
