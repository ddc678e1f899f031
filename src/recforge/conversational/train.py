"""Train and evaluate CRS policies; persist them as artifacts (table "crs_policy").

:func:`fit_policy` fits the shared scorer (when the policy needs one), trains the policy and plays the test dialogues;
:func:`evaluate_policy` plays a saved policy again. :func:`save_policy` / :func:`load_policy` write and read the one
artifact format (:mod:`recforge.artifacts`): ``meta.json`` holds the policy's config, the setting and the dataset
reference, ``weights.safetensors`` the scorer's embeddings and the policy's learned weights; a corrupt or tampered
artifact is a one-line DataError. ``recforge crs train`` / ``recforge crs evaluate`` write these into the common run
folder (:class:`recforge.experiments.folder.RunFolder`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from recforge.artifacts import load_artifact, save_artifact
from recforge.config import from_dict, to_dict
from recforge.conversational.data import CRSDataset, load_crs_dataset
from recforge.conversational.episode import CRSReport, simulate
from recforge.conversational.policies.base import Policy
from recforge.conversational.scorer import Scorer, ScorerConfig, train_scorer
from recforge.conversational.state import CRSSetting
from recforge.errors import ConfigError, DataError
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


def fit_policy(config: CRSRunConfig, dataset: CRSDataset | None = None,
               show_progress: bool | None = None) -> tuple[Policy, CRSReport, dict[str, Any]]:
    """Fit the scorer (if the policy needs one), train the policy, evaluate on test (on ``dataset``, default the
    config's). Returns the policy (``policy.dataset`` is the dataset), the test report and {"timings", "train_stats"}."""
    dataset = dataset if dataset is not None else load_crs_dataset(config.data)
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


def evaluate_policy(config: CRSEvalConfig, dataset: CRSDataset | None = None,
                    show_progress: bool | None = None) -> tuple[Policy, CRSReport]:
    """Play a saved policy (``config.run``) on ``config.split``: returns the policy and the report."""
    ds = dataset if dataset is not None else (load_crs_dataset(config.data) if config.data else None)
    policy, ds = load_policy(config.run, ds)
    report = simulate(policy, ds, policy.setting, config.split, config.episodes or None, config.seed, show_progress)
    return policy, report
