import numpy as np
import pytest

from recforge.bandits.logged import LoggedFeedback, read_logged_csv, read_open_bandit
from recforge.errors import ConfigError, DataError

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
    assert fb.meta["source"] == str(path)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"propensity_score": np.zeros(20)}, r"line 2, column 'propensity_score'.*0 < p <= 1"),
        ({"position": np.zeros(20, dtype=int)}, r"column 'position'.*>= 1"),
        ({"item_id": np.array(["x"] * 20)}, r"column 'item_id'.*integers"),
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
