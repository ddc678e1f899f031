"""Logged bandit feedback: validation, the Open-Bandit-layout reader, and external item ids through the action Vocab."""

from pathlib import Path

import numpy as np
import pytest

from recforge.data.feedback import LoggedFeedback, encode_actions, read_logged_csv, read_open_bandit
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError


@pytest.fixture()
def obd_root(data_dir: Path) -> Path:
    """The Open Bandit Dataset sample folder, or skip the test with the reason."""
    path = data_dir / "open-bandit-dataset-small"
    if not path.exists():
        pytest.skip(f"{path} does not exist")
    return path


@pytest.fixture()
def obd_csv():
    return write_obd_csv


def write_obd_csv(path: Path, n: int = 300, n_items: int = 6, seed: int = 0, item_ids=None, **overrides) -> Path:
    """A small log in the Open Bandit Dataset CSV layout (uniform random logging, 3 slots); ``item_ids`` names the
    items (default 0..n_items-1) in the item_id and affinity columns."""
    rng = np.random.default_rng(seed)
    names = list(range(n_items)) if item_ids is None else list(item_ids)
    cols = {
        "": np.arange(n),
        "item_id": [names[i] for i in rng.integers(0, n_items, n)],
        "position": rng.integers(1, 4, n),
        "click": (rng.random(n) < 0.2).astype(int),
        "propensity_score": np.full(n, 1.0 / n_items),
        "user_feature_0": rng.choice(["a", "b"], n),
    }
    for name in names:
        cols[f"user-item_affinity_{name}"] = rng.random(n)
    cols.update(overrides)
    lines = [",".join(cols)] + [",".join(str(cols[c][i]) for c in cols) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path

GOOD = dict(action=np.array([0, 1, 2]), reward=np.array([1.0, 0.0, 1.0]), pscore=np.array([0.5, 0.25, 1.0]), n_actions=3)


def test_valid_feedback_normalises_arrays():
    fb = LoggedFeedback(**GOOD, context=np.ones(3), position=np.array([0, 1, 0]), len_list=2)
    assert fb.context.shape == (3, 1) and fb.action.dtype == np.int64 and fb.n_rounds == 3
    assert fb.on_policy_value() == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"n_actions": 0}, ConfigError, "n_actions"),
        ({"action": np.array([0, 1, 3])}, DataError, r"action must be in \[0, 3\); row 2"),
        ({"action": np.array([0.0, 1.0, 2.0])}, DataError, "integers"),
        ({"action": np.array([], dtype=int), "reward": np.array([]), "pscore": np.array([])}, DataError, "empty"),
        ({"reward": np.array([1.0, 0.0])}, DataError, "reward must have shape"),
        ({"reward": np.array([1.0, np.nan, 0.0])}, DataError, "non-finite"),
        ({"pscore": np.array([0.5, 0.0, 1.0])}, DataError, r"0 < p <= 1; row 1"),
        ({"pscore": np.array([0.5, 1.5, 1.0])}, DataError, "0 < p <= 1"),
        ({"pscore": np.array([0.5, 0.5])}, DataError, "pscore must have shape"),
        ({"context": np.ones((2, 4))}, DataError, "context must have shape"),
        ({"position": np.array([0, 1, 2]), "len_list": 2}, DataError, r"position must be in \[0, len_list=2\); row 2"),
        ({"len_list": 2}, DataError, "needs a position"),
        ({"len_list": 0}, ConfigError, "len_list"),
        ({"pscore_slate": np.array([0.1, 0.2, 0.0])}, DataError, "pscore_slate"),
        ({"action_context": np.ones((2, 2))}, DataError, "action_context"),
        ({"action_vocab": Vocab(["a", "b"])}, DataError, "action_vocab has 2 ids for n_actions=3"),
    ],
)
def test_invalid_feedback(changes, error, match):
    with pytest.raises(error, match=match):
        LoggedFeedback(**{**GOOD, **changes})


def test_read_csv_roundtrip(tmp_path, obd_csv):
    path = obd_csv(tmp_path / "camp" / "camp.csv", n=50, n_items=6)
    fb = read_logged_csv(tmp_path / "camp")  # a folder X means X/X.csv
    assert fb.n_rounds == 50 and fb.n_actions == 6 and fb.len_list <= 3
    assert fb.context.shape == (50, 2 + 6)  # one-hot of user_feature_0 (a/b) + 6 affinities
    assert set(np.unique(fb.position)) <= {0, 1, 2}
    assert fb.meta["source"] == str(path) and fb.meta["files"] == [str(path)]
    assert fb.action_vocab.ids == list(range(6))  # item id k is action index k: dense id k + 1
    raw = np.loadtxt(path, delimiter=",", skiprows=1, usecols=1, dtype=np.int64)
    np.testing.assert_array_equal(fb.action, raw)


def test_external_string_ids_go_through_the_action_vocab(tmp_path, obd_csv):
    path = obd_csv(tmp_path / "s.csv", n=80, n_items=3, item_ids=["sku-b", "sku-a", "sku-c"])
    fb = read_logged_csv(path)
    assert fb.action_vocab.ids == ["sku-a", "sku-b", "sku-c"]  # sorted: the action set's fixed order
    logged = [line.split(",")[1] for line in path.read_text().splitlines()[1:]]
    assert fb.external_actions(fb.action) == logged
    np.testing.assert_array_equal(encode_actions(fb.action_vocab, logged), fb.action)
    assert fb.context.shape == (80, 2 + 3)
    with pytest.raises(DataError, match="unknown action id 'sku-z'"):
        encode_actions(fb.action_vocab, ["sku-a", "sku-z"])


def test_integer_ids_arriving_as_text(tmp_path, obd_csv):
    fb = read_logged_csv(obd_csv(tmp_path / "i.csv", n=40, n_items=4))
    np.testing.assert_array_equal(encode_actions(fb.action_vocab, ["3", 0]), [3, 0])  # "3" from JSON is item 3
    with pytest.raises(DataError, match="unknown action id '4'"):
        encode_actions(fb.action_vocab, ["4"])


def test_item_context_defines_the_action_set(tmp_path, obd_csv):
    path = obd_csv(tmp_path / "c" / "c.csv", n=60, n_items=3, item_ids=[10, 20, 30])
    (tmp_path / "c" / "item_context.csv").write_text(
        ",item_id,item_feature_0\n0,40,0.4\n1,10,0.1\n2,30,0.3\n3,20,0.2\n")
    fb = read_logged_csv(path)
    assert fb.n_actions == 4 and fb.action_vocab.ids == [10, 20, 30, 40]  # item 40 is never logged, still an action
    np.testing.assert_allclose(fb.action_context[:, 0], [0.1, 0.2, 0.3, 0.4])
    assert fb.meta["files"] == [str(path), str(tmp_path / "c" / "item_context.csv")]
    (tmp_path / "c" / "item_context.csv").write_text(",item_id,item_feature_0\n0,10,0.1\n1,20,0.2\n")
    with pytest.raises(DataError, match=r"line \d+, column 'item_id': item id 30 is not in the action set of 2"):
        read_logged_csv(path)


def test_subset_keeps_the_action_set(tmp_path, obd_csv):
    fb = read_logged_csv(obd_csv(tmp_path / "u.csv", n=50, n_items=5))
    sub = fb.subset(np.array([3, 3, 7]))
    assert sub.n_rounds == 3 and sub.action_vocab is fb.action_vocab and sub.len_list == fb.len_list
    np.testing.assert_array_equal(sub.context, fb.context[[3, 3, 7]])


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"propensity_score": np.zeros(20)}, r"line 2, column 'propensity_score'.*0 < p <= 1"),
        ({"position": np.zeros(20, dtype=int)}, r"column 'position'.*>= 1"),
        ({"item_id": np.full(20, 1.5)}, r"column 'item_id'.*integer or string ids"),
        ({"item_id": np.array(["x"] * 20)}, r"line 2, column 'item_id': item id 'x' is not in the action set"),
        ({"click": np.full(20, 0.5)}, r"column 'click'.*integers"),
    ],
)
def test_read_csv_bad_values(tmp_path, obd_csv, overrides, match):
    obd_csv(tmp_path / "bad.csv", n=20, **overrides)
    with pytest.raises(DataError, match=match):
        read_logged_csv(tmp_path / "bad.csv")


def test_read_csv_min_pscore_clips(tmp_path, obd_csv):
    obd_csv(tmp_path / "z.csv", n=20, propensity_score=np.r_[np.zeros(5), np.full(15, 0.5)])
    fb = read_logged_csv(tmp_path / "z.csv", min_pscore=1e-3)
    assert fb.pscore.min() == pytest.approx(1e-3) and fb.pscore.max() == 0.5


def test_read_csv_missing_column_and_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("item_id,position,click\n1,1,0\n")
    with pytest.raises(DataError, match="missing column 'propensity_score'"):
        read_logged_csv(path)
    with pytest.raises(DataError, match="file not found"):
        read_logged_csv(tmp_path / "nope.csv")


def test_read_open_bandit_bad_names(tmp_path):
    with pytest.raises(ConfigError, match="policy must be one of"):
        read_open_bandit("greedy", "all", tmp_path)
    with pytest.raises(ConfigError, match="campaign must be one of"):
        read_open_bandit("random", "kids", tmp_path)


@pytest.mark.realdata
def test_read_open_bandit_real(obd_root):
    root = obd_root
    fb = read_open_bandit("random", "all", root)
    assert fb.n_rounds == 10_000 and fb.n_actions == 80 and fb.len_list == 3
    np.testing.assert_allclose(fb.pscore, 1 / 80)
    assert int(fb.reward.sum()) == 38  # README: 38 clicks
    bts = read_open_bandit("bts", "women", root)
    assert bts.n_actions == 46 and bts.pscore.min() == pytest.approx(1e-6)  # smallest BTS propensity in the file
