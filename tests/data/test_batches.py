"""Training tensors for sequential models against plain Python references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.batches import build_sequence_data, gather_windows, last_window, window_ends
from recforge.errors import ConfigError


def _jagged(lengths, seed=0):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(1, 50, offsets[-1]).astype(np.int64)
    return items, offsets


def _naive_windows(items, offsets, size, sliding, stride):
    rows = []
    for u in range(len(offsets) - 1):
        seq = items[offsets[u] : offsets[u + 1]].tolist()
        if len(seq) < 2:
            continue
        ends = [len(seq)]
        # another window while the last one does not reach the first item and would keep >= 2 items
        while sliding and ends[-1] - size > 0 and ends[-1] - stride >= 2:
            ends.append(ends[-1] - stride)
        for e in ends:
            win = seq[max(0, e - size) : e]
            rows.append([0] * (size - len(win)) + win)
    return rows


@pytest.mark.parametrize("sliding", [False, True])
@pytest.mark.parametrize("size", [3, 5, 12])
def test_windows_match_python_reference(sliding, size):
    lengths = [0, 1, 2, 5, 11, 4, 23]
    items, offsets = _jagged(lengths)
    stride = max(size - 1, 1)
    ends = window_ends(offsets, size, sliding=sliding)
    got = gather_windows(items, offsets, ends, size)
    expected = _naive_windows(items, offsets, size, sliding, stride)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, expected))


def test_sliding_windows_cover_every_item_of_long_histories():
    items, offsets = _jagged([30])
    ends = window_ends(offsets, 8, sliding=True)
    covered = set()
    for e in ends:
        covered.update(range(max(0, e - 8), e))
    assert covered == set(range(30))


def test_last_window_left_pads_and_truncates():
    items = np.array([1, 2, 3, 4, 5, 6], np.int64)
    offsets = np.array([0, 0, 2, 6], np.int64)
    np.testing.assert_array_equal(last_window(items, offsets, 3), [[0, 0, 0], [0, 1, 2], [4, 5, 6]])


def test_next_item_batch_aligns_inputs_and_targets():
    items, offsets = _jagged([4, 7])
    data = build_sequence_data(items, offsets, n_items=50, max_len=5)
    batch = data.batch(torch.arange(len(data)), torch.Generator().manual_seed(0))
    inp, tgt = batch["input"].numpy(), batch["target"].numpy()
    np.testing.assert_array_equal(inp[0], [0, 0] + items[:3].tolist())
    np.testing.assert_array_equal(tgt[0], [0, 0] + items[1:4].tolist())
    np.testing.assert_array_equal(inp[1], items[5:10])
    np.testing.assert_array_equal(tgt[1], items[6:11])


def test_cloze_batch_masks_only_real_items_and_targets_the_originals():
    items, offsets = _jagged([3, 40, 12, 25], seed=1)
    data = build_sequence_data(items, offsets, n_items=50, max_len=10, objective="cloze", mask_token=51, mask_prob=0.3)
    gen = torch.Generator().manual_seed(0)
    batch = data.batch(torch.arange(len(data)), gen)
    inp, tgt, orig = batch["input"], batch["target"], data.windows[:, 1:]
    masked = inp == 51
    assert masked.any()
    assert torch.equal(tgt[masked], orig[masked])
    assert (tgt[~masked] == 0).all() and (inp[~masked] == orig[~masked]).all()
    assert not (masked & (orig == 0)).any()


def test_negatives_shapes_range_and_determinism():
    items, offsets = _jagged([6, 9, 5])
    counts = torch.from_numpy(np.bincount(items, minlength=51).astype(np.float64))
    for mode, shape in (("per_position", (3, 4, 7)), ("shared", (7,))):
        data = build_sequence_data(items, offsets, n_items=50, max_len=4, negatives=mode, n_negatives=7,
                                   sample_prob=counts)
        b1 = data.batch(torch.arange(3), torch.Generator().manual_seed(5))
        b2 = data.batch(torch.arange(3), torch.Generator().manual_seed(5))
        assert tuple(b1["negatives"].shape) == shape
        assert torch.equal(b1["negatives"], b2["negatives"])
        # popularity sampler: only items that occur can be drawn
        assert (counts[b1["negatives"]] > 0).all()
        assert b1["log_q"].shape == (51,)


def test_popularity_log_q_is_normalised():
    items, offsets = _jagged([6, 9])
    counts = torch.from_numpy(np.bincount(items, minlength=51).astype(np.float64))
    data = build_sequence_data(items, offsets, n_items=50, max_len=4, negatives="shared", sample_prob=counts)
    assert float(torch.exp(data.log_q.double())[1:].sum()) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_len": 0}, "max_len"),
        ({"max_len": 5, "objective": "cloze", "mask_token": 3}, "mask_token"),
        ({"max_len": 5, "negatives": "shared", "n_negatives": 0}, "n_negatives"),
    ],
)
def test_bad_recipes_are_config_errors(kwargs, match):
    items, offsets = _jagged([6, 9])
    with pytest.raises(ConfigError, match=match):
        build_sequence_data(items, offsets, n_items=50, **kwargs)


def test_histories_too_short_to_train_are_a_config_error():
    items, offsets = _jagged([1, 1, 0])
    with pytest.raises(ConfigError, match="2 or more items"):
        build_sequence_data(items, offsets, n_items=50, max_len=5)
