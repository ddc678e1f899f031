"""Cumulative regret and reward curves of simulations as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recforge.bandits.simulators import SimResult


def plot_curves(results: list[SimResult], out_dir: str | Path, max_points: int = 2000) -> list[Path]:
    """Write ``regret.png`` (cumulative expected regret) and ``reward.png`` (cumulative observed reward) for the runs in
    ``results`` into ``out_dir``; returns the paths. Runs of the same policy (repetitions) are drawn as their mean curve
    with a min-max band. Curves are thinned to ``max_points`` points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for attr, label, fname in (("cumulative_regret", "cumulative regret", "regret.png"),
                               ("cumulative_reward", "cumulative reward", "reward.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        by_policy: dict[str, list[SimResult]] = {}
        for res in results:
            by_policy.setdefault(res.policy, []).append(res)
        for policy, runs in by_policy.items():
            ys = np.stack([getattr(r, attr) for r in runs])  # (repeats, T)
            idx = np.unique(np.linspace(0, ys.shape[1] - 1, min(max_points, ys.shape[1])).astype(int))
            label_n = f"{policy} (n={len(runs)})" if len(runs) > 1 else policy
            (line,) = ax.plot(idx + 1, ys[:, idx].mean(axis=0), label=label_n)
            if len(runs) > 1:
                ax.fill_between(idx + 1, ys[:, idx].min(axis=0), ys[:, idx].max(axis=0), color=line.get_color(), alpha=0.2)
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.set_title(f"{label} on {results[0].env}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
