"""Visual comparison report: one self-contained HTML page (PNGs embedded as base64, no network) plus the PNG files.

Sections: leaderboard with 95% CIs and significance marks (paired test against the best run, Holm-corrected),
metric@k curves, popularity-bias plot (recommendation popularity vs. the user's history popularity), per-segment bars,
training curves (runs that have ``curves.json``), sampled-vs-full ranking comparison and beyond-accuracy metrics.

Everything is computed from the run folders (``per_user.parquet`` top-k lists and per-user values) and the split,
rebuilt once from the first run's config and checked against every run's recorded split hash.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.split import Split
from recforge.errors import ConfigError, DataError
from recforge.evaluate.beyond import beyond_accuracy, hits_from_targets, item_popularity
from recforge.evaluate.evaluator import _history, evaluate
from recforge.evaluate.protocol import flips as find_flips
from recforge.evaluate.slices import slice_metrics
from recforge.experiments.runs import load_data, make_split
from recforge.metrics.ranking import compute
from recforge.metrics.stats import compare_paired

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """What the report needs from one run: name, model, test metrics, users (U,), top-k (U, K), per-user values."""

    name: str
    model: str
    metrics: dict[str, dict[str, float]]
    users: np.ndarray
    top_items: np.ndarray
    per_user: dict[str, np.ndarray]
    curves: dict[str, list[float]] = field(default_factory=dict)
    sampled: dict[str, float] | None = None


def read_run(run: Any) -> RunData:
    """Load a :class:`recforge.experiments.runs.Run`'s per-user file and optional training curves."""
    import polars as pl

    path = Path(run.path) / "per_user.parquet"
    if not path.is_file():
        raise DataError(f"run {run.name} has no per_user.parquet (re-train it with this version of recforge)", path=str(path))
    try:
        df = pl.read_parquet(path)
        skip = {"user", "user_id", "top_items"}
        per_user = {c: df[c].to_numpy().astype(np.float64) for c in df.columns if c not in skip}
        top = np.array(df["top_items"].to_list(), dtype=np.int64)
        users = df["user"].to_numpy()
    except Exception as exc:  # noqa: BLE001 (polars and numpy raise several types for a damaged file)
        raise DataError(f"damaged per-user file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                        path=str(path)) from None
    metrics = {k: v for k, v in run.metrics.get("test", {}).items() if not k.startswith("_")}
    return RunData(name=run.name, model=str(run.meta.get("model")), metrics=metrics, users=users,
                   top_items=top, per_user=per_user, curves=_read_curves(Path(run.path) / "curves.json"))


def _read_curves(path: Path) -> dict[str, list[float]]:
    """curves.json as {name: [values per epoch]}; accepts that dict or a list of per-epoch records."""
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"corrupt JSON ({exc})", path=str(path)) from None
    if not isinstance(raw, (list, dict)):
        raise DataError(f"expected a JSON list or object, got {type(raw).__name__}", path=str(path))
    if isinstance(raw, list):  # [{"epoch": 1, "loss": .., "valid_ndcg@10": ..}, ...]
        keys = [k for k in raw[0] if k != "epoch"] if raw else []
        raw = {k: [r.get(k) for r in raw] for k in keys}
    return {k: [float(x) for x in v if x is not None] for k, v in raw.items()
            if isinstance(v, list) and all(isinstance(x, int | float) or x is None for x in v)}


# ------------------------------------------------------------------------------------------------------- plots
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _figure(w: float = 7, h: float = 4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # headless; no display needed
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def plot_leaderboard(runs: list[RunData], metric: str, marks: dict[str, str]) -> bytes:
    """Horizontal bars of ``metric`` means with 95% CI whiskers; significance marks appended to the labels."""
    fig, ax = _figure(7, 0.6 * len(runs) + 1.2)
    order = sorted(runs, key=lambda r: r.metrics[metric]["mean"])
    means = [r.metrics[metric]["mean"] for r in order]
    err = np.array([[r.metrics[metric]["mean"] - r.metrics[metric]["ci_low"],
                     r.metrics[metric]["ci_high"] - r.metrics[metric]["mean"]] for r in order]).T
    ax.barh([f"{r.name} {marks.get(r.name, '')}" for r in order], means, xerr=err, color="#4c72b0", capsize=4)
    ax.set_xlabel(f"{metric} (mean, 95% bootstrap CI)")
    ax.set_title("Leaderboard")
    return _png(fig)


def plot_metric_at_k(curves: dict[str, dict[str, np.ndarray]], ks: np.ndarray) -> bytes:
    """metric@k for k = 1..K, one line per run, one panel per metric family."""
    import matplotlib.pyplot as plt

    families = list(next(iter(curves.values())))
    fig, axes = plt.subplots(1, len(families), figsize=(4.5 * len(families), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], families):
        for run, vals in curves.items():
            ax.plot(ks, vals[fam], marker=".", label=run)
        ax.set_xlabel("k")
        ax.set_ylabel(f"{fam}@k")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Metrics at cut-off k")
    return _png(fig)


def plot_popularity_bias(points: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Mean popularity of recommended items vs. mean popularity of the user's history (users binned in deciles)."""
    fig, ax = _figure(6.5, 4.5)
    lim = 0.0
    for run, (x, y) in points.items():
        edges = np.unique(np.quantile(x, np.linspace(0, 1, 11)))
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
        bx = np.array([x[idx == b].mean() for b in np.unique(idx)])
        by = np.array([y[idx == b].mean() for b in np.unique(idx)])
        ax.plot(bx, by, marker="o", label=run)
        lim = max(lim, bx.max(initial=0), by.max(initial=0))
    ax.plot([0, lim], [0, lim], "k--", lw=1, label="calibrated (y = x)")
    ax.set_xlabel("user history: mean item popularity (train users per item)")
    ax.set_ylabel("recommendations: mean item popularity (ARP)")
    ax.set_title("Popularity bias (users in deciles of history popularity)")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_segments(rows: list[dict[str, Any]], metric: str, run_names: list[str]) -> bytes:
    """Grouped bars of ``metric`` per segment (user and item segments), one bar per run, with CI whiskers."""
    segs = list(dict.fromkeys(r["segment"] for r in rows if r["metric"] == metric))
    fig, ax = _figure(max(7, 1.3 * len(segs)), 4)
    width = 0.8 / max(len(run_names), 1)
    for j, run in enumerate(run_names):
        vals, lo, hi = [], [], []
        for s in segs:
            match = [r for r in rows if r["run"] == run and r["segment"] == s and r["metric"] == metric]
            m = match[0] if match else {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan}
            vals.append(m["mean"])
            lo.append(m["mean"] - m["ci_low"])
            hi.append(m["ci_high"] - m["mean"])
        ax.bar(np.arange(len(segs)) + j * width, vals, width, yerr=[lo, hi], label=run, capsize=2)
    n_users = {s: next(r["n_users"] for r in rows if r["segment"] == s) for s in segs}
    ax.set_xticks(np.arange(len(segs)) + 0.4 - width / 2, [f"{s}\n(n={n_users[s]})" for s in segs], fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per user segment (history length, cold) and item segment (head / long tail)")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_training_curves(runs: list[RunData]) -> bytes:
    """Every series in each run's curves.json against the epoch."""
    names = sorted({k for r in runs for k in r.curves})
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, key in zip(axes[0], names):
        for r in runs:
            if key in r.curves:
                ax.plot(np.arange(1, len(r.curves[key]) + 1), r.curves[key], marker=".", label=r.name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Training curves")
    return _png(fig)


def plot_sampled_vs_full(runs: list[RunData], metric: str, n_negatives: int) -> bytes:
    """Each run's ``metric`` under full ranking and with sampled negatives, and the rank each protocol gives it."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    full = {r.name: r.metrics[metric]["mean"] for r in runs}
    samp = {r.name: r.sampled[metric] for r in runs}
    x = np.arange(len(runs))
    axes[0].bar(x - 0.2, list(full.values()), 0.4, label="full ranking")
    axes[0].bar(x + 0.2, list(samp.values()), 0.4, label=f"{n_negatives} sampled negatives")
    axes[0].set_xticks(x, list(full), rotation=20, fontsize=8)
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=8)
    rank_f = {n: i + 1 for i, n in enumerate(sorted(full, key=lambda n: -full[n]))}
    rank_s = {n: i + 1 for i, n in enumerate(sorted(samp, key=lambda n: -samp[n]))}
    for n in full:
        axes[1].plot([0, 1], [rank_f[n], rank_s[n]], marker="o", label=n)
    axes[1].set_xticks([0, 1], ["full", "sampled"])
    axes[1].invert_yaxis()
    axes[1].set_ylabel("rank (1 = best)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Sampled vs. full ranking ({metric}); crossing lines = flipped orderings")
    return _png(fig)


# ------------------------------------------------------------------------------------------------------- build
def _families(per_user: dict[str, np.ndarray]) -> list[str]:
    return list(dict.fromkeys(n.split("@")[0] for n in per_user if "@" in n and n.split("@")[0] in
                              ("ndcg", "recall", "hit", "mrr", "precision", "map")))


def build_report(
    runs: list[Any],
    out: str | Path,
    split: Split | None = None,
    force: bool = False,
    metric: str = "ndcg@10",
    test: str = "wilcoxon",
    correction: str = "holm",
    item_features: Any = None,
    sampled: bool = True,
    n_negatives: int = 100,
    seed: int = 0,
) -> Path:
    """Write ``out/report.html`` and ``out/*.png`` comparing ``runs`` (:class:`recforge.experiments.runs.Run` objects).

    ``split`` defaults to the one rebuilt from the first run's config (whose item catalog, if any, then provides
    ``item_features`` for intra-list diversity). Runs on different split hashes are refused
    (ConfigError) unless ``force``; paired tests then use only the users common to all runs. ``sampled=True``
    re-evaluates every saved model with ``n_negatives`` uniformly sampled negatives (same negatives for all).
    Returns the path of the HTML file.
    """
    if len(runs) < 2:
        raise ConfigError(f"a comparison report needs at least two runs, got {len(runs)}")
    hashes = {r.meta.get("split_hash") for r in runs}
    if len(hashes) > 1 and not force:
        detail = ", ".join(f"{r.name}={r.meta.get('split_hash')}" for r in runs)
        raise ConfigError(f"runs were evaluated on different splits ({detail}); use --force to compare anyway")
    if split is None:
        dataset = load_data(runs[0].config)
        split = make_split(runs[0].config, dataset.interactions)
        if item_features is None and getattr(dataset, "catalog", None) is not None:
            item_features = dataset.catalog.attributes  # enables intra-list diversity over item attributes
        if split.hash != runs[0].meta.get("split_hash"):
            raise DataError(f"the data changed since run {runs[0].name}: split hash {split.hash} != "
                            f"recorded {runs[0].meta.get('split_hash')}")
    data = [read_run(r) for r in runs]
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise ConfigError(f"run folder names must be unique in a report, got {names}")
    for d in data:
        if metric not in d.metrics or metric not in d.per_user:
            raise ConfigError(f"run {d.name} has no per-user {metric!r} (has {sorted(d.per_user)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, bytes] = {}

    # paired tests on the users common to all runs
    common = data[0].users
    for d in data[1:]:
        common = np.intersect1d(common, d.users)
    per_model = {d.name: d.per_user[metric][np.searchsorted(d.users, common)] for d in data}
    tests = compare_paired(per_model, test=test, correction=correction, seed=seed)
    best = tests[0]["baseline"]
    marks = {r["model"]: ("(ns)" if not r["significant"] else ("▼*" if r["diff"] < 0 else "▲*")) for r in tests}
    marks[best] = "(best)"
    figures["leaderboard"] = plot_leaderboard(data, metric, marks)

    # metric@k curves from the stored top-k lists
    hist = _history(split, "test")
    target_csr = split.test.to_csr(binary=True)
    curves: dict[str, dict[str, np.ndarray]] = {}
    fams = _families(data[0].per_user) or ["ndcg", "recall"]
    k_max = min(d.top_items.shape[1] for d in data)
    ks = np.arange(1, k_max + 1)
    hits_by_run = {}
    for d in data:
        hits = hits_from_targets(d.users, d.top_items, target_csr)
        hits_by_run[d.name] = hits
        n_rel = np.diff(target_csr.indptr)[d.users]
        curves[d.name] = {f: np.array([compute([f"{f}@{k}"], hits, n_rel)[f"{f}@{k}"].mean() for k in ks]) for f in fams}
    figures["metric_at_k"] = plot_metric_at_k(curves, ks)

    # popularity bias and beyond-accuracy
    pop = item_popularity(split.train).astype(np.float64)
    hist_pop = np.bincount(hist.user, weights=pop[hist.item], minlength=hist.n_users + 1)
    hist_len = hist.user_counts()
    user_hist_pop = np.divide(hist_pop, hist_len, out=np.zeros_like(hist_pop), where=hist_len > 0)
    k_beyond = min(10, k_max)
    points, beyond_rows = {}, []
    for d in data:
        glob, pu = beyond_accuracy(d.top_items, d.users, split.train, split.test, k=k_beyond, seen=hist,
                                   item_features=item_features)
        points[d.name] = (user_hist_pop[d.users], pu[f"arp@{k_beyond}"])
        beyond_rows.append({"run": d.name, **glob, **{k: float(v.mean()) for k, v in pu.items()}})
    figures["popularity_bias"] = plot_popularity_bias(points)

    # segments
    seg_rows = []
    for d in data:
        for r in slice_metrics(d.users, d.top_items, {metric: d.per_user[metric]}, split.train, split.test,
                               history=hist, n_boot=300, seed=seed):
            seg_rows.append({"run": d.name, **r})
    figures["segments"] = plot_segments(seg_rows, metric, names)

    if any(d.curves for d in data):
        figures["training_curves"] = plot_training_curves(data)

    flips: list[str] = []
    if sampled:
        for run, d in zip(runs, data):
            rep = evaluate(run.model, split, metrics=[metric], protocol="sampled-uniform", n_negatives=n_negatives,
                           seed=seed, n_boot=0, progress=False)
            d.sampled = {metric: rep.mean(metric)}
        figures["sampled_vs_full"] = plot_sampled_vs_full(data, metric, n_negatives)
        for f in find_flips({d.name: d.metrics[metric]["mean"] for d in data}, {d.name: d.sampled[metric] for d in data}):
            flips.append(f"{f['full_better']} > {f['full_worse']} by full ranking, but < with sampled negatives")

    for name, png in figures.items():
        (out / f"{name}.png").write_bytes(png)
    page = _html(data, metric, tests, marks, figures, beyond_rows, seg_rows, flips, split, len(hashes) > 1, n_negatives)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    (out / "report.json").write_text(json.dumps({"tests": tests, "beyond": beyond_rows, "segments": seg_rows,
                                                  "flips": flips}, indent=2, default=float), encoding="utf-8")
    log.info("report written to %s", path)
    return path


def _fmt(x: Any) -> str:
    if isinstance(x, float | np.floating):
        return "nan" if not np.isfinite(x) else f"{x:.4f}"
    return html.escape(str(x))


def _html(data: list[RunData], metric: str, tests: list[dict[str, Any]], marks: dict[str, str],
          figures: dict[str, bytes], beyond_rows: list[dict[str, Any]], seg_rows: list[dict[str, Any]],
          flips: list[str], split: Split, forced: bool, n_negatives: int) -> str:
    """The page: inline CSS, images as data URIs, no scripts or external resources besides a tiny load check."""
    names = list(data[0].metrics)
    by_test = {r["model"]: r for r in tests}
    order = sorted(data, key=lambda d: -d.metrics[metric]["mean"])
    head = "".join(f"<th>{_fmt(n)}</th>" for n in names)
    rows = []
    for d in order:
        cells = "".join(f"<td>{_fmt(d.metrics[n]['mean'])}<br><small>[{_fmt(d.metrics[n]['ci_low'])}, "
                        f"{_fmt(d.metrics[n]['ci_high'])}]</small></td>" if n in d.metrics else "<td>-</td>" for n in names)
        t = by_test.get(d.name)
        sig = "baseline" if t is None else f"{_fmt(t['diff'])} [{_fmt(t['diff_ci_low'])}, {_fmt(t['diff_ci_high'])}], p_adj={t['p_adjusted']:.3g}"
        rows.append(f"<tr class='lb-row'><td>{_fmt(d.name)} <b>{_fmt(marks.get(d.name, ''))}</b></td>"
                    f"<td>{_fmt(d.model)}</td>{cells}<td>{sig}</td></tr>")
    warn = ("<p class='warn'>WARNING: runs on different splits were compared with --force; differences may reflect "
            "the data, not the models.</p>" if forced else "")
    imgs = "".join(
        f"<h2>{_fmt(k.replace('_', ' '))}</h2><img alt='{k}' id='fig-{k}' src='data:image/png;base64,"
        f"{base64.b64encode(v).decode()}'>" for k, v in figures.items())
    bkeys = [k for k in beyond_rows[0] if k != "run"] if beyond_rows else []
    btable = "".join(f"<tr><td>{_fmt(r['run'])}</td>" + "".join(f"<td>{_fmt(r[k])}</td>" for k in bkeys) + "</tr>"
                     for r in beyond_rows)
    seg_table = "".join(f"<tr><td>{_fmt(r['run'])}</td><td>{_fmt(r['kind'])}</td><td>{_fmt(r['segment'])}</td>"
                        f"<td>{r['n_users']}</td><td>{_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]</td></tr>"
                        for r in seg_rows)
    flip_html = ("<ul>" + "".join(f"<li>{_fmt(f)}</li>" for f in flips) + "</ul>") if flips else \
        "<p>No ordering flips between full ranking and sampled negatives for these runs.</p>"
    test_name = tests[0]["test"] if tests else "-"
    corr = tests[0]["correction"] if tests else "-"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>recforge comparison report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
.warn {{ color: #b00; font-weight: bold; }}
small {{ color: #666; }}
</style></head>
<body>
<h1>recforge comparison report</h1>
<p>Split <code>{_fmt(split.name)}</code> (hash <code>{_fmt(split.hash)}</code>), full ranking over all items, seen items masked.
Every mean carries a 95% bootstrap CI over users. Significance: paired {test_name} test of each run against the best run on
per-user {metric}, {corr}-corrected; ▲*/▼* = significantly better/worse (p_adj &lt; 0.05), (ns) = not significant.</p>
{warn}
<h2>Leaderboard</h2>
<table id="leaderboard"><thead><tr><th>run</th><th>model</th>{head}<th>diff vs best on {metric} [95% CI]</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2>Beyond accuracy (@{_fmt(bkeys[0].split('@')[1]) if bkeys else ''})</h2>
<table id="beyond"><thead><tr><th>run</th>{''.join(f'<th>{_fmt(k)}</th>' for k in bkeys)}</tr></thead><tbody>{btable}</tbody></table>
<h2>Sampled vs. full ranking</h2>
<p>Sampled metrics rank each held-out item among {n_negatives} random negatives (Krichene &amp; Rendle, KDD 2020).</p>
{flip_html}
{imgs}
<h2>Segments ({metric})</h2>
<table id="segments"><thead><tr><th>run</th><th>kind</th><th>segment</th><th>users</th><th>mean [95% CI]</th></tr></thead>
<tbody>{seg_table}</tbody></table>
<script>
window.addEventListener("load", () => {{
  const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images-loaded", String(ok));
}});
</script>
</body></html>
"""
