"""The log's background writer: a batch run's rows, written by one thread, many to a transaction.

``nbllm.map`` finishes a row every few milliseconds on its event loop. Writing each row there
(redaction, JSON, one SQLite commit) would put ~1 ms a row on the run's critical path, so a
batch row is queued here instead (``meta["log_later"]``, see ``hook.py``) and one thread writes
what has queued up in one transaction every ``BATCH_WAIT_S`` (or every ``MAX_ROWS`` rows).

Nothing queued is lost: ``flush()`` returns once every row queued before it is written. The
batch calls it before it returns or raises (so ``nbllm logs`` right after a run sees every row),
a cache lookup calls it when its own request is still queued (a repeated row is answered from
the log), ``store.close_all`` calls it, and it runs at interpreter exit. A write that fails warns
as a direct write does, once per run of failures, with how many rows were not written.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from collections import Counter
from itertools import groupby
from pathlib import Path

from nbllm.log import store
from nbllm.log.record import Exchange
from nbllm.log.store import store_at, warn_not_written

BATCH_WAIT_S = 0.05  # how long the first queued row waits for others to share its transaction
MAX_ROWS = 256


class Writer:
    """The queue and the thread that empties it (started with the first row)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Path, Exchange] | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._queued: Counter[str] = Counter()  # fingerprints queued and not written yet
        self._count = threading.Lock()
        self._failed: tuple[Path, Exception, int] | None = None  # the failure warned about, rows lost since

    def submit(self, path: Path, exchange: Exchange) -> None:
        with self._count:
            self._queued[exchange.fingerprint] += 1
        self._queue.put((path, exchange))
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="nbllm log writer", daemon=True)
                    self._thread.start()

    def queued(self, fingerprint: str) -> bool:
        """Whether a row with this fingerprint waits to be written."""
        return self._queued.get(fingerprint, 0) > 0

    def flush(self) -> None:
        """Return once every row queued so far is written (or warned about)."""
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait()

    def _run(self) -> None:
        while True:
            rows: list[tuple[Path, Exchange]] = []
            flushes: list[threading.Event] = []
            item = self._queue.get()
            until = time.monotonic() + BATCH_WAIT_S
            while True:
                if isinstance(item, threading.Event):
                    flushes.append(item)
                    break
                rows.append(item)
                if len(rows) >= MAX_ROWS:
                    break
                try:
                    item = self._queue.get(timeout=max(until - time.monotonic(), 0.0))
                except queue.Empty:
                    break
            self._write(rows)
            if flushes:
                self._report_lost()
            for done in flushes:
                done.set()

    def _write(self, rows: list[tuple[Path, Exchange]]) -> None:
        for path, group in groupby(rows, key=lambda row: row[0]):
            exchanges = [exchange for _, exchange in group]
            impatient = store.impatient(path)  # another program held the lock lately: no waiting
            try:
                store_at(path).insert_many(exchanges, wait=not impatient)
                self._report_lost()
                self._failed = None
            except Exception as exc:  # the log must never cost the user an answer, nor flood the output
                if not impatient:
                    store.met_lock(path, exc)
                if self._failed is None:
                    warn_not_written(path, exc, len(exchanges))
                    self._failed = (path, exc, 0)
                else:
                    failed_path, failed_exc, lost = self._failed
                    self._failed = (failed_path, failed_exc, lost + len(exchanges))
            finally:
                with self._count:
                    for exchange in exchanges:
                        self._queued[exchange.fingerprint] -= 1
                        if self._queued[exchange.fingerprint] <= 0:
                            del self._queued[exchange.fingerprint]

    def _report_lost(self) -> None:
        """At a flush: the rows that failed after the first warning of a run of failures."""
        if self._failed is not None and self._failed[2]:
            path, exc, lost = self._failed
            warn_not_written(path, exc, lost)
            self._failed = (path, exc, 0)


_writer = Writer()
if hasattr(os, "register_at_fork"):  # a forked worker (multiprocessing, Dask) starts with its own empty queue and thread
    os.register_at_fork(after_in_child=_writer.__init__)  # type: ignore[misc]


def write_later(exchange: Exchange) -> None:
    """Queue an exchange for the log (nothing when the log is off; one warning when its setting is bad)."""
    from nbllm.log.paths import log_path

    try:
        path = log_path()
    except Exception as exc:  # e.g. ``log = 1`` in the config file
        warn_not_written(None, exc)
        return
    if path is not None:
        _writer.submit(path, exchange)


def queued(fingerprint: str) -> bool:
    return _writer.queued(fingerprint)


def flush() -> None:
    """Every queued row written before this returns."""
    _writer.flush()


atexit.register(flush)
