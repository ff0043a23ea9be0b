"""The log database: a SQLite file in WAL mode, its versioned schema, and its writes and lookups.

Several kernels and a terminal may write at once: WAL lets readers go on while one writer
writes, and each writer waits up to ``BUSY_TIMEOUT_S`` for the lock instead of failing, so no row
is lost. A schema older than this nbllm is migrated forward when the file is opened (inside one
``BEGIN IMMEDIATE``, so two processes opening a new file migrate it once). A write that still
fails (a lock held too long, a read-only or corrupt file) never fails the call: the answer is
shown and one warning says the exchange was not logged (docs/exchange-log.md#concurrency-and-failures).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbllm.log.record import COLUMNS, Exchange

BUSY_TIMEOUT_S = 5.0

# One entry per schema version; a file at version N runs entries N.. in order.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # The small columns come first and the long texts last: SQLite reads a row from its start, so
    # listing and totalling never walk the overflow pages that hold messages and answers.
    (  # 1: one row per exchange
        """CREATE TABLE exchanges (
            id INTEGER PRIMARY KEY,
            time TEXT NOT NULL,              -- ISO 8601, UTC
            source TEXT NOT NULL,            -- cli, magic, api, compare, widget, import
            provider TEXT NOT NULL,
            host TEXT,                       -- base URL host only
            model TEXT NOT NULL,
            params TEXT NOT NULL,            -- JSON
            prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER,
            first_token_s REAL, total_s REAL,
            finish_reason TEXT,
            error_class TEXT,
            cached INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            version TEXT NOT NULL,
            session TEXT NOT NULL,
            notebook TEXT,
            error_message TEXT,
            system TEXT,
            prompt TEXT NOT NULL,            -- the last user message
            answer TEXT NOT NULL,
            reasoning TEXT NOT NULL,
            messages TEXT NOT NULL           -- JSON, history included
        )""",
    ),
    (  # 2: cache lookups by fingerprint, --since, and token totals read from an index alone
        "CREATE INDEX exchanges_fingerprint ON exchanges(fingerprint, id)",
        "CREATE INDEX exchanges_time ON exchanges(time)",
        "CREATE INDEX exchanges_usage ON exchanges(provider, model, cached, source, time, session, prompt_tokens, "
        "completion_tokens, total_tokens)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_INSERT = f"INSERT INTO exchanges ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating when needed) and migrate the database; raises sqlite3/OS errors as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    try:
        # Rows hold whole conversations (several KB): 16 KiB pages keep most of a row on one page, which
        # makes a search over every row ~3x faster and the file smaller. Only a new file takes it.
        conn.execute("PRAGMA page_size=16384")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes of the process
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION; a newer file (a later nbllm) is left as it is."""
    if schema_version(conn) >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = schema_version(conn)  # another process may have migrated while this one waited
        for version in range(start, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {max(start, SCHEMA_VERSION)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class LogStore:
    """One database file, with a connection kept open for this process's writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # compare lanes finish in their own threads
        # Cache lookups (one per row of a batch) read on a connection of their own, kept open: WAL
        # readers never wait for the writer, and opening a connection costs more than the query.
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()

    def insert(self, exchange: Exchange, wait: bool = True) -> int:
        """Write one row and return its id; raises on any database failure. ``wait=False`` fails at
        once when another program holds the file, instead of waiting up to BUSY_TIMEOUT_S."""
        row = exchange.row()
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = connect(self.path)
                if not wait:
                    self._conn.execute("PRAGMA busy_timeout = 0")
                try:
                    found = int(self._conn.execute(_INSERT, [row[c] for c in COLUMNS]).lastrowid or 0)
                except UnicodeEncodeError:  # a lone surrogate ("\ud800" escaped in a provider's JSON)
                    found = int(self._conn.execute(_INSERT, [_encodable(row[c]) for c in COLUMNS]).lastrowid or 0)
                if not wait:
                    self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                return found
            except BaseException:
                self._close()  # the next call opens the file again (it may be fixed by then)
                raise

    def insert_many(self, exchanges: list[Exchange], wait: bool = True) -> None:
        """Write rows in one transaction, all or none; raises on any database failure. ``wait`` as
        for ``insert``."""
        rows = [[row[c] for c in COLUMNS] for row in (exchange.row() for exchange in exchanges)]
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = connect(self.path)
                if not wait:
                    self._conn.execute("PRAGMA busy_timeout = 0")
                self._conn.execute("BEGIN IMMEDIATE")  # waits up to BUSY_TIMEOUT_S for another writer
                try:
                    try:
                        self._conn.executemany(_INSERT, rows)
                    except UnicodeEncodeError:  # a lone surrogate, as in ``insert``
                        self._conn.executemany(_INSERT, [[_encodable(v) for v in row] for row in rows])
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                if not wait:
                    self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            except BaseException:
                self._close()
                raise

    def find(self, sql: str, args: tuple[object, ...]) -> tuple[object, ...] | None:
        """The first row of a query on the lookup connection; None when there is no log file (none is made)."""
        with self._read_lock:
            if not self.path.exists():
                self._close_reader()
                return None
            try:
                if self._reader is None:
                    self._reader = connect(self.path)
                row: tuple[object, ...] | None = self._reader.execute(sql, args).fetchone()
                return row
            except BaseException:
                self._close_reader()  # the next lookup opens the file again
                raise

    def has_answer(self, fingerprint: str, answer: str) -> bool:
        """Whether a complete answer with this fingerprint and text is logged already."""
        from nbllm.secrets import redact

        sql = "SELECT 1 FROM exchanges WHERE fingerprint = ? AND answer = ? AND error_class IS NULL LIMIT 1"
        answer = redact(answer)  # as it was stored
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.path)
            return self._conn.execute(sql, (fingerprint, answer)).fetchone() is not None

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection | None]:
        """A connection for queries, or None when there is no log file yet (nothing is created)."""
        if not self.path.exists():
            yield None
            return
        conn = connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def close(self) -> None:
        with self._lock:
            self._close()
        with self._read_lock:
            self._close_reader()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(value: object) -> object:
    """Text SQLite can store as UTF-8: a lone surrogate becomes U+FFFD, as any UTF-8 decoder shows it."""
    if not isinstance(value, str):
        return value
    return _SURROGATE.sub("\ufffd", value)


_stores: dict[Path, LogStore] = {}


def store_at(path: Path) -> LogStore:
    """The process's store for a path (one open connection per file)."""
    store = _stores.get(path)
    if store is None:  # setdefault: two threads asking at once get the same store
        store = _stores.setdefault(path, LogStore(path))
    return store


def close_all() -> None:
    """Write the rows still queued, then close every open log connection (tests, a kernel that
    moves NBLLM_LOG)."""
    writer = sys.modules.get("nbllm.log.writer")
    if writer is not None:
        writer.flush()
    for store in list(_stores.values()):
        store.close()
    _stores.clear()


def write(exchange: Exchange) -> int | None:
    """Log an exchange; the row id, or None (with one warning) when it could not be written.

    None too, silently, when the log is turned off.
    """
    from nbllm.log.paths import log_path

    path: Path | None = None
    try:
        path = log_path()
        if path is None:
            return None
        impatient = time.monotonic() < _impatient_until.get(path, 0.0)
        started = time.monotonic()
        try:
            return store_at(path).insert(exchange, wait=not impatient)
        except sqlite3.OperationalError as exc:
            # SQLite reports some lock conflicts at once, without its busy wait (two processes
            # creating the file or switching it to WAL together): those get one more try.
            if impatient or not _is_lock(exc) or time.monotonic() - started >= BUSY_TIMEOUT_S / 2:
                raise
            time.sleep(0.05)
            return store_at(path).insert(exchange)
    except Exception as exc:  # the log must never cost the user an answer
        if path is not None and _is_lock(exc):
            if impatient:
                return None  # warned when the lock was first met; no wait, no second warning
            _impatient_until[path] = time.monotonic() + IMPATIENT_S
        warn_not_written(path, exc)
        return None


# After a write waited BUSY_TIMEOUT_S for another program's lock, the writes of the next
# IMPATIENT_S seconds try once without waiting: a batch of a thousand rows must not wait five
# seconds a row for a file someone holds open in a write (docs/exchange-log.md#concurrency-and-failures).
IMPATIENT_S = 30.0
_impatient_until: dict[Path, float] = {}


def _is_lock(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def impatient(path: Path) -> bool:
    """Whether writes to this file try once without waiting (another program held its lock lately)."""
    return time.monotonic() < _impatient_until.get(path, 0.0)


def met_lock(path: Path, exc: Exception) -> bool:
    """After a failed write: True when it failed on a lock, and from now on writes try once for IMPATIENT_S."""
    if not _is_lock(exc):
        return False
    _impatient_until[path] = time.monotonic() + IMPATIENT_S
    return True


def warn_not_written(path: Path | None, exc: Exception, count: int = 1) -> None:
    from nbllm.secrets import redact

    what = "this exchange was" if count == 1 else f"{count:,} exchanges were"
    answers = "the answer is" if count == 1 else "the answers are"
    sys.stderr.write(redact(f"nbllm: warning: {what} not written to the log {path or ''} "
                            f"({_reason(exc)}); {answers} not affected.\n"))
    sys.stderr.flush()


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "locked" in text or "busy" in text:
        return (f"{text}: another program held it for more than {BUSY_TIMEOUT_S:g} s; for the next {IMPATIENT_S:g} s "
                "exchanges are logged only if the file is free at once")
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        return f"{text}: make it writable, or set NBLLM_LOG to another file"
    if "disk I/O error" in text or "disk is full" in text or isinstance(exc, OSError) and exc.errno in (27, 28):  # EFBIG, ENOSPC
        return f"{text}: the disk may be full (or the file at its size limit); free space, or set NBLLM_LOG to another file"
    if "no column named" in text or "no such column" in text:
        return f"{text}: the file looks like a newer nbllm's log; upgrade nbllm, or set NBLLM_LOG to another file"
    if "not a database" in text or "malformed" in text:
        return f"{text}: move the file away to start a new log, or set NBLLM_LOG to another file"
    return text
