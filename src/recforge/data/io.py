"""Readers: interaction files (CSV / TSV / '::'-separated / Parquet / JSONL, optionally .gz) -> :class:`Interactions`.

Every reader validates at the boundary and raises :class:`DataError` naming the file, the line (1-based, counting the
header) and the column: missing column, empty ids, non-numeric or negative timestamps, non-numeric values, empty files,
a separator that does not split the lines, undecodable bytes. Nothing is dropped silently: with ``on_invalid="drop"``
offending rows are removed and counted per rule in the :class:`LoadReport` (blank lines are always dropped and counted).

Dense ids are assigned in sorted order of the external ids (numeric order for integer ids), so loading is deterministic
and datasets whose ids are already 1..N keep them.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recforge.data.interactions import Interactions
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ROLES = ("user", "item", "time", "value", "event")
FORMATS = ("csv", "parquet", "jsonl")
# Separators tried when guessing which one a file uses (order matters: '::' before ':'-free single chars).
CANDIDATE_SEPARATORS = ("::", "\t", ",", ";", "|", " ")
_UNIT_SEP = "\x1f"  # stands in for multi-character separators, which polars cannot split on

# Header names recognised when no column mapping is given (lower-cased).
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "uid", "user_idx", "visitorid", "customer_id"),
    "item": ("item", "item_id", "itemid", "iid", "movieid", "movie_id", "artistid", "product_id", "asin", "business_id"),
    "time": ("time", "timestamp", "ts", "datetime", "date", "unix_timestamp", "time_ms"),
    "value": ("value", "rating", "weight", "score", "count", "plays"),
    "event": ("event", "event_type", "action", "behavior", "type"),
}


@dataclass
class LoadReport:
    """What a reader read and what it removed, per rule (nothing is dropped without being counted here)."""

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, rule: str, n: int) -> None:
        """Count ``n`` rows removed by ``rule`` (zero counts are kept out of the report)."""
        if n:
            self.removed[rule] = self.removed.get(rule, 0) + int(n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "removed": dict(self.removed),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------------------- raw text
def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Whole file decoded with ``encoding`` (transparently gunzipped for ``.gz``).

    Raises DataError naming the line and byte of the first undecodable byte, and for empty files.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if path.is_dir():
        raise DataError("expected a file, got a directory", path=str(path))
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"not a valid gzip file ({exc})", path=str(path)) from exc
    try:
        text = raw.decode(encoding)
    except LookupError as exc:
        raise ConfigError(f"unknown encoding {encoding!r}") from exc
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise DataError(
            f"byte 0x{bad} at character {col} cannot be decoded as {encoding}"
            " (if the file is Latin-1, pass encoding='latin-1')",
            path=str(path),
            line=line,
        ) from None
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark is not part of the first header name
        text = text[1:]
    if not text.strip():
        raise DataError("file is empty", path=str(path))
    return text


def _first_line(text: str) -> tuple[int, str]:
    """(1-based number, content) of the first non-blank line."""
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            return i, line
    return 1, ""


def guess_separator(line: str) -> str | None:
    """The candidate separator that splits ``line`` into the most fields (None if none splits it)."""
    best, best_n = None, 1
    for sep in CANDIDATE_SEPARATORS:
        n = len(line.split(sep)) if sep != " " else len(line.split())
        if n > best_n:
            best, best_n = sep, n
    return best


def _sep_for(path: Path, fmt: str) -> str | None:
    """Default separator implied by a file name (None: sniff it)."""
    suffixes = [s for s in path.suffixes if s != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    return {".csv": ",", ".tsv": "\t", ".tab": "\t", ".dat": "::"}.get(ext) if fmt == "csv" else None


def detect_format(path: str | Path) -> str:
    """'parquet', 'jsonl' or 'csv' (every delimited text format) from the file name."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".parquet", ".pq"):
        return "parquet"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def read_table(
    path: str | Path,
    *,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    format: str | None = None,
    min_columns: int = 1,
    quote: bool = True,
) -> tuple[pl.DataFrame, int]:
    """Read a table with every column as text (so that the caller can validate values and name their lines).

    Returns (frame, first_line): row ``i`` of the frame is line ``first_line + i`` of a text file (blank lines are
    kept as all-null rows so that numbering stays exact); for Parquet, ``first_line`` is 0 and rows are not lines.
    ``names`` renames the columns; without a header they are otherwise ``column_0``, ``column_1``, ... (0-based).
    ``min_columns``: a text file whose first line splits into fewer fields gets a wrong-separator DataError.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "parquet":
        if not path.exists():
            raise DataError("file not found", path=str(path))
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises several error types for corrupt files
            raise DataError(f"cannot read Parquet ({exc})", path=str(path)) from exc
        if df.height == 0:
            raise DataError("file is empty (0 rows)", path=str(path))
        return (df.rename(dict(zip(df.columns, names))) if names else df), 0
    text = read_text(path, encoding)
    if fmt == "jsonl":
        return _read_jsonl(path, text), 1
    sep = sep or _sep_for(path, fmt)
    first_no, first = _first_line(text)
    if sep is None:
        sep = guess_separator(first) or ","
        log.debug("%s: guessed separator %r", path, sep)
    fields = first.split(sep) if sep != " " else first.split()
    if len(fields) < min_columns:
        seen = guess_separator(first)
        hint = f"; the line appears to be separated by {seen!r}" if seen and seen != sep else ""
        raise DataError(
            f"wrong separator? splitting on {sep!r} gives {len(fields)} field(s), {min_columns}+ expected{hint}",
            path=str(path),
            line=first_no,
        )
    # leading blank lines would make polars guess a 1-column schema without a header: drop them, keep the numbering
    text = text[re.match(r"(?:[ \t\r\f\v]*\n)*", text).end() :]
    if len(sep) > 1:
        if _UNIT_SEP in text:
            raise DataError(f"cannot split on {sep!r}: the file contains the control character 0x1f", path=str(path))
        text = text.replace(sep, _UNIT_SEP)
        sep = _UNIT_SEP
    try:
        df = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            separator=sep,
            has_header=header,
            infer_schema=False,
            quote_char='"' if quote else None,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot parse as {sep!r}-separated text ({str(exc).splitlines()[0]})", path=str(path)) from exc
    if header and df.height == 0:
        raise DataError("file has a header but no data rows", path=str(path))
    if not header and not names:  # name headerless columns by their 0-based position, as ``columns`` does
        df.columns = [f"column_{i}" for i in range(df.width)]
    if names:
        if len(names) > df.width:
            raise DataError(
                f"{len(names)} column names given but the file has {df.width} column(s) when split on {sep!r}",
                path=str(path),
            )
        df = df.rename(dict(zip(df.columns, names)))
    return df, first_no + (1 if header else 0)


def _read_jsonl(path: Path, text: str) -> pl.DataFrame:
    """JSON lines -> frame; a malformed line is named (found by parsing line by line only after polars fails)."""
    import json

    # blank lines become empty objects, i.e. all-null rows, so that row i is line i+1 (and blank lines get counted)
    padded = "\n".join(line if line.strip() else "{}" for line in text.splitlines())
    try:
        return pl.read_ndjson(io.BytesIO(padded.encode("utf-8")), infer_schema_length=None)
    except Exception as exc:  # polars: ComputeError / SchemaError depending on the defect
        for no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as jexc:
                raise DataError(f"invalid JSON ({jexc.msg} at character {jexc.colno})", path=str(path), line=no) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object per line, got {type(obj).__name__}", path=str(path), line=no) from None
        raise DataError(f"cannot read JSON lines ({str(exc).splitlines()[0]})", path=str(path)) from exc


# -------------------------------------------------------------------------------------------------- interactions
def resolve_columns(
    available: Sequence[str], columns: Mapping[str, str | int] | None, path: str, first_line: int
) -> dict[str, str]:
    """Map roles (user/item/time/value/event) to frame column names.

    ``columns`` maps roles to names or 0-based positions; without it, header names are matched against ``ALIASES``.
    Raises DataError naming the missing column and listing the columns the file has.
    """
    if columns is None:
        lower = {c.lower().strip(): c for c in available}
        found = {role: next((lower[a] for a in ALIASES[role] if a in lower), None) for role in ROLES}
        missing = [r for r in ("user", "item") if found[r] is None]
        if missing:
            raise DataError(
                f"cannot find the {' and '.join(missing)} column(s) among {list(available)};"
                " pass columns={'user': ..., 'item': ...}",
                path=path,
                line=first_line - 1 if first_line > 1 else None,
            )
        return {r: c for r, c in found.items() if c is not None}
    _check_roles(columns)
    out: dict[str, str] = {}
    for role, col in columns.items():
        if col is None:
            continue
        if isinstance(col, int):
            if not 0 <= col < len(available):
                raise DataError(
                    f"{role} is column {col} (0-based) but the file has {len(available)} column(s)", path=path, column=role
                )
            out[role] = available[col]
        elif col not in available:
            hint = ""
            joined = " ".join(available)
            for sep in CANDIDATE_SEPARATORS[:-1]:
                if len(available) == 1 and sep in joined:
                    hint = f"; the header looks {sep!r}-separated, pass sep={sep!r}"
                    break
            raise DataError(f"missing column (the file has {list(available)}){hint}", path=path, column=col)
        else:
            out[role] = col
    return out


def _check_roles(columns: Mapping[str, str | int]) -> None:
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown column role(s) {unknown}; roles are {list(ROLES)}")
    for role in ("user", "item"):
        if columns.get(role) is None:
            raise ConfigError(f"columns must map {role!r} (got {dict(columns)})")


def read_interactions(
    path: str | Path,
    columns: Mapping[str, str | int] | None = None,
    *,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    format: str | None = None,
    time_format: str | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    meta: Mapping[str, Any] | None = None,
) -> tuple[Interactions, LoadReport]:
    """Read an interaction file into :class:`Interactions` plus a :class:`LoadReport`.

    ``columns`` maps roles to column names or 0-based positions, e.g. ``{"user": "userId", "item": "movieId",
    "time": "timestamp", "value": "rating"}``; without it, common header names are recognised. Timestamps may be
    integer/float seconds or date-time strings (``time_format`` as in ``strptime``; ISO-8601 by default), stored as
    int64 seconds. ``on_invalid="drop"`` removes rows with empty ids / bad timestamps / bad values and counts them
    per rule instead of raising.
    """
    if on_invalid not in ("raise", "drop"):
        raise ConfigError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    if columns is not None:
        _check_roles(columns)
    p = str(path)
    mapped = [c for c in (columns or {}).values() if c is not None]
    positions = [c + 1 for c in mapped if isinstance(c, int)]
    min_columns = max([len(set(mapped)) if columns else 2, *positions, len(names or ())])
    df, first_line = read_table(
        path, sep=sep, header=header, names=names, encoding=encoding, format=format, min_columns=min_columns
    )
    cols = resolve_columns(df.columns, columns, p, first_line)
    return frame_to_interactions(
        df, cols, path=p, first_line=first_line, time_format=time_format, on_invalid=on_invalid, meta=meta
    )


def frame_to_interactions(
    df: pl.DataFrame,
    cols: Mapping[str, str],
    *,
    path: str = "<frame>",
    first_line: int = 0,
    time_format: str | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    meta: Mapping[str, Any] | None = None,
) -> tuple[Interactions, LoadReport]:
    """Validate the role columns of ``df`` (any dtypes) and build Interactions; see :func:`read_interactions`."""
    report = LoadReport(path=path, rows_read=df.height)
    keep = np.ones(df.height, bool)
    # blank lines come through as all-null rows
    blank = df.select(pl.all_horizontal(pl.col(c).is_null() for c in cols.values())).to_series().to_numpy()
    if blank.any():
        report.add("blank_line", int(blank.sum()))
        keep &= ~blank

    def where(row: int) -> dict[str, Any]:
        return {"line": first_line + row} if first_line else {"line": None}

    def check(bad: np.ndarray, rule: str, role: str, what: str) -> None:
        bad = bad & keep
        if not bad.any():
            return
        if on_invalid == "drop":
            report.add(rule, int(bad.sum()))
            keep[bad] = False
            return
        row = int(np.flatnonzero(bad)[0])
        shown = df[cols[role]][row]
        msg = f"{what} ({shown!r}); {int(bad.sum())} row(s) affected, pass on_invalid='drop' to drop and count them"
        if not first_line:
            msg = f"row {row}: {msg}"
        raise DataError(msg, path=path, column=cols[role], **where(row))

    ids: dict[str, pl.Series] = {}
    for role in ("user", "item"):
        s = df[cols[role]]
        s = s.cast(pl.Utf8).str.strip_chars() if s.dtype != pl.Utf8 else s.str.strip_chars()
        empty = (s.is_null() | (s == "")).to_numpy()
        check(empty, "empty_id", role, f"empty {role} id")
        ids[role] = s

    time = np.zeros(df.height, np.int64)
    if "time" in cols:
        t, bad_t = _parse_time(df[cols["time"]], time_format)
        check(bad_t & ~(df[cols["time"]].is_null().to_numpy()), "bad_time", "time", "non-numeric timestamp")
        check(df[cols["time"]].is_null().to_numpy(), "bad_time", "time", "empty timestamp")
        check(~bad_t & (t < 0), "negative_time", "time", "negative timestamp")
        time = np.where(bad_t, 0, t).astype(np.int64)

    value = np.ones(df.height, np.float32)
    if "value" in cols:
        s = df[cols["value"]]
        v = (s.str.strip_chars() if s.dtype == pl.Utf8 else s).cast(pl.Float64, strict=False)
        bad_v = v.is_null().to_numpy() | ~np.isfinite(v.fill_null(0.0).to_numpy())
        check(bad_v, "bad_value", "value", "non-numeric value")
        value = v.fill_null(0.0).to_numpy().astype(np.float32)

    event = df[cols["event"]].cast(pl.Utf8).to_numpy() if "event" in cols else None
    report.rows_kept = int(keep.sum())
    if report.rows_kept == 0:
        raise DataError(f"no valid rows left (removed: {report.removed})", path=path)
    mask = pl.Series(keep)
    data = build_interactions(
        ids["user"].filter(mask),
        ids["item"].filter(mask),
        time=time[keep],
        value=value[keep],
        event=None if event is None else event[keep],
        meta={**(meta or {}), "load": report.to_dict()},
    )
    if report.removed:
        log.info("%s: removed %s", path, report.removed)
    return data, report


def _parse_time(s: pl.Series, time_format: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(int64 seconds, bad mask). Numbers are taken as seconds; text that is not a number is parsed as a date-time."""
    if s.dtype.is_temporal():
        secs = s.cast(pl.Datetime("us")).dt.epoch("s")
        return secs.fill_null(0).to_numpy().astype(np.int64), secs.is_null().to_numpy()
    if s.dtype.is_numeric():
        f = s.cast(pl.Float64)
    else:
        text = s.cast(pl.Utf8).str.strip_chars()
        f = text.cast(pl.Float64, strict=False)
        numeric = int(f.is_not_null().sum())
        if numeric == 0 and text.is_not_null().any():
            # not a single number: a date-time column
            try:
                dt = text.str.to_datetime(format=time_format, strict=False, time_unit="us")
            except pl.exceptions.PolarsError:  # no format fits any value: every row is bad
                dt = pl.Series([None] * len(text), dtype=pl.Datetime("us"))
            if dt.dtype == pl.Datetime("us", "UTC") or getattr(dt.dtype, "time_zone", None):
                dt = dt.dt.replace_time_zone(None)
            f = dt.dt.epoch("s").cast(pl.Float64)
    bad = f.is_null().to_numpy() | ~np.isfinite(f.fill_null(0.0).to_numpy())
    vals = np.floor(np.nan_to_num(f.fill_null(0.0).to_numpy(), nan=0.0, posinf=0.0, neginf=0.0)).astype(np.int64)
    return vals, bad


def id_series(values: np.ndarray | pl.Series | Sequence[Any]) -> pl.Series:
    """Ids as a polars Series: integer dtype when every id is an integer (so '10' sorts after '9'), else text."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.tolist()  # polars cannot cast numpy object columns
    s = values if isinstance(values, pl.Series) else pl.Series(values=values, strict=False)
    if s.dtype.is_integer():
        return s.cast(pl.Int64)
    text = s.cast(pl.Utf8)
    as_int = text.str.strip_chars().cast(pl.Int64, strict=False)
    return as_int if as_int.null_count() == text.null_count() else text


def _as_ids(values: np.ndarray | Sequence[Any]) -> np.ndarray:
    """Numpy form of :func:`id_series` (int64 or object array of str)."""
    return id_series(values).to_numpy()


def build_interactions(
    user: np.ndarray | pl.Series | Sequence[Any],
    item: np.ndarray | pl.Series | Sequence[Any],
    *,
    time: np.ndarray | None = None,
    value: np.ndarray | None = None,
    event: np.ndarray | None = None,
    user_vocab: Vocab | None = None,
    item_vocab: Vocab | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Interactions:
    """External ids (N,) -> Interactions with sorted vocabularies (vectorized in polars; no per-row Python work).

    Given vocabularies are used as they are (unknown ids raise); otherwise ids become sorted vocabularies, so the
    dense id of an external id is its dense rank (ids 1..N stay 1..N).
    """
    enc: dict[str, tuple[np.ndarray, Vocab]] = {}
    for role, ext, vocab in (("user", user, user_vocab), ("item", item, item_vocab)):
        s = id_series(ext)
        if vocab is None:
            codes = s.rank("dense").cast(pl.Int64).to_numpy()
            enc[role] = (codes, Vocab(s.unique().sort().to_list(), name=role))
        else:
            enc[role] = (vocab.encode(s.to_list()), vocab)
    n = len(enc["user"][0])
    return Interactions(
        user=enc["user"][0],
        item=enc["item"][0],
        time=np.zeros(n, np.int64) if time is None else np.asarray(time, dtype=np.int64),
        value=np.ones(n, np.float32) if value is None else np.asarray(value, dtype=np.float32),
        user_vocab=enc["user"][1],
        item_vocab=enc["item"][1],
        event=None if event is None else np.asarray(event),
        meta=dict(meta or {}),
    )


# ------------------------------------------------------------------------------------------------- sequence files
def read_sequences(
    path: str | Path, *, encoding: str = "utf-8", one_per_line: bool = False, meta: Mapping[str, Any] | None = None
) -> tuple[Interactions, LoadReport]:
    """Sequence files without timestamps; time is synthesized as the position in the user's sequence (0, 1, ...).

    ``one_per_line=False`` (S3-Rec format): each line is ``user item1 item2 ...`` in time order.
    ``one_per_line=True`` (SASRec format): each line is ``user item``, a user's lines in time order.
    """
    p = str(path)
    text = read_text(path, encoding)
    report = LoadReport(path=p)
    users: list[str] = []
    items: list[str] = []
    pos: list[int] = []
    counter: dict[str, int] = {}
    blank = 0
    for no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            blank += 1
            continue
        if one_per_line:
            if len(parts) != 2:
                hint = f" (the line looks {guess_separator(line)!r}-separated)" if len(parts) == 1 else ""
                raise DataError(f"expected 'user item' (2 whitespace-separated fields), got {len(parts)}{hint}", path=p, line=no)
            u = parts[0]
            k = counter.get(u, 0)
            counter[u] = k + 1
            users.append(u)
            items.append(parts[1])
            pos.append(k)
        else:
            if len(parts) < 2:
                hint = f"; the line looks {guess_separator(line)!r}-separated" if guess_separator(line) else ""
                raise DataError(f"expected 'user item1 item2 ...', got {len(parts)} field(s){hint}", path=p, line=no)
            n = len(parts) - 1
            users.extend([parts[0]] * n)
            items.extend(parts[1:])
            pos.extend(range(n))
    report.rows_read = len(items) + blank
    report.add("blank_line", blank)
    report.rows_kept = len(items)
    report.notes.append("no timestamps in the file: time = position in the user's sequence")
    data = build_interactions(
        users,
        items,
        time=np.asarray(pos, dtype=np.int64),
        meta={**(meta or {}), "load": report.to_dict(), "time_kind": "order"},
    )
    return data, report
