"""A loopback server that answers each request with a script of raw writes: for faults no real
provider should send but some do (a stream of keep-alives only, a connection held open after the
end marker, malformed JSON, bad gzip, redirects, huge error messages, random bytes).

``with ScriptedServer() as srv: srv.enqueue(Script(...))``; ``srv.base_url`` ends in ``/v1``. A
request with an empty queue gets 404. Every request is recorded in ``srv.requests``.

A ``Script`` sends a status line and headers, then its ``steps`` in order: ``bytes`` are written
(as one HTTP chunk when chunked), a ``float`` is a pause in seconds. After the steps the server
can ``hold`` the connection open for a while, optionally sending ``: keep-alive`` comments every
``keepalive`` seconds, before it ends the body (or drops the connection with ``end="cut"``).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from .loopback import LoopbackHandler, LoopbackServer

__all__ = ["Script", "ScriptedServer", "chunk", "sse", "sse_script"]

COMMENT = b": keep-alive\n\n"


@dataclass
class Script:
    status: int = 200
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)
    steps: list[bytes | float] = field(default_factory=list)
    framing: Literal["chunked", "length", "close"] = "chunked"
    hold: float = 0.0  # seconds the connection stays open after the steps
    keepalive: float | None = None  # while holding, a comment this often
    end: Literal["end", "cut"] = "end"


def sse(*events: Any) -> bytes:
    """``data:`` frames for JSON-able events; a str is sent as it is (``"[DONE]"``)."""
    out = b""
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
        out += f"data: {data}\n\n".encode()
    return out


def chunk(text: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    """One chat.completion.chunk with a content delta (and a finish reason)."""
    if text is not None:
        delta["content"] = text
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse_script(*events: Any, **kw: Any) -> Script:
    """A stream of events, one write each."""
    return Script(steps=[sse(e) for e in events], **kw)


class _Handler(LoopbackHandler):
    server_version = "fake-scripted/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._answer()

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._answer()

    def _answer(self) -> None:
        self.record()
        script = self.owner.next_script()
        if script is None:
            self.send_json(404, {"error": {"message": "no script queued"}})
            return
        if script.framing == "length":
            body = b"".join(s for s in script.steps if isinstance(s, bytes))
            self.send_bytes(script.status, body, script.content_type, script.headers)
            return
        self.send_response(script.status)
        self.send_header("Content-Type", script.content_type)
        for name, value in script.headers.items():
            self.send_header(name, value)
        self.start_body(script)
        for step in script.steps:
            if isinstance(step, bytes):
                self.write_chunk(step)
            else:
                self.pause(step)
        self._hold(script)
        if script.end == "cut":
            self.cut()
        else:
            self.end_chunks()

    def start_body(self, script: Script) -> None:
        if script.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        self._chunked = script.framing == "chunked"

    def _hold(self, script: Script) -> None:
        until = time.monotonic() + script.hold
        while not self.owner.stopping.is_set() and (left := until - time.monotonic()) > 0:
            if script.keepalive:
                self.pause(min(script.keepalive, left))
                if time.monotonic() < until:
                    try:
                        self.write_chunk(COMMENT)
                    except OSError:  # the client hung up: the test is over
                        return
            else:
                self.pause(left)


class ScriptedServer(LoopbackServer):
    handler_class = _Handler
    prefix = "/v1"

    def __init__(self) -> None:
        super().__init__()
        self._scripts: deque[Script] = deque()

    def enqueue(self, *scripts: Script) -> ScriptedServer:
        with self.lock:
            self._scripts.extend(scripts)
        return self

    def next_script(self) -> Script | None:
        with self.lock:
            return self._scripts.popleft() if self._scripts else None
