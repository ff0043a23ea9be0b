"""A deadline on an open HTTP response: when it passes, the connection is cut.

httpx's read timeout restarts with every byte, so a server that sends ``: keep-alive`` comments
(or holds the connection open after the end marker while trickling bytes) could keep a reader
waiting forever. A ``Deadline`` is moved on only by real progress (``progress()``: text arrived)
and can be shortened (``limit()``: a short drain after the end marker). One watcher thread, shared
by every open response and started on first use, waits for the earliest deadline; when one
passes it shuts that socket down, the blocked read returns, and the reader, seeing ``cut``,
reports a timeout instead of a broken connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any


class Deadline:
    """Cut ``response``'s connection once ``seconds`` pass without ``progress()``."""

    def __init__(self, response: Any, seconds: float) -> None:
        self.seconds = seconds
        self.cut = False  # the deadline passed and the connection was shut down
        self._until = time.monotonic() + seconds
        self._sock = _socket_of(response)
        if self._sock is not None:
            _watcher.add(self)

    @property
    def expired(self) -> bool:
        return self.cut or time.monotonic() >= self._until

    def progress(self) -> None:
        """Something worth waiting for arrived: the silence allowed starts again."""
        self._until = time.monotonic() + self.seconds  # later, never earlier: the watcher need not wake

    def limit(self, seconds: float) -> None:
        """Allow at most ``seconds`` more, whatever arrives (e.g. after the end marker)."""
        self.seconds = min(self.seconds, seconds)
        self._until = min(self._until, time.monotonic() + seconds)
        if self._sock is not None:
            _watcher.wake()

    def stop(self) -> None:
        """No cut from now on (call it before the connection goes back to the pool)."""
        if self._sock is not None:
            _watcher.remove(self)

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _expire(self) -> None:
        self.cut = True
        _shut(self._sock)  # type: ignore[arg-type]


class _Watcher:
    """The one thread that waits for the earliest deadline of all open responses."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._active: set[Deadline] = set()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._wake:
            self._active.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nbllm deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def remove(self, deadline: Deadline) -> None:
        with self._wake:  # after this, the watcher cannot cut this response any more
            self._active.discard(deadline)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for deadline in [d for d in self._active if d._until <= now]:
                    self._active.discard(deadline)
                    deadline._expire()
                earliest = min((d._until for d in self._active), default=None)
                self._wake.wait(None if earliest is None else max(earliest - now, 0.001))


_watcher = _Watcher()


def cut_connection(response: Any) -> None:
    """Shut ``response``'s connection down, from any thread: a read blocked on it returns at once.

    ``Response.close()`` from another thread uses it to stop a stream being read elsewhere.
    """
    sock = _socket_of(response)
    if sock is not None:
        _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the reader: nothing left to cut
        sock.shutdown(socket.SHUT_RDWR)


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under an httpx response (HTTP/1.1 over httpcore), or None (mock transports)."""
    stream = getattr(response, "extensions", {}).get("network_stream")
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # a transport without that extra info
        return None
    return sock if isinstance(sock, socket.socket) else None
