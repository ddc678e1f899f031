"""Cumulative regret and reward curves of simulations as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recforge.bandits.simulators import SimResult


def plot_curves(results: list[SimResult], out_dir: str | Path, max_points: int = 2000) -> list[Path]:
    """Write ``regret.png`` (cumulative expected regret) and ``reward.png`` (cumulative observed reward) for the runs in
    ``results`` into ``out_dir``; returns the paths. Curves are thinned to ``max_points`` points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for attr, label, fname in (("cumulative_regret", "cumulative regret", "regret.png"),
                               ("cumulative_reward", "cumulative reward", "reward.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for res in results:
            y = getattr(res, attr)
            idx = np.unique(np.linspace(0, len(y) - 1, min(max_points, len(y))).astype(int))
            ax.plot(idx + 1, y[idx], label=res.policy)
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
