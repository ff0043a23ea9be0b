"""A deadline on an open HTTP response: when it passes, the connection is cut.

httpx's read timeout restarts with every byte, so a server that sends ``: keep-alive`` comments
(or holds the connection open after the end marker while trickling bytes) could keep a reader
waiting forever. A ``Deadline`` is moved on only by real progress (``progress()``: text arrived)
and can be shortened (``limit()``: a short drain after the end marker). One small thread per
response waits for it; when it passes it shuts the socket down, the blocked read returns, and
the reader, seeing ``expired``, reports a timeout instead of a broken connection.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class Deadline:
    """Cut ``response``'s connection once ``seconds`` pass without ``progress()``."""

    def __init__(self, response: Any, seconds: float) -> None:
        self.seconds = seconds
        self._sock = _socket_of(response)
        self._until = time.monotonic() + seconds
        self._wake = threading.Condition()
        self._stopped = False
        self.cut = False  # the deadline passed and the connection was shut down
        if self._sock is not None:
            threading.Thread(target=self._watch, name="nbllm deadline", daemon=True).start()

    @property
    def expired(self) -> bool:
        return self.cut or time.monotonic() >= self._until

    def progress(self) -> None:
        """Something worth waiting for arrived: the silence allowed starts again."""
        self._until = time.monotonic() + self.seconds  # the watcher reads it when it wakes

    def limit(self, seconds: float) -> None:
        """Allow at most ``seconds`` more, whatever arrives (e.g. after the end marker)."""
        with self._wake:
            self.seconds = min(self.seconds, seconds)
            self._until = min(self._until, time.monotonic() + seconds)
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        with self._wake:
            while not self._stopped:
                left = self._until - time.monotonic()
                if left <= 0:
                    self.cut = True
                    _shutdown(self._sock)
                    return
                self._wake.wait(left)


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under an httpx response (HTTP/1.1 over httpcore), or None (mock transports)."""
    stream = getattr(response, "extensions", {}).get("network_stream")
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # a transport without that extra info
        return None
    return sock if isinstance(sock, socket.socket) else None


def _shutdown(sock: socket.socket | None) -> None:
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the reader: nothing left to cut
        pass
