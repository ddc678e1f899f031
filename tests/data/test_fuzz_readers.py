"""Hypothesis fuzzing of the interaction readers: whatever the bytes, a reader either loads exactly what a reference
parser (the csv / json modules, polars for Parquet) reads, or raises a DataError that locates the problem (a line or
a column, or a whole-file defect such as an empty file). Nothing else escapes: no polars, unicode or numpy errors."""

from __future__ import annotations

import csv
import io
import json

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recforge.data.io import MISSING_IDS, id_series, read_interactions
from recforge.data.vocab import is_canonical_int
from recforge.errors import DataError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# defects that concern the whole file rather than a line or a column
FILE_LEVEL = ("file is empty", "header but no data rows", "not a valid gzip", "cannot read Parquet",
              "cannot parse as", "cannot read JSON lines")

# ids: numbers with and without leading zeros or signs, other digits, separators, quotes, missing markers, accents
_id = st.one_of(
    st.integers(0, 10**6).map(str),
    st.sampled_from(["007", "07", "7", "+7", "-7", "\u0667", "\u00b2", "1e3", "7.0", "NULL", "nan", "None", "", "é",
                     'a"b', "a,b", "a;b", "a\tb", "x y", "99999999999999999999"]),
    st.text(alphabet="ab,;|\t\"'0123456789éß", min_size=1, max_size=5),
)
_rows = st.lists(st.tuples(_id, _id, st.integers(0, 2_000_000_000), st.sampled_from([0.5, 1.0, 3.5, 5.0])),
                 min_size=1, max_size=20)


def _located(exc: DataError) -> bool:
    return exc.line is not None or exc.column is not None or any(s in str(exc) for s in FILE_LEVEL)


def _missing(value: str) -> bool:
    return value.strip().lower() in MISSING_IDS


def _loaded(data) -> list[tuple[str, str, int, float]]:
    return sorted((str(u), str(i), t, v) for u, i, t, v in zip(data.user_vocab.decode(data.user),
                                                                 data.item_vocab.decode(data.item),
                                                                 data.time.tolist(), data.value.tolist()))


@FUZZ
@given(rows=_rows, sep=st.sampled_from([",", "\t", ";", "|"]), crlf=st.booleans(), bom=st.booleans())
def test_delimited_files_load_what_the_csv_module_reads(tmp_path, rows, sep, crlf, bom):
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["user", "item", "timestamp", "rating"])
    writer.writerows(rows)
    path = tmp_path / "log.txt"
    path.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")
    reference = list(csv.reader(io.StringIO(buf.getvalue()), delimiter=sep))[1:]
    try:
        data, report = read_interactions(path, sep=sep, time_unit="s")
    except DataError as exc:
        assert _located(exc), exc
        # the reader refuses only what is really wrong: a missing id
        assert any(_missing(r[0]) or _missing(r[1]) for r in reference), exc
        return
    assert report.removed == {}
    assert _loaded(data) == sorted((u.strip(), i.strip(), int(t), float(v)) for u, i, t, v in reference)


@FUZZ
@given(rows=_rows)
def test_json_lines_load_what_the_json_module_reads(tmp_path, rows):
    lines = [json.dumps({"user": u, "item": i, "timestamp": t, "rating": v}) for u, i, t, v in rows]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        data, _ = read_interactions(path, time_unit="s")
    except DataError as exc:
        assert _located(exc) and any(_missing(u) or _missing(i) for u, i, _, _ in rows), exc
        return
    ref = [json.loads(line) for line in lines]
    # ids are exact apart from surrounding blanks, which the reader removes
    assert _loaded(data) == sorted((r["user"].strip(), r["item"].strip(), r["timestamp"], r["rating"]) for r in ref)


@FUZZ
@given(users=st.lists(st.one_of(st.integers(-5, 10**6), st.none()), min_size=1, max_size=15),
       kind=st.sampled_from(["int", "float", "str", "list"]))
def test_parquet_columns_of_any_type(tmp_path, users, kind):
    n = len(users)
    if kind == "int":
        col = pl.Series("user", users, dtype=pl.Int64)
    elif kind == "float":
        col = pl.Series("user", [None if u is None else float(u) for u in users], dtype=pl.Float64)
    elif kind == "str":
        col = pl.Series("user", [None if u is None else f"{u:03d}" for u in users], dtype=pl.Utf8)
    else:
        col = pl.Series("user", [None if u is None else [u] for u in users])
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": col, "item": [f"i{k}" for k in range(n)]}).write_parquet(path)
    try:
        data, _ = read_interactions(path)
    except DataError as exc:
        assert exc.column == "user", exc
        assert kind == "list" or None in users
        return
    assert kind != "list" and None not in users
    reference = pl.read_parquet(path)["user"].to_list()
    got = sorted(str(u) for u in data.user_vocab.decode(data.user))
    want = sorted(str(u) if not isinstance(u, float) else repr(u) for u in reference)
    assert got == want


_chunks = st.sampled_from(["user,item\n", "user;item;rating\n", "1,2\n", "1,2,3\n", "1;2\n", '"a,b",c\n', '"open,1\n',
                           "\n", "\r\n", "NULL,1\n", "nan,2\n", "007,7\n", "1,\n", ",\n", '"",""\n', "\ufeff", "é,ß\n",
                           "\x00,1\n", "1,2,3,4\n", "a\tb\n", "4,5\n", "1e400,1\n"])


@FUZZ
@given(parts=st.lists(_chunks, min_size=1, max_size=12), suffix=st.sampled_from([".csv", ".tsv", ".txt", ".jsonl"]),
       raw=st.binary(max_size=40), use_raw=st.booleans())
def test_arbitrary_text_raises_only_located_data_errors(tmp_path, parts, suffix, raw, use_raw):
    path = tmp_path / f"log{suffix}"
    if use_raw:
        path.write_bytes(raw)
    else:
        path.write_text("".join(parts), encoding="utf-8")
    try:
        data, report = read_interactions(path)
    except DataError as exc:
        assert _located(exc), exc
        return
    assert len(data) == report.rows_kept > 0


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(st.text(alphabet="0123456789+-\u0667\u00b2 ", max_size=21),
                                 st.integers(0, 10**20).map(str)), min_size=1, max_size=6))
def test_integer_ids_follow_the_vocab_rule(values):
    """A column becomes integer ids exactly when every value is canonical by the one rule of data/vocab.py."""
    s = id_series(pl.Series(values, dtype=pl.Utf8))
    assert s.dtype.is_integer() == all(is_canonical_int(v) for v in values)
    if s.dtype.is_integer():
        assert [str(x) for x in s.to_list()] == values
