"""Readers: interaction files (CSV / TSV / '::'-separated / Parquet / JSONL, optionally .gz) -> :class:`Interactions`.

Every reader validates at the boundary and raises :class:`DataError` naming the file, the line (1-based, counting the
header) and the column: missing column, missing ids (empty, ``NULL``, ``nan``, ...), non-numeric, negative or
out-of-range timestamps, non-numeric values, empty or unreadable files, rows with another number of fields than the
header (another separator, an unterminated quote), undecodable bytes, columns holding lists. Nothing is dropped
silently: with ``on_invalid="drop"`` offending rows are removed and counted per rule in the :class:`LoadReport` (blank
lines are always dropped and counted). What a reader decided on its own (the time unit, decimal commas) is written
to ``LoadReport.notes``.

Ids are kept as the exact strings of the file (surrounding blanks removed). A column becomes integer ids only when every value is a canonical
ASCII decimal integer (:func:`recforge.data.vocab.is_canonical_int`: ``7`` but not ``07``, ``+7``, ``-7`` or ``٧``),
so ``007`` and ``7`` are two ids; :class:`~recforge.data.vocab.Vocab` matches ids by the same rule. Dense ids are
assigned in sorted order of the external ids (numeric order for integer ids), so loading is deterministic and datasets
whose ids are already 1..N keep them.

Error hints name the options of the interface that raised them: ``sep=';'`` from Python, ``--sep ';'`` from the
command line (the CLI runs its commands inside :func:`cli_hints`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
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

TIME_UNITS = ("s", "ms", "us", "ns", "auto")
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59: later "timestamps" are in a finer unit or not times at all
#: a value is an integer id only when it matches this and fits int64: the vectorised form of
#: :func:`recforge.data.vocab.is_canonical_int`, the one id rule (no sign, no leading zeros, ASCII digits only)
CANONICAL_INT = r"^(?:0|[1-9][0-9]*)$"
#: id values that mean "no id" (compared case-insensitively after stripping)
MISSING_IDS = ("", "null", "nan", "none", "n/a", "nil")
_COMMA_DECIMAL = r"^[+-]?[0-9]+,[0-9]+$"

_HINTS: ContextVar[str] = ContextVar("recforge_hint_interface", default="python")


@contextmanager
def cli_hints() -> Iterator[None]:
    """Within this block, error hints name command-line flags (``--sep ';'``) instead of Python arguments."""
    token = _HINTS.set("cli")
    try:
        yield
    finally:
        _HINTS.reset(token)


def option_hint(option: str, value: Any) -> str:
    """How the current interface spells a reader option: ``sep=';'`` (Python) or ``--sep ';'`` (CLI)."""
    if _HINTS.get() != "cli":
        return f"{option}={value!r}"
    if value is True:
        return f"--{option.replace('_', '-')}"
    if option == "columns" and isinstance(value, Mapping):
        text = ",".join(f"{k}={v}" for k, v in value.items())
    elif option == "sep":
        text = "tab" if value == "\t" else "space" if value == " " else str(value)
    else:
        text = str(value)
    return f"--{option.replace('_', '-')} {_shell_quote(text)}"


def _shell_quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_.,=@%+:/-]+", text) else "'" + text.replace("'", "'\\''") + "'"


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
    raw = _read_bytes(path)
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
        guess = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin-1"
        raise DataError(
            f"byte 0x{bad} at character {col} cannot be decoded as {encoding}"
            f" (if the file is {guess.capitalize() if guess == 'latin-1' else guess.upper()}, pass "
            f"{option_hint('encoding', guess)})",
            path=str(path),
            line=line,
        ) from None
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark is not part of the first header name
        text = text[1:]
    if not text.strip():
        raise DataError("file is empty", path=str(path))
    return text


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; an unreadable file (permissions, a vanished mount) is a DataError, not an OSError."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", path=str(path)) from None


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
        raw = _read_bytes(path)
        try:
            df = pl.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # polars raises several error types for corrupt files
            raise DataError(f"cannot read Parquet ({str(exc).splitlines()[0] if str(exc) else exc!r})",
                            path=str(path)) from None
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
        hint = f"; the line appears to be separated by {seen!r}: pass {option_hint('sep', seen)}" if seen and seen != sep else ""
        raise DataError(
            f"wrong separator? splitting on {sep!r} gives {len(fields)} field(s), {min_columns}+ expected{hint}",
            path=str(path),
            line=first_no,
        )
    # leading blank lines would make polars guess a 1-column schema without a header: drop them, keep the numbering
    text = text[re.match(r"(?:[ \t\r\f\v]*\n)*", text).end() :]
    shown_sep = sep
    if len(sep) > 1:
        if _UNIT_SEP in text:
            raise DataError(f"cannot split on {sep!r}: the file contains the control character 0x1f", path=str(path))
        text = text.replace(sep, _UNIT_SEP)
        sep = _UNIT_SEP
    _check_shape(text, sep, quote, path, first_no, shown_sep)
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


def _check_shape(text: str, sep: str, quote: bool, path: Path, first_no: int, shown_sep: str) -> None:
    """Every non-blank line must split into as many fields as the first one: a DataError names the first line that
    does not (another separator, a missing or extra field, an unterminated quote). ``text`` starts at line
    ``first_no``; ``shown_sep`` is the separator as the user gave it (``sep`` may stand in for a multi-character one)."""
    if quote and '"' in text:
        reader = csv.reader(io.StringIO(text), delimiter=sep, quotechar='"', strict=True)
        expected, start = None, 1
        try:
            for fields in reader:
                line = first_no + start - 1
                start = reader.line_num + 1
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if expected is None:
                    expected = len(fields)
                elif len(fields) != expected:
                    _raise_shape(len(fields), expected, sep, shown_sep, text, line - first_no, path, line)
        except csv.Error as exc:
            line = first_no + start - 1  # where the damaged record starts
            what = "an unterminated quote" if "end of data" in str(exc) else f"a stray quote ({exc})"
            raise DataError(f"{what}; a field that starts with '\"' must end with '\"'", path=str(path),
                            line=max(line, first_no)) from None
        return
    lines = pl.Series(text.split("\n"), dtype=pl.Utf8).str.strip_suffix("\r")
    blank = lines.str.strip_chars().str.len_chars() == 0
    counts = (lines.str.count_matches(sep, literal=True) + 1).to_numpy()
    nonblank = np.flatnonzero(~blank.to_numpy())
    if not len(nonblank):
        return
    expected = int(counts[nonblank[0]])
    bad = nonblank[counts[nonblank] != expected]
    if len(bad):
        row = int(bad[0])
        _raise_shape(int(counts[row]), expected, sep, shown_sep, text, row, path, first_no + row)


def _raise_shape(n: int, expected: int, sep: str, shown_sep: str, text: str, row: int, path: Path, line: int) -> None:
    content = text.split("\n")[row] if row < text.count("\n") + 1 else ""
    content = content.replace(_UNIT_SEP, shown_sep)
    seen = guess_separator(content)
    hint = ""
    if seen and seen != shown_sep and n < expected:
        hint = f"; the line looks {seen!r}-separated"
    raise DataError(f"{n} field(s) where the first line has {expected} when split on {shown_sep!r}{hint}",
                    path=str(path), line=line)


def _read_jsonl(path: Path, text: str) -> pl.DataFrame:
    """JSON lines -> frame; a malformed line is named. When polars cannot read the lines (e.g. a column holding
    numbers on some lines and text on others) they are parsed one by one and scalars kept as their JSON text."""
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
        return _jsonl_as_text(path, text, exc)


def _jsonl_as_text(path: Path, text: str, exc: Exception) -> pl.DataFrame:
    """Every line parsed by the json module; scalar values become their JSON text (strings stay as they are),
    lists and objects stay lists/objects (the role checks reject them, naming the line)."""
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        obj = json.loads(line) if line.strip() else {}
        rows.append({k: v if isinstance(v, str) or v is None else
                     (v if isinstance(v, (list, dict)) else json.dumps(v)) for k, v in obj.items()})
    keys = list(dict.fromkeys(k for row in rows for k in row))
    cols: dict[str, list[Any]] = {k: [row.get(k) for row in rows] for k in keys}
    try:
        return pl.DataFrame({k: pl.Series(k, v, dtype=pl.Utf8 if all(x is None or isinstance(x, str) for x in v)
                                          else pl.Object) for k, v in cols.items()})
    except Exception:  # noqa: BLE001 (polars' error types vary by defect)
        raise DataError(f"cannot read JSON lines ({str(exc).splitlines()[0]})", path=str(path)) from None


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
                f"cannot find the {' and '.join(missing)} column(s) among {list(available)}; pass "
                + option_hint("columns", {"user": "COLUMN", "item": "COLUMN"}),
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
                    hint = f"; the header looks {sep!r}-separated, pass {option_hint('sep', sep)}"
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
    time_unit: Literal["s", "ms", "us", "ns", "auto"] = "auto",
    decimal: Literal[".", ","] | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    meta: Mapping[str, Any] | None = None,
) -> tuple[Interactions, LoadReport]:
    """Read an interaction file into :class:`Interactions` plus a :class:`LoadReport`.

    ``columns`` maps roles to column names or 0-based positions, e.g. ``{"user": "userId", "item": "movieId",
    "time": "timestamp", "value": "rating"}``; without it, common header names are recognised. Timestamps may be
    numbers or date-time strings (``time_format`` as in ``strptime``; ISO-8601 by default), stored as int64 seconds.
    Numbers are in ``time_unit`` since 1970; ``"auto"`` decides from the median of the whole column (beyond 1e11:
    ms, 1e14: us, 1e17: ns) and notes what it decided. ``decimal`` is the decimal mark of values; ``None`` reads
    ``4.5`` and, when every non-numeric value is written like ``4,5``, decimal commas (with a note).
    ``on_invalid="drop"`` removes rows with missing ids / bad timestamps / bad values and counts them per rule
    instead of raising.
    """
    if on_invalid not in ("raise", "drop"):
        raise ConfigError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    _check_number_options(time_unit, decimal)
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
        df, cols, path=p, first_line=first_line, time_format=time_format, time_unit=time_unit, decimal=decimal,
        on_invalid=on_invalid, meta=meta,
    )


def _check_number_options(time_unit: str, decimal: str | None) -> None:
    if time_unit not in TIME_UNITS:
        raise ConfigError(f"time_unit must be one of {list(TIME_UNITS)}, got {time_unit!r}")
    if decimal not in (None, ".", ","):
        raise ConfigError(f"decimal must be '.' or ',', got {decimal!r}")


def frame_to_interactions(
    df: pl.DataFrame,
    cols: Mapping[str, str],
    *,
    path: str = "<frame>",
    first_line: int = 0,
    time_format: str | None = None,
    time_unit: Literal["s", "ms", "us", "ns", "auto"] = "auto",
    decimal: Literal[".", ","] | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    meta: Mapping[str, Any] | None = None,
) -> tuple[Interactions, LoadReport]:
    """Validate the role columns of ``df`` (any dtypes) and build Interactions; see :func:`read_interactions`."""
    _check_number_options(time_unit, decimal)
    report = LoadReport(path=path, rows_read=df.height)
    for role, col in cols.items():
        _check_scalar_column(df[col], role, path, first_line)
    keep = np.ones(df.height, bool)
    # blank lines come through as all-null rows
    blank = df.select(pl.all_horizontal(pl.col(c).is_null() for c in cols.values())).to_series().to_numpy()
    if blank.any():
        report.add("blank_line", int(blank.sum()))
        keep &= ~blank

    def where(row: int) -> dict[str, Any]:
        return {"line": first_line + row} if first_line else {"line": None}

    def check(bad: np.ndarray, rule: str, role: str, what: str, hint: str = "") -> None:
        bad = bad & keep
        if not bad.any():
            return
        if on_invalid == "drop":
            report.add(rule, int(bad.sum()))
            keep[bad] = False
            return
        row = int(np.flatnonzero(bad)[0])
        shown = df[cols[role]][row]
        n = int(bad.sum())
        first = f"first on line {first_line + row}" if first_line else f"first in row {row}"
        shown = "empty" if shown is None or (isinstance(shown, str) and not shown.strip()) else repr(shown)
        msg = (f"{what} ({shown}); {n} row(s) affected, {first}; {hint + '; or ' if hint else ''}"
               f"{option_hint('on_invalid', 'drop')} drops and counts them")
        if not first_line:
            msg = f"row {row}: {msg}"
        raise DataError(msg, path=path, column=cols[role], **where(row))

    ids: dict[str, pl.Series] = {}
    for role in ("user", "item"):
        s = df[cols[role]]
        s = s.cast(pl.Utf8).str.strip_chars() if s.dtype != pl.Utf8 else s.str.strip_chars()
        missing = (s.is_null() | s.str.to_lowercase().is_in(list(MISSING_IDS))).to_numpy()
        check(missing, "empty_id", role, f"missing {role} id")
        ids[role] = s

    time = np.zeros(df.height, np.int64)
    time_kind: str | None = None
    if "time" in cols:
        raw = df[cols["time"]]
        null_t = raw.is_null().to_numpy() | (raw.cast(pl.Utf8).str.strip_chars() == "").fill_null(True).to_numpy()
        t, bad_t, unit_note, time_kind = _parse_time(raw, time_format, time_unit, keep & ~null_t)
        range_hint = option_hint("time_unit", "ms") if time_unit != "ms" else ""
        check((bad_t == 1) & ~null_t, "bad_time", "time", "non-numeric timestamp",
              "" if time_format else f"for another date format pass {option_hint('time_format', '%d/%m/%Y %H:%M')}")
        check(null_t, "bad_time", "time", "empty timestamp")
        check(bad_t == 2, "bad_time", "time", "timestamp out of range (after the year 9999 as seconds)",
              f"for milliseconds pass {range_hint}" if range_hint else "")
        check(~(bad_t > 0) & ~null_t & (t < 0), "negative_time", "time", "negative timestamp")
        time = np.where((bad_t > 0) | null_t, 0, t).astype(np.int64)
        if unit_note:
            report.notes.append(unit_note)

    value = np.ones(df.height, np.float32)
    if "value" in cols:
        v, decimal_note, comma_hint = _parse_numbers(df[cols["value"]], decimal, keep)
        bad_v = v.is_null().to_numpy() | ~np.isfinite(v.fill_null(0.0).to_numpy())
        check(bad_v, "bad_value", "value", "non-numeric value", comma_hint)
        value = v.fill_null(0.0).to_numpy().astype(np.float32)
        if decimal_note:
            report.notes.append(decimal_note)

    event = df[cols["event"]].cast(pl.Utf8).to_numpy() if "event" in cols else None
    report.rows_kept = int(keep.sum())
    if report.rows_kept == 0:
        raise DataError(f"no valid rows left (removed: {report.removed})", path=path)
    mask = pl.Series(keep)
    extra_meta = {"time_kind": time_kind} if time_kind else {}
    data = build_interactions(
        ids["user"].filter(mask),
        ids["item"].filter(mask),
        time=time[keep],
        value=value[keep],
        event=None if event is None else event[keep],
        meta={**(meta or {}), **extra_meta, "load": report.to_dict()},
    )
    if report.removed:
        log.info("%s: removed %s", path, report.removed)
    for note in report.notes:
        log.info("%s: %s", path, note)
    return data, report


def _check_scalar_column(s: pl.Series, role: str, path: str, first_line: int) -> None:
    """A role column must hold one scalar per row: lists / structs / JSON objects are a DataError naming the row."""
    if s.dtype == pl.Object:
        bad = [i for i, v in enumerate(s.to_list()) if isinstance(v, (list, dict))]
    elif s.dtype.is_nested():
        bad = np.flatnonzero(s.is_not_null().to_numpy()).tolist()
    else:
        return
    if not bad:
        return
    row = bad[0]
    kind = "lists or objects" if s.dtype == pl.Object else f"{s.dtype} values"
    where = {"line": first_line + row} if first_line else {}
    raise DataError(f"the {role} column holds {kind}; expected one value per row ({len(bad)} row(s) affected"
                    + ("" if first_line else f", first in row {row}") + ")", path=path, column=s.name, **where)


def _parse_numbers(s: pl.Series, decimal: str | None, keep: np.ndarray) -> tuple[pl.Series, str, str]:
    """(Float64 series with nulls where not a number, note about detected decimal commas, hint for the error)."""
    if s.dtype.is_numeric():
        return s.cast(pl.Float64), "", ""
    text = s.cast(pl.Utf8).str.strip_chars()
    if decimal == ",":
        return text.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False), "", ""
    v = text.cast(pl.Float64, strict=False)
    failed = v.is_null() & text.is_not_null() & pl.Series(keep)
    if decimal is None and failed.any():
        commas = text.filter(failed).str.contains(_COMMA_DECIMAL)
        has_dot = text.filter(~failed & text.is_not_null()).str.contains(".", literal=True).any()
        if commas.all() and not has_dot:
            example = text.filter(failed)[0]
            note = (f"{s.name}: decimal commas detected (e.g. {example!r}); pass {option_hint('decimal', ',')} "
                    "to state it")
            return text.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False), note, ""
        if commas.any():
            return v, "", f"for decimal commas pass {option_hint('decimal', ',')}"
    return v, "", ""


def _parse_time(
    s: pl.Series, time_format: str | None, time_unit: str, considered: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str, str | None]:
    """(int64 seconds, bad code per row: 0 ok / 1 not a time / 2 out of range, note on what was decided, time kind).

    Numbers are ``time_unit`` since 1970 (``"auto"``: decided from the median of the whole column, ``considered``
    rows only); text that is not a number is parsed as a date-time. The kind is "unix" for date-times and for an
    explicit or detected sub-second unit, else None (the statistics decide from the values)."""
    kind: str | None = None
    note = ""
    if s.dtype.is_temporal():
        secs = s.cast(pl.Datetime("us")).dt.epoch("s")
        return (secs.fill_null(0).to_numpy().astype(np.int64), secs.is_null().to_numpy().astype(np.int8),
                "", "unix")
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
            if getattr(dt.dtype, "time_zone", None):
                dt = dt.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            secs = dt.dt.epoch("s")
            bad = secs.is_null().to_numpy().astype(np.int8)
            return secs.fill_null(0).to_numpy().astype(np.int64), bad, "", "unix"
    raw = f.to_numpy().astype(np.float64) if f.null_count() == 0 else f.fill_null(np.nan).to_numpy()
    finite = np.isfinite(raw)
    unit = time_unit
    if time_unit == "auto":
        sample = np.abs(raw[finite & considered])
        sample = sample[sample > 0]
        median = float(np.median(sample)) if len(sample) else 0.0
        unit = "ns" if median >= 1e17 else "us" if median >= 1e14 else "ms" if median >= 1e11 else "s"
        if unit != "s":
            note = (f"{s.name}: numbers read as {_UNIT_NAMES[unit]} since 1970 (median {median:.3g} of the whole "
                    f"column); pass {option_hint('time_unit', 's')} or another unit to override")
    if unit != "s":
        kind = "unix"
    secs = np.floor(np.where(finite, raw, 0.0) / _PER_SECOND[unit])
    bad = np.where(~finite, 1, np.where(np.abs(secs) > _MAX_SECONDS, 2, 0)).astype(np.int8)
    vals = np.where(bad > 0, 0, secs).astype(np.int64)
    return vals, bad, note, kind


def id_series(values: np.ndarray | pl.Series | Sequence[Any]) -> pl.Series:
    """Ids as a polars Series: integers when the values are integers or every value is a canonical ASCII decimal
    integer (``CANONICAL_INT``: so '10' sorts after '9' while '007' stays the text '007'), else the exact text."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.tolist()  # polars cannot cast numpy object columns
    s = values if isinstance(values, pl.Series) else pl.Series(values=values, strict=False)
    if s.dtype.is_integer() and not (s < 0).any():
        return s.cast(pl.Int64)
    text = s.cast(pl.Utf8)
    canonical = text.str.contains(CANONICAL_INT)
    if canonical.null_count() != text.null_count() or not canonical.fill_null(True).all():
        return text
    as_int = text.cast(pl.Int64, strict=False)
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
