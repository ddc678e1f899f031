"""Inputs that used to give silently wrong results or tracebacks: ids that look alike, missing-id markers, time
units, decimal commas, rows of the wrong shape, unreadable files, list columns; error hints per interface."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recforge.data.datasets import load_dataset
from recforge.data.info import dataset_info
from recforge.data.interactions import Interactions
from recforge.data.io import cli_hints, read_interactions
from recforge.data.split import leave_last_out
from recforge.errors import ConfigError, DataError


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_ids_with_leading_zeros_are_not_merged(tmp_path):
    data, _ = read_interactions(_write(tmp_path, "a.csv", "user,item\n007,1\n07,1\n7,2\n"))
    assert data.n_users == 3 and sorted(data.user_vocab.ids) == ["007", "07", "7"]
    assert data.item_vocab.ids == [1, 2]  # a canonical column stays integers, sorted numerically


def test_signed_and_unicode_digit_ids_are_text(tmp_path):
    data, _ = read_interactions(_write(tmp_path, "a.csv", "user,item\n+7,1\n-7,1\n7,1\n\u0667,1\n"))
    assert sorted(data.user_vocab.ids) == sorted(["+7", "-7", "7", "\u0667"])


@pytest.mark.parametrize("marker", ["NULL", "null", "nan", "NaN", "None", "n/a", ""])
def test_missing_id_markers_are_rejected_with_count_and_first_line(tmp_path, marker):
    path = _write(tmp_path, "a.csv", f"user,item\n1,1\n{marker},2\n2,3\n{marker},4\n")
    with pytest.raises(DataError, match=r"missing user id .*2 row\(s\) affected, first on line 3") as exc:
        read_interactions(path)
    assert exc.value.line == 3 and exc.value.column == "user"
    data, report = read_interactions(path, on_invalid="drop")
    assert report.removed == {"empty_id": 2} and data.n_users == 2


def test_nan_ids_in_parquet_are_rejected(tmp_path):
    path = tmp_path / "a.parquet"
    pl.DataFrame({"user": [1.0, float("nan"), 2.0], "item": [1, 2, 3]}).write_parquet(path)
    with pytest.raises(DataError, match="missing user id"):
        read_interactions(path)


def test_unix_seconds_with_a_few_zeros_stay_unix_seconds(tmp_path):
    rows = "\n".join(f"{u},{i},{t}" for u, i, t in [(1, 1, 0), (1, 2, 1), (1, 3, 1_600_000_000),
                                                     (2, 1, 1_600_000_100), (2, 2, 1_600_000_200)])
    data, _ = read_interactions(_write(tmp_path, "a.csv", "user,item,timestamp\n" + rows + "\n"))
    assert dataset_info(data)["time"]["kind"] == "unix"


def test_milliseconds_are_detected_on_the_whole_column_with_a_note(tmp_path):
    path = _write(tmp_path, "a.csv", "user,item,timestamp\n1,1,1600000000000\n1,2,1600000100000\n2,1,5\n")
    data, report = read_interactions(path)
    assert data.time.tolist() == [1_600_000_000, 1_600_000_100, 0]
    assert any("milliseconds" in n for n in report.notes)
    assert dataset_info(data)["time"]["first"] == "1970-01-01"


@pytest.mark.parametrize(("unit", "factor"), [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_explicit_time_unit(tmp_path, unit, factor):
    path = _write(tmp_path, "a.csv", f"user,item,timestamp\n1,1,{1_600_000_000 * factor}\n")
    data, _ = read_interactions(path, time_unit=unit)
    assert data.time.tolist() == [1_600_000_000]


def test_milliseconds_read_as_seconds_are_out_of_range_not_a_traceback(tmp_path):
    path = _write(tmp_path, "a.csv", "user,item,timestamp\n1,1,1600000000000\n")
    with pytest.raises(DataError, match=r"out of range.*time_unit='ms'") as exc:
        read_interactions(path, time_unit="s")
    assert exc.value.line == 2


def test_dataset_info_of_a_log_in_milliseconds_does_not_crash():
    log = Interactions.from_arrays(np.array([1, 1]), np.array([1, 2]), time=np.array([1_600_000_000_000,
                                                                                      1_700_000_000_000]))
    assert dataset_info(log)["time"]["kind"] == "number"  # was: ValueError year 52671 is out of range


def test_bad_time_unit_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="time_unit"):
        read_interactions(_write(tmp_path, "a.csv", "user,item\n1,1\n"), time_unit="minutes")


def test_decimal_commas(tmp_path):
    path = _write(tmp_path, "a.csv", "user;item;rating\n1;1;4,5\n1;2;3\n")
    data, report = read_interactions(path, sep=";", decimal=",")
    assert sorted(data.value.tolist()) == [3.0, 4.5] and not report.notes
    data, report = read_interactions(path, sep=";")  # detected, with a note
    assert sorted(data.value.tolist()) == [3.0, 4.5] and "decimal commas" in report.notes[0]


def test_mixed_decimal_marks_are_an_error_with_the_option_to_use(tmp_path):
    path = _write(tmp_path, "a.csv", "user;item;rating\n1;1;3.5\n1;2;4,5\n")
    with pytest.raises(DataError, match=r"non-numeric value \('4,5'\).*decimal=','"):
        read_interactions(path, sep=";")
    with cli_hints(), pytest.raises(DataError, match=r"--decimal ,"):
        read_interactions(path, sep=";")


def test_a_line_with_another_separator_is_named(tmp_path):
    path = _write(tmp_path, "a.csv", "user,item,rating\n1,1,4\n1;2;3\n")
    with pytest.raises(DataError, match=r"1 field\(s\) where the first line has 3.*';'-separated") as exc:
        read_interactions(path)  # was: "empty item id"
    assert exc.value.line == 3


@pytest.mark.parametrize(("text", "line", "match"), [
    ("user,item\n1,1\n1,2,3\n", 3, r"3 field\(s\)"),
    ('user,item\n1,"a"\n2,"abc\n3,4\n', 3, "unterminated quote"),
    ('user,item\n1,1\n2,"ab"c\n', 3, "stray quote"),
])
def test_row_shape_errors_have_line_numbers(tmp_path, text, line, match):
    with pytest.raises(DataError, match=match) as exc:
        read_interactions(_write(tmp_path, "a.csv", text))
    assert exc.value.line == line


@pytest.mark.parametrize("name", ["a.csv", "a.parquet"])
def test_an_unreadable_file_is_a_data_error(tmp_path, monkeypatch, name):
    path = tmp_path / name
    pl.DataFrame({"user": [1], "item": [1]}).write_parquet(path) if name.endswith("parquet") else \
        path.write_text("user,item\n1,1\n")

    def denied(self):  # chmod does not stop root, so the refusal is simulated
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(path), "read_bytes", denied)
    with pytest.raises(DataError, match=r"cannot read the file \(Permission denied\)") as exc:
        read_interactions(path)
    assert exc.value.path == str(path)


@pytest.mark.parametrize("role", ["user", "item"])
def test_a_parquet_list_column_is_a_data_error(tmp_path, role):
    path = tmp_path / "a.parquet"
    cols = {"user": [1, 2], "item": [1, 2]}
    cols[role] = [[1, 2], [3]]
    pl.DataFrame(cols).write_parquet(path)
    with pytest.raises(DataError, match=f"the {role} column holds List") as exc:
        read_interactions(path)
    assert exc.value.column == role


def test_json_lines_with_mixed_types_load_as_text(tmp_path):
    path = _write(tmp_path, "a.jsonl", '{"user": 1, "item": "a"}\n{"user": "b", "item": 2}\n')
    data, _ = read_interactions(path)
    assert sorted(data.user_vocab.ids) == ["1", "b"]


def test_hints_follow_the_interface(tmp_path):
    path = _write(tmp_path, "a.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match=r"pass columns=\{'user'"):
        read_interactions(path)
    with cli_hints(), pytest.raises(DataError, match="pass --columns user=COLUMN,item=COLUMN"):
        read_interactions(path)


def test_load_dataset_takes_the_new_reader_options(tmp_path):
    path = _write(tmp_path, "a.csv", "u;i;r;t\n1;1;4,5;1600000000000\n")
    ds = load_dataset(path, sep=";", decimal=",", time_unit="ms", columns={"user": "u", "item": "i", "value": "r",
                                                                          "time": "t"})
    assert ds.interactions.value.tolist() == [4.5] and ds.interactions.time.tolist() == [1_600_000_000]


def test_a_split_without_test_users_is_a_data_error():
    log = Interactions.from_arrays(np.array([1, 2, 3]), np.array([1, 1, 2]), time=np.array([1, 2, 3]))
    with pytest.raises(DataError, match="no user has >= 3 interactions"):
        leave_last_out(log)
