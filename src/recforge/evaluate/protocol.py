"""The sampled-metrics trap, shown: the same models evaluated with full ranking and with sampled negatives.

Krichene & Rendle ("On Sampled Metrics for Item Recommendation", KDD 2020) prove that ranking a held-out item among
a few sampled negatives is not a consistent estimate of its full-ranking metric and can flip model orderings.
:func:`protocol_check` measures this on real data: it reports each model's metrics under both protocols and every
pair of models whose ordering differs.
"""

from __future__ import annotations

import logging
from itertools import combinations
from typing import Any

from recforge.data.split import Split
from recforge.errors import ConfigError
from recforge.evaluate.evaluator import evaluate

log = logging.getLogger(__name__)


def ordering(values: dict[str, float]) -> list[str]:
    """Model names sorted best first (ties keep insertion order)."""
    return sorted(values, key=lambda n: -values[n])


def flips(full: dict[str, float], sampled: dict[str, float]) -> list[dict[str, Any]]:
    """Pairs (better, worse) by full ranking that the sampled protocol orders the other way (strictly)."""
    out = []
    for a, b in combinations(full, 2):
        d_full, d_samp = full[a] - full[b], sampled[a] - sampled[b]
        if d_full * d_samp < 0:
            better, worse = (a, b) if d_full > 0 else (b, a)
            out.append({"full_better": better, "full_worse": worse,
                        "full": [full[better], full[worse]], "sampled": [sampled[better], sampled[worse]]})
    return out


def protocol_check(
    models: dict[str, Any],
    split: Split,
    metrics: tuple[str, ...] = ("ndcg@10", "hit@10"),
    n_negatives: int = 100,
    sampling: str = "sampled-uniform",
    on: str = "test",
    seed: int = 0,
    n_boot: int = 200,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate fitted ``models`` ({name: model}) on ``split`` with full ranking and with ``n_negatives`` sampled
    negatives (``sampling`` = "sampled-uniform" or "sampled-popularity"; the same seed, hence the same negatives
    for every model). Returns {"full": {model: {metric: mean}}, "sampled": {...}, "orderings": {metric: {"full": [...],
    "sampled": [...], "kendall_tau": t}}, "flips": {metric: [pairs]}, "n_negatives", "sampling", "n_users"}.
    """
    from scipy import stats as sst  # lazily: importing scipy.stats costs ~55 MB of RSS
    if len(models) < 2:
        raise ConfigError(f"protocol-check needs at least two models, got {len(models)}")
    if sampling not in ("sampled-uniform", "sampled-popularity"):
        raise ConfigError(f"sampling must be sampled-uniform or sampled-popularity, got {sampling!r}")
    full: dict[str, dict[str, float]] = {}
    sampled: dict[str, dict[str, float]] = {}
    n_users = 0
    for name, model in models.items():
        common = {"metrics": metrics, "on": on, "seed": seed, "n_boot": n_boot, "progress": progress}
        rep_full = evaluate(model, split, **common)
        rep_samp = evaluate(model, split, protocol=sampling, n_negatives=n_negatives, **common)
        full[name] = {m: rep_full.mean(m) for m in rep_full.metrics}
        sampled[name] = {m: rep_samp.mean(m) for m in rep_samp.metrics}
        n_users = rep_full.info["n_users"]
        log.info("%s: full %s | sampled %s", name, full[name], sampled[name])
    orderings, all_flips = {}, {}
    for m in full[next(iter(full))]:
        f = {n: full[n][m] for n in models}
        s = {n: sampled[n][m] for n in models}
        tau = sst.kendalltau([f[n] for n in models], [s[n] for n in models]).statistic
        orderings[m] = {"full": ordering(f), "sampled": ordering(s), "kendall_tau": float(tau)}
        all_flips[m] = flips(f, s)
    return {"full": full, "sampled": sampled, "orderings": orderings, "flips": all_flips, "n_negatives": n_negatives,
            "sampling": sampling, "n_users": n_users, "split": split.name, "split_hash": split.hash}
