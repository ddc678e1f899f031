"""What a semantic-ID table looks like: collisions, codebook use, prefix coherence, popularity per first code.

``inspect_sids(sids)`` returns a JSON-able report; ``plot_sids(sids, path)`` draws items and training popularity per
first code. Prefix coherence compares pairs of items sharing their first code with random pairs: the share of pairs
having at least one attribute in common (needs the catalogue's attributes kept in the table), or, without
attributes, the mean cosine similarity of the items' training-user sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.models.generative.semantic_ids import SemanticIds, group_sizes


def _share_attribute(attrs: sp.csr_array, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool (P,): items a[p] and b[p] (dense ids) have an attribute in common."""
    both = attrs[a].multiply(attrs[b])
    return np.asarray(both.sum(axis=1)).ravel() > 0


def _pairs(first: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One partner per item with the same first code (items alone in their code are left out): rows (a, b),
    0-based positions into ``first``."""
    order = np.argsort(first, kind="stable")
    sorted_codes = first[order]
    starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
    ends = np.searchsorted(sorted_codes, sorted_codes, side="right")
    size = ends - starts
    ok = size > 1
    # a uniformly drawn other member: an offset in 1..size-1 from the item's own slot, wrapped inside the group
    own = np.arange(len(order)) - starts
    off = (own + 1 + (rng.random(len(order)) * np.maximum(size - 1, 1)).astype(np.int64)) % np.maximum(size, 1)
    partner = order[starts + off]
    return order[ok], partner[ok]


def inspect_sids(sids: SemanticIds, n_pairs: int = 20000, seed: int = 0) -> dict[str, Any]:
    """The report of ``recforge sid inspect``: collisions before/after and the largest group, codes used per level,
    prefix coherence (same first code vs random pairs, and their ratio), and training popularity per first code."""
    rng = np.random.default_rng(seed)
    raw, final = sids.raw_codes[1:], sids.codes[1:]
    before, after = group_sizes(raw), group_sizes(final)
    first = raw[:, 0]
    a, b = _pairs(first, rng)
    take = rng.permutation(len(a))[:n_pairs]
    a, b = a[take] + 1, b[take] + 1
    ra = rng.integers(1, sids.n_items + 1, len(a))
    rb = rng.integers(1, sids.n_items + 1, len(a))
    keep = ra != rb
    ra, rb = ra[keep], rb[keep]
    if sids.attributes is not None and sids.attributes.nnz:
        attrs = sp.csr_array(sids.attributes)
        same, rand = _share_attribute(attrs, a, b).mean(), _share_attribute(attrs, ra, rb).mean()
        measure = "share of pairs with a common attribute"
    else:
        same, rand, measure = float("nan"), float("nan"), "unavailable (no attributes in the table)"
    pop = sids.popularity[1:]
    per_code = np.bincount(first, weights=pop, minlength=sids.sizes[0])
    items_per_code = np.bincount(first, minlength=sids.sizes[0])
    top = np.argsort(-per_code, kind="stable")[:10]
    return {
        "hash": sids.hash,
        "config": {k: getattr(sids.config, k) for k in ("features", "tokenizer", "levels", "codebook_size",
                                                        "collisions")},
        "n_items": sids.n_items,
        "sizes": list(sids.sizes),
        "collisions": {
            "before": {"collided_share": float((before > 1).mean()), "largest_group": int(before.max()),
                       "groups": int((np.unique(raw, axis=0, return_counts=True)[1] > 1).sum())},
            "after": {"collided_share": float((after > 1).mean()), "largest_group": int(after.max())},
        },
        "codes_used_per_level": [int(len(np.unique(raw[:, lv]))) for lv in range(raw.shape[1])],
        "prefix_coherence": {"measure": measure, "same_first_code": float(same), "random_pairs": float(rand),
                             "ratio": float(same / rand) if rand and np.isfinite(rand) and rand > 0 else float("nan"),
                             "pairs": int(len(a))},
        "popularity_per_first_code": {
            "top_codes": [{"code": int(c), "items": int(items_per_code[c]),
                           "interaction_share": float(per_code[c] / max(per_code.sum(), 1))} for c in top],
            "items_per_code_max": int(items_per_code.max()),
            "items_per_code_mean": float(items_per_code[items_per_code > 0].mean()),
        },
        "build": sids.stats,
    }


def plot_sids(sids: SemanticIds, path: str | Path) -> Path:
    """Two panels, first codes sorted by popularity: items per first code and training interactions per first code."""
    import matplotlib  # heavy: only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = sids.raw_codes[1:, 0]
    per_code = np.bincount(first, weights=sids.popularity[1:], minlength=sids.sizes[0])
    items = np.bincount(first, minlength=sids.sizes[0])
    order = np.argsort(-per_code, kind="stable")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].bar(np.arange(len(order)), items[order], width=1.0)
    axes[0].set(title="items per first code", xlabel="first code (by popularity)", ylabel="items")
    axes[1].bar(np.arange(len(order)), per_code[order], width=1.0)
    axes[1].set(title="training interactions per first code", xlabel="first code (by popularity)",
                ylabel="interactions")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
