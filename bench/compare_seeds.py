"""Compare two models over seeds from bench/sequential.py result lines: per-model means and a paired test.

Rows are matched on the training seed (``config.train.seed``), so the comparison is paired: each seed gives both
models the same split and the same data order, and the per-seed difference removes what the seed moves in both.
Reports, per model, the mean best validation and test metric with the Student-t 95% CI over seeds, then the per-seed
differences A − B, their mean with its t CI, and how many seeds A is ahead. A and B may be one model in two settings
(``--a-where`` / ``--b-where``); each row's config is completed with the current defaults first, so rows written before
an option existed match its default (new options default to the old behaviour).

    .venv/bin/python bench/compare_seeds.py bench/results/sequential-beauty-lr-wd.jsonl \
        bench/results/sequential-beauty-seeds4-7-hstu.jsonl bench/results/sequential-beauty-seeds4-7-sasrec.jsonl \
        --a hstu --b sasrec --where train.lr=0.001 dropout=0.35 train.weight_decay=0.2
    # one model, two settings
    .venv/bin/python bench/compare_seeds.py bench/results/sequential-beauty-lineardim-256.jsonl \
        bench/results/sequential-beauty-lr-wd.jsonl --a hstu --a-where linear_dim=256 --b hstu --b-where linear_dim=0 \
        --where train.lr=0.001 dropout=0.35 train.weight_decay=0.2
    # --plot PATH also draws the comparison: each seed's A and B joined by a line, and the differences with their CI
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from recforge.config import apply_overrides, from_dict, to_dict
from recforge.errors import ConfigError
from recforge.experiments.seeds import seed_ci
from recforge.registry import get_model


def load_rows(files: list[Path]) -> list[dict[str, Any]]:
    """Every result line of ``files``, each config completed with its model's current defaults (rows written before
    an option existed then match the option's default)."""
    rows = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            row["config"] = to_dict(from_dict(get_model(row["model"]).config_class, row["config"]))
            row["path"] = path
            rows.append(row)
    return rows


def by_seed(rows: list[dict[str, Any]], model: str, where: list[str]) -> dict[int, dict[str, Any]]:
    """{seed: row} of ``model``'s rows whose config the ``key=value`` overrides in ``where`` leave unchanged (values
    parsed and coerced as ``--set`` does: 1e-3 == 0.001). Two rows for one seed are an error (which one would count?)."""
    cls = get_model(model).config_class
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["model"] != model or to_dict(from_dict(cls, apply_overrides(row["config"], where))) != row["config"]:
            continue
        seed = row["config"]["train"]["seed"]
        if seed in out:
            raise SystemExit(f"{model}: two result rows for seed {seed} match {where} (the second in {row['path']})")
        out[seed] = row
    return out


def interval(ci: dict[str, float], sign: str = "") -> str:
    """'[low, high]' of a :func:`seed_ci` result; one seed has no interval (its CI collapses to the value)."""
    if ci["n"] < 2:
        return "[no CI: one seed]"
    return f"[{ci['ci_low']:{sign}.4f}, {ci['ci_high']:{sign}.4f}]"


def plot(path: Path, seeds: list[int], a: np.ndarray, b: np.ndarray, names: tuple[str, str], metric: str) -> None:
    """Two panels: per seed, A and B's test ``metric`` joined by a line (a slope per seed shows who is ahead where);
    the per-seed differences A − B with their mean and t 95% CI, against the zero line."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    diff = a - b
    ci = seed_ci(diff)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
    for s, va, vb in zip(seeds, a, b):
        left.plot([0, 1], [va, vb], color="tab:green" if va > vb else "tab:red", alpha=0.6, marker="o")
        left.annotate(str(s), (0, va), xytext=(-14, 0), textcoords="offset points", va="center", fontsize=7)
    left.set_xticks([0, 1], [f"A: {names[0]}", f"B: {names[1]}"])
    left.set_xlim(-0.3, 1.3)
    left.set_ylabel(f"test {metric}")
    left.set_title("per seed (green: A ahead)", fontsize=9)
    right.axvline(0, color="grey", lw=1)
    right.scatter(diff, np.zeros_like(diff) + np.linspace(-0.15, 0.15, len(diff)), color="tab:blue", zorder=3)
    right.errorbar([ci["mean"]], [-0.5], xerr=[[ci["mean"] - ci["ci_low"]], [ci["ci_high"] - ci["mean"]]],
                   fmt="D", color="black", capsize=4)
    right.set_yticks([0, -0.5], ["seeds", "mean [t 95% CI]"])
    right.set_ylim(-0.9, 0.4)
    right.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    right.margins(x=0.15)
    right.set_xlabel(f"A − B, test {metric}")
    right.set_title(f"A ahead in {int((diff > 0).sum())}/{len(diff)} seeds; mean {ci['mean']:+.4f}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--a", required=True, help="first model (differences are A - B)")
    p.add_argument("--b", required=True)
    p.add_argument("--metric", default="ndcg@10")
    p.add_argument("--where", nargs="*", default=[], help="config filters, e.g. train.lr=0.001 dropout=0.35")
    p.add_argument("--a-where", nargs="*", default=[], help="filters for A only")
    p.add_argument("--b-where", nargs="*", default=[], help="filters for B only")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="also draw the comparison into this file")
    args = p.parse_args()

    try:
        rows = load_rows(args.files)
        a = by_seed(rows, args.a, args.where + args.a_where)
        b = by_seed(rows, args.b, args.where + args.b_where)
    except ConfigError as exc:  # an unknown model or filter key, a bad value: one line
        raise SystemExit(f"compare_seeds: {exc}") from None
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise SystemExit(f"no seed has rows for both {args.a} ({sorted(a)}) and {args.b} ({sorted(b)})")
    valid_key = f"best_valid_{args.metric}"  # only the early-stopping metric has a validation figure
    has_valid = all(valid_key in rows[s] for rows in (a, b) for s in seeds)
    print(f"seeds {seeds} ({len(seeds)}); metric {args.metric}; filters {args.where or 'none'}; "
          f"A: {args.a} {args.a_where}, B: {args.b} {args.b_where}")
    print("| model | mean best valid | mean test [t 95% CI] | test s.d. |")
    print("|---|---|---|---|")
    for name, rows in (("A: " + args.a, a), ("B: " + args.b, b)):
        test = seed_ci([rows[s]["test"][args.metric]["mean"] for s in seeds])
        valid = f"{np.mean([rows[s][valid_key] for s in seeds]):.5f}" if has_valid else "—"
        std = f"{test['std']:.4f}" if test["n"] > 1 else "—"
        print(f"| {name} | {valid} | {test['mean']:.4f} {interval(test)} | {std} |")
    parts = [("valid", lambda r: r[valid_key])] if has_valid else []
    for part, get in parts + [("test", lambda r: r["test"][args.metric]["mean"])]:
        diff = np.array([get(a[s]) - get(b[s]) for s in seeds])
        ci = seed_ci(diff)
        print(f"{part} A - B per seed: {', '.join(f'{d:+.4f}' for d in diff)}; mean {ci['mean']:+.4f} "
              f"{interval(ci, '+')}; A ahead in {int((diff > 0).sum())}/{len(seeds)}")
    if args.plot:
        a_test, b_test = (np.array([rows[s]["test"][args.metric]["mean"] for s in seeds]) for rows in (a, b))
        plot(args.plot, seeds, a_test, b_test, (args.a, args.b), args.metric)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
