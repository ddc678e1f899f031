"""The reward-model bench: held-out rating pairs built right (ties and repeats dropped), the split suite, the
synthetic suite (GPM wins the cyclic set, BT cannot), ``recforge rm bench`` on a run and on the synthetic worlds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recforge.align.bench import SYNTHETIC_SETS, rating_pairs_heldout, synthetic_bench
from recforge.cli import main
from recforge.data.interactions import Interactions
from recforge.data.split import leave_last_out
from recforge.errors import DataError


def _rated_log() -> Interactions:
    # per user: 3 training events, then validation, then test; values chosen so the pairs are known
    #   u0: valid i5 (5) vs test i6 (2) -> chosen i5;  u1: valid i5 (1) vs test i7 (4) -> chosen i7
    #   u2: valid 3 vs test 3 (a tie, dropped);        u3: valid i8 vs test i8 (same item, dropped)
    rows = []
    for u, (vi, vv, ti, tv) in enumerate([(5, 5, 6, 2), (5, 1, 7, 4), (5, 3, 6, 3), (8, 4, 8, 2)]):
        rows += [(u, k, 3.0) for k in range(3)] + [(u, vi, vv), (u, ti, tv)]
    user, item, value = zip(*rows)
    return Interactions.from_arrays(np.char.add("u", np.array(user).astype(str)),
                                    np.char.add("i", np.array(item).astype(str)), time=np.tile(np.arange(5), 4),
                                    value=np.array(value, float))


def test_rating_pairs_heldout_are_the_known_pairs() -> None:
    split = leave_last_out(_rated_log())
    pairs = rating_pairs_heldout(split, max_history=2)
    items, users = split.train.item_vocab.decode, split.train.user_vocab.decode
    got = {users(np.array([u]))[0]: (items(np.array([c]))[0], items(np.array([r]))[0])
           for u, c, r in zip(pairs.user, pairs.chosen, pairs.rejected[:, 0])}
    assert got == {"u0": ("i5", "i6"), "u1": ("i7", "i5")}
    assert pairs.meta["ties_dropped"] == 1 and pairs.meta["same_item_dropped"] == 1
    assert np.diff(pairs.history_offsets).tolist() == [2, 2]  # the last 2 training items


def test_rating_pairs_need_ratings() -> None:
    data = _rated_log()
    implicit = Interactions.from_arrays(data.user_vocab.decode(data.user), data.item_vocab.decode(data.item),
                                        time=data.time)
    with pytest.raises(DataError, match="explicit ratings"):
        rating_pairs_heldout(leave_last_out(implicit))


@pytest.mark.slow  # the synthetic worlds at their full settings (~1-2 minutes)
def test_synthetic_suite_separates_gpm_from_bt() -> None:
    res = synthetic_bench(["rm_bt", "rm_gpm"], seed=0)
    assert res["rm_gpm"]["synthetic-cyclic"]["accuracy"] >= 0.95
    assert res["rm_bt"]["synthetic-cyclic"]["accuracy"] < 0.6
    assert res["rm_bt"]["synthetic-utility"]["accuracy"] > 0.95


def test_rm_bench_cli_synthetic(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["rm", "bench", "--synthetic", "rm_bt", "--epochs", "3", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["rm_bt (synthetic)"]
    assert set(res) == set(SYNTHETIC_SETS)
    assert res["synthetic-utility"]["accuracy"] > 0.9  # a planted utility is a scalar reward: BT learns it
    assert res["synthetic-cyclic"]["accuracy"] < 0.6  # and cannot represent a cycle


def test_rm_bench_needs_something(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rm", "bench"]) == 2
    assert "--synthetic" in capsys.readouterr().err
