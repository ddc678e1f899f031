"""FeedbackStore: user feedback in SQLite (WAL journal), durable before it is acknowledged; Parquet export.

Ids are stored with their JSON type (integer or text); the server stores them in one canonical form per id
(``serve.engine.stored_id``: ``"7"`` and ``7`` are one id, ``"07"`` another). Integers are int64, timestamps and
values finite: anything else is refused with a :class:`~recforge.errors.DataError` before SQLite sees it.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from recforge.errors import DataError, RecforgeError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user NOT NULL,  -- no declared type: values keep their JSON type (integer or text)
    item NOT NULL,
    event TEXT NOT NULL,
    ts REAL NOT NULL,
    value REAL,
    received REAL NOT NULL,
    model_version TEXT
);
CREATE INDEX IF NOT EXISTS feedback_user ON feedback(user, id);
CREATE INDEX IF NOT EXISTS feedback_user_ts ON feedback(user, ts, id);
CREATE TABLE IF NOT EXISTS added_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item NOT NULL UNIQUE,  -- the external id, with its JSON type
    record TEXT NOT NULL,  -- the item's text fields as JSON (title, genres, tags, year)
    received REAL NOT NULL
);
"""


class FeedbackStoreError(RecforgeError):
    """The store could not carry out a valid request (disk full, database locked or damaged): the event was not
    stored. The server answers 503."""


class ItemConflictError(RecforgeError):
    """An item id added to the catalogue is already there (added before, possibly by another worker or replica):
    nothing of the request was stored. The server answers 409."""


def _check_id(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"{what} must be a string or an integer, got {type(value).__name__}")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise DataError(f"{what} {value} does not fit in 64 bits")
    if isinstance(value, str) and ("\x00" in value or _has_surrogate(value)):
        raise DataError(f"{what} holds a NUL character or a lone surrogate")


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _finite(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise DataError(f"{what} must be a finite number, got {value!r}")
    return float(value)


class _Store:
    """What every feedback store shares: validation of an event and the Parquet export of ``rows()``."""

    def rows(self) -> list[tuple]:
        raise NotImplementedError

    @staticmethod
    def _checked(user: Any, item: Any, ts: float | None, value: float | None) -> tuple[float | None, float | None]:
        _check_id(user, "user id")
        _check_id(item, "item id")
        ts, value = _finite(ts, "timestamp"), _finite(value, "value")
        if ts is not None and ts < 0:
            raise DataError(f"timestamp must be >= 0 (unix seconds), got {ts}")
        return ts, value

    def export_parquet(self, out: str | Path) -> int:
        """Write every event to a Parquet file (columns user_id, item_id, event, timestamp, value, ...); returns rows.

        Ids become strings when a column mixes integers and strings (Parquet columns have one type)."""
        import polars as pl

        rows = self.rows()
        cols = list(zip(*rows)) if rows else [()] * 8
        users, items = _one_type(cols[1]), _one_type(cols[2])
        frame = pl.DataFrame(
            {
                "id": pl.Series(cols[0], dtype=pl.Int64),
                "user_id": users,
                "item_id": items,
                "event": pl.Series(cols[3], dtype=pl.Utf8),
                "timestamp": pl.Series(cols[4], dtype=pl.Float64),
                "value": pl.Series(cols[5], dtype=pl.Float64),
                "received": pl.Series(cols[6], dtype=pl.Float64),
                "model_version": pl.Series(cols[7], dtype=pl.Utf8),
            }
        )
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(out)
        log.info("exported %d feedback events to %s", len(frame), out)
        return len(frame)


def open_feedback_store(location: str | Path, sync: str = "full") -> FeedbackStore | PostgresFeedbackStore:
    """The store at ``location``: a ``postgresql://`` URL (a PostgreSQL server shared by replicas) or a SQLite file."""
    if str(location).startswith(("postgresql://", "postgres://")):
        return PostgresFeedbackStore(str(location))
    return FeedbackStore(location, sync=sync)


class FeedbackStore(_Store):
    """One SQLite connection guarded by a lock (SQLite serialises writers anyway).

    ``add`` returns only after the transaction is committed, so an acknowledged event survives a crash of the process
    (``sync="normal"``) or of the machine (``sync="full"``, an fsync per commit).
    """

    def __init__(self, path: str | Path, sync: str = "full"):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so "committed" means exactly that.
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(_SCHEMA)
            # A second connection for reads: under WAL it never waits for a writer's fsync, so /recommend
            # (which reads a user's feedback) is not stalled by concurrent /feedback commits.
            self._reader = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._reader.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise DataError(f"cannot open feedback store: {exc}", path=str(path)) from None
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()

    def add(
        self,
        user: Any,
        item: Any,
        event: str = "click",
        ts: float | None = None,
        value: float | None = None,
        model_version: str | None = None,
    ) -> int:
        """Insert and commit one event; returns its row id. ``ts`` (unix seconds) defaults to now.

        DataError for an id that is not a string or an int64, a non-finite or negative ``ts``, a non-finite
        ``value``; :class:`FeedbackStoreError` when SQLite fails (nothing was stored)."""
        ts, value = self._checked(user, item, ts, value)
        now = time.time()
        try:
            with self._lock:
                cur = self._conn.execute(
                    "INSERT INTO feedback (user, item, event, ts, value, received, model_version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (user, item, event, now if ts is None else ts, value, now, model_version),
                )
                return int(cur.lastrowid)
        except sqlite3.Error as exc:
            log.error("feedback store write failed: %s", exc)
            raise FeedbackStoreError(f"feedback store unavailable ({type(exc).__name__}); the event was not stored"
                                     ) from None

    def history(self, user: Any, exclude_events: tuple[str, ...] = (), limit: int = 200) -> list[Any]:
        """The user's ``limit`` most recent item ids by event timestamp (ties: arrival order), returned oldest
        first, leaving out ``exclude_events``."""
        marks = ",".join("?" * len(exclude_events))
        where = f"AND event NOT IN ({marks})" if exclude_events else ""
        try:
            with self._read_lock:
                rows = self._reader.execute(
                    f"SELECT item FROM feedback WHERE user = ? {where} ORDER BY ts DESC, id DESC LIMIT ?",
                    (user, *exclude_events, limit),
                ).fetchall()
        except sqlite3.Error as exc:
            log.error("feedback store read failed: %s", exc)
            raise FeedbackStoreError(f"feedback store unavailable ({type(exc).__name__})") from None
        return [r[0] for r in reversed(rows)]

    def pragma(self, name: str) -> Any:
        """A PRAGMA's value on the writing connection (e.g. ``synchronous``: 2 is FULL, 1 NORMAL)."""
        if not name.isidentifier():
            raise DataError(f"not a pragma name: {name!r}")
        with self._lock:
            return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def count(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def rows(self) -> list[tuple]:
        """All events as (id, user, item, event, ts, value, received, model_version), in insertion order."""
        with self._read_lock:
            return self._reader.execute(
                "SELECT id, user, item, event, ts, value, received, model_version FROM feedback ORDER BY id"
            ).fetchall()

    def add_items(self, records: list[tuple[Any, str]]) -> list[int]:
        """Insert and commit catalogue additions ``(external item id, JSON text fields)`` in one transaction;
        returns their row ids (the order every server applies them in). :class:`ItemConflictError` when an id is
        already stored (nothing is stored then); :class:`FeedbackStoreError` when SQLite fails."""
        for item, _ in records:
            _check_id(item, "item id")
        now = time.time()
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    ids = [int(self._conn.execute("INSERT INTO added_items (item, record, received) VALUES (?, ?, ?)",
                                                  (item, record, now)).lastrowid) for item, record in records]
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                return ids
        except sqlite3.IntegrityError:
            raise ItemConflictError("an item of the request is already in the catalogue; nothing was added") from None
        except sqlite3.Error as exc:
            log.error("feedback store write failed: %s", exc)
            raise FeedbackStoreError(f"feedback store unavailable ({type(exc).__name__}); nothing was added") from None

    def added_items(self) -> list[tuple[int, Any, str]]:
        """Every catalogue addition as (row id, external item id, JSON text fields), in insertion order."""
        try:
            with self._read_lock:
                return self._reader.execute("SELECT id, item, record FROM added_items ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            log.error("feedback store read failed: %s", exc)
            raise FeedbackStoreError(f"feedback store unavailable ({type(exc).__name__})") from None

    def last_added(self) -> int:
        """Row id of the latest catalogue addition (0 when none): a cheap check for additions by other workers."""
        try:
            with self._read_lock:
                return int(self._reader.execute("SELECT COALESCE(MAX(id), 0) FROM added_items").fetchone()[0])
        except sqlite3.Error as exc:
            log.error("feedback store read failed: %s", exc)
            raise FeedbackStoreError(f"feedback store unavailable ({type(exc).__name__})") from None

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._reader.close()
            self._conn.close()


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    user_is_int BOOLEAN NOT NULL,  -- ids keep their JSON type: 7 and "7" are told apart as in SQLite
    item_id TEXT NOT NULL,
    item_is_int BOOLEAN NOT NULL,
    event TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    value DOUBLE PRECISION,
    received DOUBLE PRECISION NOT NULL,
    model_version TEXT
);
CREATE INDEX IF NOT EXISTS feedback_user_ts ON feedback (user_id, user_is_int, ts, id);
CREATE TABLE IF NOT EXISTS added_items (
    id BIGSERIAL PRIMARY KEY,
    item_id TEXT NOT NULL,
    item_is_int BOOLEAN NOT NULL,
    record TEXT NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    UNIQUE (item_id, item_is_int)
);
"""


class PostgresFeedbackStore(_Store):
    """Feedback in a PostgreSQL server, so several replicas share one log and each user's live history.

    Every ``add`` is its own transaction, committed (``synchronous_commit=on``: the WAL is flushed) before it
    returns. A lost connection is reopened on the next call; meanwhile calls raise :class:`FeedbackStoreError`."""

    def __init__(self, url: str):
        try:
            import psycopg  # optional dependency (the postgres extra): imported only when a URL is configured
        except ModuleNotFoundError:
            raise DataError("a postgresql:// feedback store needs psycopg: pip install 'recforge[postgres]'") from None
        self._psycopg, self._url = psycopg, url
        self._lock, self._read_lock = threading.Lock(), threading.Lock()
        self._conn = self._reader = None
        try:
            self._conn = self._connect()
            self._conn.execute(_PG_SCHEMA)
            self._reader = self._connect()
        except psycopg.Error as exc:
            raise DataError(f"cannot open the PostgreSQL feedback store: {type(exc).__name__}") from None

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        conn.execute("SET synchronous_commit = on")
        return conn

    def _run(self, reader: bool, sql: str, params: tuple = ()) -> list[tuple]:
        lock = self._read_lock if reader else self._lock
        with lock:
            try:
                conn = self._reader if reader else self._conn
                if conn is None or conn.closed:
                    conn = self._connect()
                    if reader:
                        self._reader = conn
                    else:
                        self._conn = conn
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
            except self._psycopg.Error as exc:
                log.error("feedback store (postgres) failed: %s", exc)
                raise FeedbackStoreError(f"feedback store unavailable ({type(exc).__name__})") from None

    def add(self, user: Any, item: Any, event: str = "click", ts: float | None = None, value: float | None = None,
            model_version: str | None = None) -> int:
        """Insert and commit one event; returns its id. Same checks and errors as :meth:`FeedbackStore.add`."""
        ts, value = self._checked(user, item, ts, value)
        if "\x00" in event or (model_version is not None and "\x00" in model_version):
            raise DataError("event and model_version cannot hold NUL characters")
        now = time.time()
        rows = self._run(False, "INSERT INTO feedback (user_id, user_is_int, item_id, item_is_int, event, ts, value, "
                                "received, model_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                         (str(user), isinstance(user, int), str(item), isinstance(item, int), event,
                          now if ts is None else ts, value, now, model_version))
        return int(rows[0][0])

    def history(self, user: Any, exclude_events: tuple[str, ...] = (), limit: int = 200) -> list[Any]:
        """As :meth:`FeedbackStore.history`: the ``limit`` most recent items by timestamp, oldest first."""
        where = "AND NOT (event = ANY(%s))" if exclude_events else ""
        params = (str(user), isinstance(user, int), *((list(exclude_events),) if exclude_events else ()), limit)
        rows = self._run(True, f"SELECT item_id, item_is_int FROM feedback WHERE user_id = %s AND user_is_int = %s "
                               f"{where} ORDER BY ts DESC, id DESC LIMIT %s", params)
        return [int(i) if is_int else i for i, is_int in reversed(rows)]

    def count(self) -> int:
        return int(self._run(True, "SELECT COUNT(*) FROM feedback")[0][0])

    def rows(self) -> list[tuple]:
        """All events as (id, user, item, event, ts, value, received, model_version), in insertion order."""
        out = self._run(True, "SELECT id, user_id, user_is_int, item_id, item_is_int, event, ts, value, received, "
                              "model_version FROM feedback ORDER BY id")
        return [(r[0], int(r[1]) if r[2] else r[1], int(r[3]) if r[4] else r[3], *r[5:]) for r in out]

    def add_items(self, records: list[tuple[Any, str]]) -> list[int]:
        """As :meth:`FeedbackStore.add_items`: one statement (one transaction), committed before it returns."""
        for item, record in records:
            _check_id(item, "item id")
            if "\x00" in record:
                raise DataError("an item record cannot hold NUL characters")
        now = time.time()
        values = ", ".join(["(%s, %s, %s, %s)"] * len(records))
        params = tuple(v for item, record in records for v in (str(item), isinstance(item, int), record, now))
        try:
            rows = self._run(False, f"INSERT INTO added_items (item_id, item_is_int, record, received) VALUES {values} "
                                    "RETURNING id", params)
        except FeedbackStoreError as exc:
            if isinstance(exc.__context__, self._psycopg.errors.UniqueViolation):
                raise ItemConflictError("an item of the request is already in the catalogue; nothing was added"
                                        ) from None
            raise
        return sorted(int(r[0]) for r in rows)

    def added_items(self) -> list[tuple[int, Any, str]]:
        """Every catalogue addition as (row id, external item id, JSON text fields), in insertion order."""
        rows = self._run(True, "SELECT id, item_id, item_is_int, record FROM added_items ORDER BY id")
        return [(int(r[0]), int(r[1]) if r[2] else r[1], r[3]) for r in rows]

    def last_added(self) -> int:
        """Row id of the latest catalogue addition (0 when none)."""
        return int(self._run(True, "SELECT COALESCE(MAX(id), 0) FROM added_items")[0][0])

    def setting(self, name: str) -> str:
        """A server setting as this store's connection sees it (e.g. ``synchronous_commit``, ``fsync``)."""
        return str(self._run(True, "SELECT current_setting(%s)", (name,))[0][0])

    def close(self) -> None:
        with self._lock, self._read_lock:
            for conn in (self._conn, self._reader):
                if conn is not None:
                    conn.close()


def _one_type(values: tuple) -> Any:
    import polars as pl

    if values and all(isinstance(v, int) for v in values):
        return pl.Series(values, dtype=pl.Int64)
    return pl.Series([str(v) for v in values], dtype=pl.Utf8)
