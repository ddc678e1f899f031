"""Readers: every format reads correctly and every bad input is a DataError naming file, line, column and problem."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recforge.data.io import guess_separator, read_interactions, read_sequences, read_table
from recforge.errors import ConfigError, DataError

ROLES_4 = {"user": 0, "item": 1, "value": 2, "time": 3}


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if name.endswith(".gz"):
        p.write_bytes(gzip.compress(content.encode() if isinstance(content, str) else content))
    elif isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


# (file name, content, kwargs) -> the same 3-row log: users a,a,b; items x,y,x; times 10,20,5; values 4,5,3
GOOD = [
    ("log.csv", "user_id,item_id,rating,timestamp\na,x,4,10\na,y,5,20\nb,x,3,5\n", {}),
    ("log.tsv", "user\titem\tvalue\ttime\na\tx\t4\t10\na\ty\t5\t20\nb\tx\t3\t5\n", {}),
    ("log.dat", "a::x::4::10\na::y::5::20\nb::x::3::5\n", {"header": False, "columns": ROLES_4}),
    ("log.dat.gz", "a::x::4::10\na::y::5::20\nb::x::3::5\n", {"header": False, "columns": ROLES_4}),
    ("log.txt", "a;x;4;10\na;y;5;20\nb;x;3;5\n", {"header": False, "sep": ";", "columns": ROLES_4}),
    ("log.txt", "a x 4 10\na y 5 20\nb x 3 5\n", {"header": False, "sep": " ", "columns": ROLES_4}),
    ("log.csv", "U,I,R,T\na,x,4,10\na,y,5,20\nb,x,3,5\n",
     {"columns": {"user": "U", "item": "I", "value": "R", "time": "T"}}),
    ("log.csv", "a,x,4,10\na,y,5,20\nb,x,3,5\n", {"header": False, "names": ["u", "i", "r", "t"],
                                                   "columns": {"user": "u", "item": "i", "value": "r", "time": "t"}}),
    ("log.jsonl", "".join(json.dumps(r) + "\n" for r in [{"user": "a", "item": "x", "rating": 4, "timestamp": 10},
                                                          {"user": "a", "item": "y", "rating": 5, "timestamp": 20},
                                                          {"user": "b", "item": "x", "rating": 3, "timestamp": 5}]), {}),
    ("latin.csv", "user,item,rating,timestamp\na,x,4,10\na,y,5,20\nb,x,3,5\n".encode("latin-1"), {"encoding": "latin-1"}),
    ("crlf.csv", "user,item,rating,timestamp\r\na,x,4,10\r\na,y,5,20\r\nb,x,3,5\r\n", {}),
    ("bom.csv", "\ufeffuser,item,rating,timestamp\na,x,4,10\na,y,5,20\nb,x,3,5\n", {}),
]


@pytest.mark.parametrize(("name", "content", "kwargs"), GOOD, ids=[f"{g[0]}-{i}" for i, g in enumerate(GOOD)])
def test_reads_every_format(tmp_path, name, content, kwargs):
    data, report = read_interactions(_write(tmp_path, name, content), **kwargs)
    assert (len(data), data.n_users, data.n_items) == (3, 2, 2)
    assert data.user_vocab.ids == ["a", "b"] and data.item_vocab.ids == ["x", "y"]
    rows = sorted(zip(data.user_vocab.decode(data.user), data.item_vocab.decode(data.item), data.time.tolist(),
                      data.value.tolist()))
    assert rows == [("a", "x", 10, 4.0), ("a", "y", 20, 5.0), ("b", "x", 5, 3.0)]
    assert report.rows_read == report.rows_kept == 3 and report.removed == {}


def test_parquet_with_datetime_time(tmp_path):
    p = tmp_path / "log.parquet"
    pl.DataFrame({"user": [1, 1, 2], "item": [10, 11, 10],
                  "ts": pl.Series(["1970-01-01 00:00:10", "1970-01-01 00:00:20", "1970-01-01 00:00:05"]).str.to_datetime()
                  }).write_parquet(p)
    data, _ = read_interactions(p, {"user": "user", "item": "item", "time": "ts"})
    assert data.time.tolist() == [10, 20, 5] and data.user_vocab.ids == [1, 2]


def test_iso_datetime_strings_and_int_ids_sorted_numerically(tmp_path):
    p = _write(tmp_path, "log.csv", "user,item,time\n10,2,2020-01-01T00:00:10\n9,2,2020-01-01T00:00:00\n")
    data, _ = read_interactions(p)
    assert data.user_vocab.ids == [9, 10]  # numeric, not lexicographic
    assert sorted(data.time.tolist()) == [1577836800, 1577836810]


def test_multichar_separator_keeps_quotes_literal(tmp_path):
    p = _write(tmp_path, "m.dat", '1::"Weird" title::5\n2::x::4\n')
    df, first = read_table(p, sep="::", header=False, quote=False, min_columns=3)
    assert df.shape == (2, 3) and df[0, 1] == '"Weird" title' and first == 1


# (file name, content, kwargs, message regex, line, column)
BAD = [
    ("empty.csv", "", {}, "file is empty", None, None),
    ("blank.csv", "\n\n  \n", {}, "file is empty", None, None),
    ("header.csv", "user,item,timestamp\n", {}, "header but no data rows", None, None),
    ("nocol.csv", "user,item,timestamp\n1,2,3\n", {"columns": {"user": "user", "item": "movie"}},
     r"missing column \(the file has \['user', 'item', 'timestamp'\]\)", None, "movie"),
    ("noalias.csv", "a,b\n1,2\n", {}, "cannot find the user and item column", 1, None),
    ("tabs.csv", "user\titem\tts\n1\t2\t3\n", {"sep": ","},
     r"splitting on ',' gives 1 field\(s\), 2\+ expected; the line appears to be separated by '\\t'", 1, None),
    ("r.dat", "1::2::3::4\n", {"sep": "\t", "header": False, "columns": ROLES_4},
     r"splitting on '\\t' gives 1 field\(s\), 4\+ expected; the line appears to be separated by '::'", 1, None),
    ("hdr.csv", "user;item\n1;2\n", {"sep": ",", "columns": {"user": "user", "item": "item"}},
     "wrong separator", 1, None),
    ("pos.csv", "1,2\n", {"header": False, "columns": {"user": 0, "item": 5}}, r"4\+|6\+ expected", 1, None),
    ("emptyid.csv", "user,item,timestamp\n1,2,100\n,3,200\n", {}, "missing user id", 3, "user"),
    ("spaceid.csv", "user,item,timestamp\n1,2,100\n1, ,200\n", {}, "missing item id", 3, "item"),
    ("badtime.csv", "user,item,timestamp\n1,2,100\n1,3,abc\n", {}, r"non-numeric timestamp \('abc'\)", 3, "timestamp"),
    ("nulltime.csv", "user,item,timestamp\n1,2,100\n1,3,\n", {}, "empty timestamp", 3, "timestamp"),
    ("negtime.csv", "user,item,timestamp\n1,2,100\n1,3,-5\n", {}, "negative timestamp", 3, "timestamp"),
    ("baddate.csv", "user,item,time\n1,2,2020-01-01\n1,3,yesterday\n", {}, "non-numeric timestamp", 3, "time"),
    ("badval.csv", "user,item,rating\n1,2,4\n\n1,3,x\n", {}, r"non-numeric value \('x'\)", 4, "rating"),
    ("latin.csv", b"user,item,title\n1,2,ok\n1,3,caf\xe9\n", {}, r"byte 0xe9 at character 8 cannot be decoded as utf-8", 3,
     None),
    ("gz.csv.gz", b"not gzip", {}, "not a valid gzip file", None, None),
    ("bad.jsonl", '{"user": 1, "item": 2}\n{"user": 1, "item": 3\n', {}, "invalid JSON", 2, None),
    ("arr.jsonl", '{"user": 1, "item": 2}\n[1, 2]\n', {}, "expected a JSON object per line", 2, None),
    ("ragged.csv", "user,item\n1,2\n1,2,3,4\n", {}, r"4 field\(s\) where the first line has 2", 3, None),
    ("gap.jsonl", '{"user": 1, "item": 2, "timestamp": 5}\n\n{"user": 1, "item": 3, "timestamp": -1}\n', {},
     "negative timestamp", 3, "timestamp"),
    ("lead.csv", "\n\nuser,item,timestamp\n1,2,5\n\n1,3,-1\n", {}, "negative timestamp", 6, "timestamp"),
    ("leadnh.csv", "\n \n1,2,5\n\n1,3,-1\n", {"header": False, "columns": {"user": 0, "item": 1, "time": 2}},
     "negative timestamp", 5, "column_2"),
]


@pytest.mark.parametrize(("name", "content", "kwargs", "match", "line", "column"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_located_data_error(tmp_path, name, content, kwargs, match, line, column):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError, match=match) as exc:
        read_interactions(path, **kwargs)
    err = exc.value
    assert err.path == str(path) and str(path) in str(err)
    assert err.line == line
    if column is not None:
        assert err.column == column


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="expected a file"):
        read_interactions(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_invalid": "skip"}, "on_invalid must be"),
        ({"columns": {"user": "user"}}, "columns must map 'item'"),
        ({"columns": {"user": "user", "item": "item", "rating": "r"}}, "unknown column role"),
        ({"format": "xml"}, "format must be one of"),
        ({"encoding": "no-such-codec"}, "unknown encoding"),
    ],
)
def test_bad_options_are_config_errors(tmp_path, kwargs, match):
    p = _write(tmp_path, "ok.csv", "user,item\n1,2\n")
    with pytest.raises(ConfigError, match=match):
        read_interactions(p, **kwargs)


def test_drop_counts_every_rule(tmp_path):
    content = "user,item,rating,timestamp\n1,2,4,10\n\n,3,4,11\n1,4,x,12\n1,5,4,abc\n1,6,4,-1\n2,2,5,13\n"
    data, report = read_interactions(_write(tmp_path, "mixed.csv", content), on_invalid="drop")
    assert report.removed == {"blank_line": 1, "empty_id": 1, "bad_value": 1, "bad_time": 1, "negative_time": 1}
    assert report.rows_read == 7 and report.rows_kept == 2 == len(data)
    assert data.meta["load"]["removed"] == report.removed


def test_drop_everything_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no valid rows left"):
        read_interactions(_write(tmp_path, "x.csv", "user,item,timestamp\n1,2,a\n"), on_invalid="drop")


def test_guess_separator():
    assert guess_separator("1::2::3") == "::"
    assert guess_separator("a\tb\tc") == "\t"
    assert guess_separator("a,b;c,d") == ","
    assert guess_separator("abc") is None


# --------------------------------------------------------------------------------------------- sequence files
def test_s3rec_sequences(tmp_path):
    data, report = read_sequences(_write(tmp_path, "s.txt", "1 5 6 7\n\n2 6 5\n"))
    assert report.rows_kept == 5 and report.removed == {"blank_line": 1}
    items, off = data.sequences()
    assert data.item_vocab.decode(items[off[1] : off[2]]) == [5, 6, 7]
    assert data.time.tolist() == [0, 1, 2, 0, 1]
    assert data.meta["time_kind"] == "order"


def test_sasrec_lines_time_is_per_user_position(tmp_path):
    data, _ = read_sequences(_write(tmp_path, "v.txt", "1 5\n1 6\n2 5\n1 7\n"), one_per_line=True)
    items, off = data.sequences()
    assert data.item_vocab.decode(items[off[1] : off[2]]) == [5, 6, 7]
    np.testing.assert_array_equal(data.time, [0, 1, 2, 0])


@pytest.mark.parametrize(
    ("content", "kwargs", "match", "line"),
    [
        ("1 2 3\n4\n", {}, r"expected 'user item1 item2 ...', got 1 field", 2),
        ("1,2,3\n", {}, r"looks ','-separated", 1),
        ("1 2\n1 2 3\n", {"one_per_line": True}, r"expected 'user item' \(2 whitespace-separated fields\), got 3", 2),
        ("", {}, "file is empty", None),
    ],
)
def test_bad_sequence_files(tmp_path, content, kwargs, match, line):
    p = _write(tmp_path, "s.txt", content)
    with pytest.raises(DataError, match=match) as exc:
        read_sequences(p, **kwargs)
    assert exc.value.line == line


# ------------------------------------------------------------------------------------------- round-trip property
_ids = st.text(alphabet="abcxyz ,\"'é:;|0123456789", min_size=1, max_size=6).filter(lambda s: s.strip() == s and s)
_rows = st.lists(st.tuples(_ids, _ids, st.integers(0, 2**37), st.sampled_from([0.5, 1.0, 3.0, 5.0])),
                 min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows, fmt=st.sampled_from(["csv", "tsv", "parquet", "jsonl", "csv.gz"]))
def test_write_then_read_round_trip(tmp_path, rows, fmt):
    """Whatever polars writes (quoted commas, accents, numeric-looking ids), the reader gives back the same log."""
    df = pl.DataFrame({"user": [r[0] for r in rows], "item": [r[1] for r in rows],
                       "timestamp": [r[2] for r in rows], "rating": [r[3] for r in rows]})
    path = tmp_path / f"log-{len(rows)}.{fmt}"
    if fmt == "parquet":
        df.write_parquet(path)
    elif fmt == "jsonl":
        df.write_ndjson(path)
    elif fmt == "csv.gz":
        path.write_bytes(gzip.compress(df.write_csv().encode()))
    else:
        df.write_csv(path, separator="\t" if fmt == "tsv" else ",")
    data, report = read_interactions(path, {"user": "user", "item": "item", "time": "timestamp", "value": "rating"},
                                     time_unit="s")
    assert report.rows_kept == len(rows) and report.removed == {}

    got = sorted((str(u), str(i), t, v) for u, i, t, v in zip(data.user_vocab.decode(data.user),
                                                                 data.item_vocab.decode(data.item),
                                                                 data.time.tolist(), data.value.tolist()))
    # ids come back exactly ("007" stays "007"; canonical integers come back as ints, whose text is the same)
    want = sorted((r[0], r[1], r[2], r[3]) for r in rows)
    assert got == want
