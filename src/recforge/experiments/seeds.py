"""Multiple seeds: train the same configuration N times and report mean ± CI across seeds.

One seed says little about a model (neural models especially): initialisation, negative sampling and, for random
splitters, the split itself move the numbers. :func:`train_seeds` calls the single-run trainer
(:func:`recforge.experiments.runs.train_run`) once per seed, each into its own run folder, and aggregates the per-seed test means
with a Student-t 95% CI (n - 1 degrees of freedom), the honest interval for a handful of seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.io import option_hint
from recforge.errors import ConfigError
from recforge.experiments.runs import default_out, train_run

log = logging.getLogger(__name__)


def seed_ci(values: list[float] | np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Mean, sample std (ddof=1) and Student-t CI of the mean of per-seed values:
    mean ± t_{1-alpha/2, n-1} * std / sqrt(n). With one value the CI collapses to it (and std is NaN)."""
    from scipy import stats as sst  # lazily: importing scipy.stats costs ~55 MB of RSS
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        raise ConfigError("seed_ci needs at least one value")
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "std": float("nan"), "ci_low": mean, "ci_high": mean, "n": 1}
    std = float(v.std(ddof=1))
    half = float(sst.t.ppf(1 - alpha / 2, n - 1) * std / np.sqrt(n))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def aggregate(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{seed: {metric: {"mean", ...}}} -> {metric: seed_ci of the per-seed means} (metrics present in every seed)."""
    seeds = list(per_seed)
    names = [m for m in per_seed[seeds[0]] if not m.startswith("_") and all(m in per_seed[s] for s in seeds)]
    return {m: seed_ci([per_seed[s][m]["mean"] for s in seeds]) for m in names}


def train_seeds(cfg: Any, n_seeds: int, out: str | Path | None = None, progress: bool | None = None,
                overwrite: bool = False) -> dict[str, Any]:
    """Train ``cfg`` with seeds cfg.seed, cfg.seed+1, ..., into ``out/seed-<s>/`` and write ``out/seeds.json``
    (existing seed runs are refused unless ``overwrite``).

    Returns {"seeds", "runs", "split_hashes", "per_seed": {seed: test metrics}, "aggregate": {metric: {mean, std,
    ci_low, ci_high, n}}}. The seed also drives seeded splitters, so their split hashes may differ per seed.
    """
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {n_seeds}")
    out = Path(out) if out else default_out(cfg)
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists; pass {option_hint('overwrite', True)} to replace its seed runs "
                          "(each only once its new run succeeds) or choose another output folder")
    seeds = [cfg.seed + i for i in range(n_seeds)]
    runs, per_seed, hashes = [], {}, {}
    for s in seeds:
        run = train_run(dataclasses.replace(cfg, seed=s), out=out / f"seed-{s}", progress=progress,
                        overwrite=overwrite)
        runs.append(str(run.path))
        per_seed[s] = {k: v for k, v in run.metrics["test"].items() if not k.startswith("_")}
        hashes[s] = run.meta.get("split_hash")
        log.info("seed %d: %s", s, {k: round(v["mean"], 4) for k, v in per_seed[s].items()})
    result = {"model": cfg.model["name"], "dataset": cfg.data["name"], "seeds": seeds, "runs": runs,
              "split_hashes": hashes, "per_seed": per_seed, "aggregate": aggregate(per_seed),
              "ci": "Student-t 95% over seeds"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result
