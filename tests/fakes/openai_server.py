"""A loopback OpenAI-compatible server with Qianfan v2 / TokenHub quirks (PROVIDERS.md 0.1, 1, 9).

``with FakeOpenAIServer() as srv:`` then point a provider at ``srv.base_url``. Queue what the
next requests get with ``srv.enqueue(Answer(...), ErrorReply(...))``; with an empty queue a chat
request is answered "echo: <last user message>", streamed in small pieces. ``/embeddings``,
legacy ``/completions`` and ``/moderations`` answer as OpenAI's do (what real notebooks call).
Every request is recorded in ``srv.requests``.

Wire facts reproduced: ``data: {json}\\n\\n`` events of ``chat.completion.chunk`` objects (the
first delta carries the role), a final chunk with ``finish_reason``, a usage chunk with
``"choices": []`` when ``stream_options.include_usage`` is set, ``data: [DONE]``; ``as-`` ids,
``X-Ratelimit-Limit-Requests/Tokens`` headers, ``{"error": {code, type, message}, "id"}`` bodies,
bearer auth (a missing bearer gets 401). Faults: ``data:`` without a space, ``: keep-alive``
comments, events split across writes or packed into one, an error object inside the stream, a
JSON error body instead of a stream, a connection cut after N chunks, delays.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from .loopback import LoopbackHandler, LoopbackServer, RecordedRequest

__all__ = ["Answer", "ErrorReply", "FakeOpenAIServer", "RecordedRequest", "pieces", "qianfan_error"]

_ids = itertools.count(1)


def pieces(text: str, size: int = 4) -> list[str]:
    """Cut text into the small pieces a real server streams."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class Answer:
    """A successful answer: streamed when the request says ``stream: true``, else one JSON body.

    ``text`` is a string (cut into small pieces) or the exact list of content pieces; ``reasoning``
    pieces are sent first as ``reasoning_content`` deltas. ``cut_after=N`` drops the connection
    after N events: the reasoning/content pieces first, then the finish, usage and ``[DONE]`` events. ``writes`` is "event" (one write per event), "split" (each
    event in two writes, a pause between) or "packed" (everything in one write). ``framing``
    "close" ends the body by closing the connection instead of HTTP chunking.
    """

    text: str | list[str] = "Hello from the fake server."
    reasoning: str | list[str] = field(default_factory=list)
    finish_reason: str | None = "stop"
    usage: bool = True
    done: bool = True
    data_space: bool = True
    delay: float = 0.0
    cut_after: int | None = None
    chunk_delay: float = 0.0
    keepalive: int = 0
    writes: Literal["event", "split", "packed"] = "event"
    framing: Literal["chunked", "close"] = "chunked"
    error_event: dict[str, Any] | None = None
    newline: str = "\n"
    model: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def text_pieces(self) -> list[str]:
        return pieces(self.text) if isinstance(self.text, str) else list(self.text)

    def reasoning_pieces(self) -> list[str]:
        if isinstance(self.reasoning, str):
            return pieces(self.reasoning) if self.reasoning else []
        return list(self.reasoning)


@dataclass
class ErrorReply:
    """A non-streamed reply, usually an error: dict bodies go out as JSON, str/bytes as given."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0


def qianfan_error(status: int, code: str, message: str, type: str = "invalid_request_error",  # noqa: A002
                  headers: dict[str, str] | None = None) -> ErrorReply:
    """An error in Qianfan v2's shape: ``{"error": {code, message, type}, "id": "as-..."}``."""
    body = {"error": {"code": code, "message": message, "type": type}, "id": f"as-{next(_ids):010d}"}
    return ErrorReply(status, body, headers or {})


class _Handler(LoopbackHandler):
    server_version = "fake-qianfan/1.0"

    @property
    def srv(self) -> FakeOpenAIServer:
        return self.owner

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        req = self.record()
        if not self._authorised(req):
            return
        if not req.path.endswith("/models"):
            self.send_json(404, {"error": {"code": "not_found", "message": f"no route {req.path}",
                                           "type": "invalid_request_error"}})
            return
        behaviour = self.srv.next_behaviour()
        if isinstance(behaviour, ErrorReply):
            self._send_reply(behaviour)
            return
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.srv.models]
        self.send_json(200, {"object": "list", "data": data}, self.srv.common_headers())

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        req = self.record()
        if not self._authorised(req):
            return
        extra = None if req.path.endswith("/chat/completions") else \
            next((name for name in _EXTRA_ROUTES if req.path.endswith(name)), None)
        if not req.path.endswith("/chat/completions") and extra is None:
            self.send_json(404, {"error": {"code": "not_found", "message": f"no route {req.path}",
                                           "type": "invalid_request_error"}})
            return
        body = req.json
        if not isinstance(body, dict):
            self._send_reply(qianfan_error(400, "malformed_json", "Invalid Argument"))
            return
        if extra is not None:
            behaviour = self.srv.next_behaviour()
            if isinstance(behaviour, ErrorReply):
                self._send_reply(behaviour)
            else:
                _EXTRA_ROUTES[extra](self, body, behaviour)
            return
        behaviour = self.srv.next_behaviour() or self.srv.echo(body)
        if isinstance(behaviour, ErrorReply):
            self._send_reply(behaviour)
        elif body.get("stream"):
            self._stream(behaviour, body)
        else:
            self._complete(behaviour, body)

    # -- auth ---------------------------------------------------------------------------------
    def _authorised(self, req: RecordedRequest) -> bool:
        if not self.srv.require_auth:
            return True
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token:
            self._send_reply(qianfan_error(401, "invalid_api_key", "Authorization header is missing a Bearer token"))
            return False
        if self.srv.api_key is not None and token != self.srv.api_key:
            # Some servers echo the key they got; the client must redact it.
            self._send_reply(qianfan_error(401, "invalid_api_key", f"Incorrect API key provided: {token}"))
            return False
        return True

    # -- replies ------------------------------------------------------------------------------
    def _send_reply(self, reply: ErrorReply) -> None:
        self.pause(reply.delay)
        headers = {**self.srv.common_headers(), **reply.headers}
        if isinstance(reply.body, (dict, list)):
            self.send_json(reply.status, reply.body, headers)
            return
        data = reply.body if isinstance(reply.body, bytes) else str(reply.body or "").encode()
        self.send_bytes(reply.status, data, reply.content_type or "text/plain; charset=utf-8", headers)

    def _complete(self, answer: Answer, body: dict[str, Any]) -> None:
        self.pause(answer.delay)
        text = "".join(answer.text_pieces())
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if answer.reasoning_pieces():
            message["reasoning_content"] = "".join(answer.reasoning_pieces())
        payload = {
            "id": self.srv.new_id(), "object": "chat.completion", "created": int(time.time()),
            "model": answer.model or body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason,
                         "flag": 0, "ban_round": -1}],
            "usage": _usage(body, len(answer.text_pieces())),
        }
        self.send_json(200, payload, {**self.srv.common_headers(), **answer.headers})

    # -- the other OpenAI endpoints real notebooks call (answered whatever the queue holds) ----
    def _embeddings(self, body: dict[str, Any], _answer: Answer | None) -> None:
        """``/embeddings``: one small deterministic vector per input (``dimensions`` honoured)."""
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        size = body.get("dimensions") if isinstance(body.get("dimensions"), int) else self.srv.embedding_size
        data = [{"object": "embedding", "index": i, "embedding": _vector(str(item), size)}
                for i, item in enumerate(items)]
        tokens = sum(len(str(item).split()) for item in items)
        self.send_json(200, {"object": "list", "data": data, "model": body.get("model", ""),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, self.srv.common_headers())

    def _completions(self, body: dict[str, Any], answer: Answer | None) -> None:
        """Legacy ``/completions`` (a ``prompt``, answers in ``choices[].text``), streamed or not."""
        prompt = body.get("prompt", "")
        answer = answer or Answer(text=f"echo: {prompt if isinstance(prompt, str) else prompt[-1]}")
        base = {"id": self.srv.new_id(), "object": "text_completion", "created": int(time.time()),
                "model": body.get("model", "")}
        text = answer.text_pieces()
        if not body.get("stream"):
            choice = {"index": 0, "text": "".join(text), "logprobs": None, "finish_reason": answer.finish_reason}
            usage = {"prompt_tokens": len(str(prompt).split()), "completion_tokens": len(text),
                     "total_tokens": len(str(prompt).split()) + len(text)}
            self.send_json(200, {**base, "choices": [choice], "usage": usage}, self.srv.common_headers())
            return
        events: list[Any] = [{**base, "choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": None}]}
                             for t in text]
        events += [{**base, "choices": [{"index": 0, "text": "", "logprobs": None,
                                         "finish_reason": answer.finish_reason}]}, "[DONE]"]
        self.start_stream(200, "text/event-stream; charset=utf-8", self.srv.common_headers())
        for event in events:
            self.write_chunk(_frame(event, answer))
        self.end_chunks()

    def _moderations(self, body: dict[str, Any], _answer: Answer | None) -> None:
        """``/moderations``: nothing flagged, every category false."""
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        names = ("hate", "harassment", "self-harm", "sexual", "violence")
        result = {"flagged": False, "categories": dict.fromkeys(names, False),
                  "category_scores": dict.fromkeys(names, 0.0)}
        self.send_json(200, {"id": f"modr-{next(_ids)}", "model": body.get("model") or "omni-moderation-latest",
                             "results": [result for _ in items]}, self.srv.common_headers())

    def _stream(self, answer: Answer, body: dict[str, Any]) -> None:
        self.pause(answer.delay)
        head, tail = _events(answer, body, self.srv.new_id())
        events = head + tail if answer.cut_after is None else (head + tail)[: answer.cut_after]
        frames = [_frame(e, answer) for e in events]
        if answer.keepalive:
            comment = f": keep-alive{answer.newline}{answer.newline}".encode()
            frames = [comment * answer.keepalive] + [f for frame in frames for f in (comment, frame)][1:]
        self.start_stream(200, "text/event-stream; charset=utf-8", {**self.srv.common_headers(), **answer.headers},
                          chunked=answer.framing == "chunked")
        self._write_frames(frames, answer)
        if answer.cut_after is not None:
            self.cut()
        else:
            self.end_chunks()

    def _write_frames(self, frames: list[bytes], answer: Answer) -> None:
        if answer.writes == "packed":
            self.write_chunk(b"".join(frames))
            return
        for frame in frames:
            if answer.writes == "split":
                half = max(1, len(frame) // 2)
                self.write_chunk(frame[:half])
                self.pause(answer.chunk_delay or 0.01)
                self.write_chunk(frame[half:])
            else:
                self.write_chunk(frame)
            self.pause(answer.chunk_delay)


_EXTRA_ROUTES = {"/embeddings": _Handler._embeddings, "/completions": _Handler._completions,
                 "/moderations": _Handler._moderations}


def _vector(text: str, size: int) -> list[float]:
    """A unit-free but stable vector for a text (same text, same vector)."""
    seed = sum(map(ord, text)) or 1
    return [((seed * (i + 7)) % 97) / 97.0 for i in range(size)]


def _usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []) if isinstance(m, dict))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _events(answer: Answer, body: dict[str, Any], cid: str) -> tuple[list[Any], list[Any]]:
    """The piece events and the tail: finish, usage, [DONE] (or an error event)."""
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": answer.model or body.get("model", "")}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None}

    deltas = [{"content": None, "reasoning_content": r} for r in answer.reasoning_pieces()]
    deltas += [{"content": t} for t in answer.text_pieces()]
    deltas[0] = {"role": "assistant", **deltas[0]}
    head: list[Any] = [chunk(d) for d in deltas]
    if answer.error_event is not None:
        return head, [{"error": answer.error_event}]
    tail: list[Any] = []
    if answer.finish_reason is not None:
        tail.append(chunk({}, answer.finish_reason))
    if answer.finish_reason is not None and answer.usage and (body.get("stream_options") or {}).get("include_usage"):
        tail.append({**base, "choices": [], "usage": _usage(body, len(answer.text_pieces()))})
    if answer.done:
        tail.append("[DONE]")
    return head, tail


def _frame(event: Any, answer: Answer) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
    prefix = "data: " if answer.data_space else "data:"
    return f"{prefix}{data}{answer.newline}{answer.newline}".encode()


class FakeOpenAIServer(LoopbackServer):
    """The server; ``api_key`` set means only that bearer is accepted (others get 401)."""

    handler_class = _Handler
    prefix = "/v1"

    def __init__(self, *, api_key: str | None = None, require_auth: bool = True,
                 models: list[str] | None = None, id_prefix: str = "as-", ratelimit_headers: bool = True) -> None:
        super().__init__()
        self.api_key = api_key
        self.require_auth = require_auth
        self.models = models if models is not None else ["ernie-4.0-turbo-8k", "ernie-speed-128k", "deepseek-r1"]
        self.id_prefix = id_prefix
        self.ratelimit_headers = ratelimit_headers
        self.embedding_size = 8
        self._queue: deque[Answer | ErrorReply] = deque()

    def enqueue(self, *behaviours: Answer | ErrorReply) -> None:
        """What the next requests get, in order; afterwards the echo answer again."""
        with self.lock:
            self._queue.extend(behaviours)

    def next_behaviour(self) -> Answer | ErrorReply | None:
        with self.lock:
            return self._queue.popleft() if self._queue else None

    @property
    def pending(self) -> int:
        with self.lock:
            return len(self._queue)

    def echo(self, body: dict[str, Any]) -> Answer:
        users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        last = str(users[-1].get("content", "")) if users else ""
        return Answer(text=f"echo: {last}")

    def new_id(self) -> str:
        return f"{self.id_prefix}{next(_ids):010d}"

    def common_headers(self) -> dict[str, str]:
        headers = {"X-Baidu-Request-Id": self.new_id()}
        if self.ratelimit_headers:
            headers |= {"X-Ratelimit-Limit-Requests": "300", "X-Ratelimit-Limit-Tokens": "300000"}
        return headers

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]
