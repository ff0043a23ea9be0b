"""Run any ``http.server`` handler on 127.0.0.1, port 0, in a daemon thread.

Every fake provider builds on this: ``with LoopbackServer(Handler) as srv: srv.base_url``.
Handlers reach the owning object as ``self.server.owner`` and write streamed bodies with
``write_chunk``/``end_chunks`` (HTTP/1.1 chunked) or plain ``wfile.write`` after
``Connection: close`` (close-delimited).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

S = TypeVar("S", bound="LoopbackServer")


@dataclass
class RecordedRequest:
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    query: dict[str, list[str]] = field(default_factory=dict)
    client_port: int = 0  # one port per TCP connection: equal ports mean a reused connection

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 overflows when a batch opens 16 connections at once
    block_on_close = False
    owner: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (timeouts, cut streams) is part of the tests, not a failure.
        pass


class LoopbackHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1, quiet, records each request on the owner."""

    protocol_version = "HTTP/1.1"
    # Each SSE event is its own small send; with Nagle on, every request waited ~40 ms on ACKs.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner

    def record(self) -> RecordedRequest:
        """Read the body and append the request to ``owner.requests``."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        req = RecordedRequest(
            method=self.command,
            path=parts.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            query=parse_qs(parts.query),
            client_port=self.client_address[1],
        )
        with self.owner.lock:
            self.owner.requests.append(req)
        return req

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_bytes(status, data, "application/json", headers)

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_stream(self, status: int, content_type: str, headers: dict[str, str] | None = None,
                     chunked: bool = True) -> None:
        """Send the headers of a streamed body: chunked, or ended by closing the connection."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        self._chunked = chunked

    def write_chunk(self, data: bytes) -> None:
        """One write to the socket (one HTTP chunk when chunked)."""
        if not data:
            return
        if getattr(self, "_chunked", False):
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)
        self.wfile.flush()

    def end_chunks(self) -> None:
        if getattr(self, "_chunked", False):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def cut(self) -> None:
        """Drop the connection now, without finishing the body."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self.owner.stopping.wait(seconds)


class LoopbackServer:
    """A started-on-demand loopback HTTP server; subclass it or pass a handler class."""

    handler_class: type[LoopbackHandler] = LoopbackHandler
    prefix = ""  # path the base_url ends with, e.g. "/v1"

    def __init__(self, handler_class: type[LoopbackHandler] | None = None) -> None:
        self.handler_class = handler_class or self.handler_class
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.prefix

    def start(self: S) -> S:
        self._server = _Server(("127.0.0.1", 0), self.handler_class)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(handler_class: type[LoopbackHandler]) -> LoopbackServer:
    """Start a plain loopback server for a handler class (stop it with ``.stop()``)."""
    return LoopbackServer(handler_class).start()


def free_port() -> int:
    """A port nothing listens on (for connection-refused tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
