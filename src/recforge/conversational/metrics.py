"""CRS metrics over finished episodes: SR@T, AT, hDCG and the per-turn success curve.

An episode is summarised by ``turn`` (1-based turn of success, 0 = failure within T turns) and ``rank`` (1-based
position of the target in the accepted list). Pure numpy functions over the arrays of all episodes, shape (E,).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def success_rate(turns: np.ndarray, t: int) -> float:
    """SR@t: share of episodes that succeed within ``t`` turns."""
    turns = np.asarray(turns)
    return float(np.mean((turns > 0) & (turns <= t))) if len(turns) else float("nan")


def average_turns(turns: np.ndarray, max_turns: int) -> float:
    """AT: mean number of turns, a failed episode counting ``max_turns``."""
    turns = np.asarray(turns)
    return float(np.mean(np.where(turns > 0, turns, max_turns))) if len(turns) else float("nan")


def hdcg_per_episode(turns: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """hDCG@(T, K) of each episode (UNICORN): a hit at turn t and rank k earns
    ``1/log2(t+2) + (1/log2(t+1) - 1/log2(t+2)) / log2(k+1)`` — rank 1 at turn t is worth a DCG turn discount
    ``1/log2(t+1)``, lower ranks slide towards the next turn's discount; failures earn 0. Shape (E,)."""
    turns = np.asarray(turns, dtype=np.float64)
    ranks = np.asarray(ranks, dtype=np.float64)
    ok = turns > 0
    t = np.where(ok, turns, 1.0)
    k = np.where(ok, ranks, 1.0)
    gain = 1.0 / np.log2(t + 2) + (1.0 / np.log2(t + 1) - 1.0 / np.log2(t + 2)) / np.log2(k + 1)
    return np.where(ok, gain, 0.0)


def hdcg(turns: np.ndarray, ranks: np.ndarray) -> float:
    """Mean hDCG over episodes."""
    return float(np.mean(hdcg_per_episode(turns, ranks))) if len(turns) else float("nan")


def success_curve(turns: np.ndarray, max_turns: int) -> np.ndarray:
    """SR@t for t = 1..max_turns, shape (max_turns,)."""
    turns = np.asarray(turns)
    return np.asarray([success_rate(turns, t) for t in range(1, max_turns + 1)])


def plot_success_curves(curves: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Write per-turn success curves (one line per policy) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3, label=name)
    ax.set_xlabel("turn")
    ax.set_ylabel("success rate (SR@t)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
