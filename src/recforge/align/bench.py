"""The reward-model benchmark: a fixed suite of preference test sets, scored for any reward model (``recforge rm
bench``), the recommender counterpart of reward-model benchmarks.

On a split (a reward model of that split)::

    heldout-random    each held-out test event against one uniform item the user never touched
    heldout-popular   ... against one item drawn by training popularity (harder: popular items are plausible)
    hard-negatives    ... against a reference scorer's best unseen non-target item (e.g. ItemKNN fitted on train)
    ratings-heldout   a user's validation and test events with different ratings, the higher-rated one chosen
                      (history: the training items); only for logs with explicit ratings

Synthetic worlds (each reward model is trained on the world's training pairs, then scored on its test pairs)::

    synthetic-cyclic    rock-paper-scissors preferences (Bradley–Terry cannot exceed ~50 %, a GPM can reach 100 %)
    synthetic-shared    several annotator sources sharing one preference; scored on pairs of the shared preference
    synthetic-utility   a planted item utility on a sequential log (the higher-utility item chosen)

Every set is seeded; each score is :func:`recforge.align.evaluation.pair_report` (accuracy, AUC, ECE, log loss).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from recforge.align.checks import CYCLIC_CONFIG, SYNTH_CONFIG
from recforge.align.evaluation import pair_report
from recforge.align.pairs import heldout_pairs, model_hard_pairs
from recforge.align.reward import RewardConfig, RewardModel
from recforge.align.synthetic import cyclic_pairs, multi_source_pairs, planted_utility, utility_pairs
from recforge.data.batches import last_window
from recforge.data.preferences import PreferencePairs
from recforge.data.split import Split, leave_last_out
from recforge.errors import DataError
from recforge.protocols import HistoryScorer
from recforge.registry import resolve

log = logging.getLogger(__name__)

SPLIT_SETS = ("heldout-random", "heldout-popular", "hard-negatives", "ratings-heldout")
SYNTHETIC_SETS = ("synthetic-cyclic", "synthetic-shared", "synthetic-utility")


def rating_pairs_heldout(split: Split, max_history: int = 50) -> PreferencePairs:
    """A user's validation and test events with different ratings as one pair (the higher-rated chosen), history =
    the user's last ``max_history`` training items; ties and the same item twice dropped (``meta`` counts them).
    DataError without explicit ratings or without a validation part."""
    valid, test = split.valid, split.test
    values = [p.value for p in (split.train, valid, test) if p is not None and p.value is not None]
    if valid is None or not len(valid) or len(values) < 3 or len(np.unique(np.concatenate(values))) < 2:
        raise DataError("ratings pairs need a validation part and explicit ratings (this log has none)")
    n = split.train.n_users + 1
    v_item, v_val = np.zeros(n, np.int64), np.full(n, np.nan)
    t_item, t_val = np.zeros(n, np.int64), np.full(n, np.nan)
    v_item[valid.user], v_val[valid.user] = valid.item, valid.value  # the last event wins for a user with several
    t_item[test.user], t_val[test.user] = test.item, test.value
    both = np.flatnonzero((v_item > 0) & (t_item > 0))
    same = v_item[both] == t_item[both]
    tie = (v_val[both] == t_val[both]) & ~same
    users = both[~same & ~tie]
    if len(users) == 0:
        raise DataError(f"no user's validation and test events have different ratings ({int(tie.sum())} ties)")
    win = v_val[users] > t_val[users]
    items, offsets = split.train.sequences()
    window = last_window(items, offsets, max_history)[users]
    lengths = (window > 0).sum(1)
    return PreferencePairs(user=users, history=window[window > 0],
                           history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                           chosen=np.where(win, v_item[users], t_item[users]),
                           rejected=np.where(win, t_item[users], v_item[users]), user_vocab=split.train.user_vocab,
                           item_vocab=split.train.item_vocab, sources=("ratings-heldout",),
                           meta={"split_hash": split.hash, "ties_dropped": int(tie.sum()),
                                 "same_item_dropped": int(same.sum())})


def split_suite(split: Split, hard_scorer: HistoryScorer | None = None, max_history: int = 50,
                seed: int = 0) -> tuple[dict[str, PreferencePairs], dict[str, str]]:
    """The split's test sets -> ({name: pairs}, {name: why it was left out}); ``hard_scorer`` (fitted on
    ``split.train``) picks the hard negatives."""
    sets: dict[str, PreferencePairs] = {}
    skipped: dict[str, str] = {}
    base = heldout_pairs(split, "test", "random", max_history=max_history, seed=seed + 2000)
    sets["heldout-random"] = base
    sets["heldout-popular"] = heldout_pairs(split, "test", "popular", max_history=max_history, seed=seed + 3000)
    if hard_scorer is None:
        skipped["hard-negatives"] = "no reference scorer given"
    else:
        sets["hard-negatives"] = model_hard_pairs(base, hard_scorer, k=1, split=split)
    try:
        sets["ratings-heldout"] = rating_pairs_heldout(split, max_history)
    except DataError as exc:
        skipped["ratings-heldout"] = str(exc)
    return sets, skipped


def score_suite(model: RewardModel, sets: dict[str, PreferencePairs]) -> dict[str, dict[str, Any]]:
    """{set name: pair report dict} of ``model`` (at its fitted temperature) on every set."""
    if any(p.item_vocab != model.item_vocab for p in sets.values()):
        raise DataError(f"the reward model {model.name!r} was built on another item catalogue than the test sets")
    return {name: pair_report(model, pairs).to_dict() for name, pairs in sets.items()}


def synthetic_worlds(seed: int = 0) -> dict[str, tuple[PreferencePairs, PreferencePairs, PreferencePairs]]:
    """{set name: (train, valid, test) pairs} of the three synthetic worlds, seeded."""
    multi = multi_source_pairs(seed=seed)
    data, utility = planted_utility(n_users=200, n_items=40, seed=seed)
    split = leave_last_out(data)
    return {
        "synthetic-cyclic": tuple(cyclic_pairs(n, seed=seed + off) for n, off in ((3000, 0), (1000, 100), (2000, 200))),
        "synthetic-shared": (multi["train"], multi["valid"], multi["shared"]),
        "synthetic-utility": tuple(utility_pairs(split, utility, n, seed=seed + off)
                                   for n, off in ((6, 0), (2, 100), (4, 200))),
    }


def synthetic_bench(names: list[str], seed: int = 0, epochs: int | None = None) -> dict[str, dict[str, Any]]:
    """Train each registered reward model ``names`` on each synthetic world and score it on the world's test pairs
    -> {model name: {set name: report dict}}. ``epochs`` overrides the worlds' settings (a quick run)."""
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for world, (train, valid, test) in synthetic_worlds(seed).items():
        cfg: RewardConfig = CYCLIC_CONFIG if world == "synthetic-cyclic" else SYNTH_CONFIG
        if epochs is not None:
            cfg = dataclasses.replace(cfg, epochs=epochs)
        for name in names:
            model = resolve("reward_model", name)(cfg, seed=seed).fit(train, valid)
            out[name][world] = pair_report(model, test).to_dict()
            log.info("rm bench %s on %s: %s", name, world, out[name][world])
    return out
