"""A loopback Baidu wenxinworkshop (ERNIE v1) server, OAuth token endpoint included (PROVIDERS.md 2).

``with FakeErnieServer() as srv:`` then set ``NBLLM_ERNIE_V1_BASE_URL=srv.base_url`` and the key
``QIANFAN_AK=srv.api_key``, ``QIANFAN_SK=srv.secret_key``.

Wire facts reproduced: ``POST /oauth/2.0/token?grant_type=client_credentials&client_id=..&client_secret=..``
answers ``{"access_token": "24.…", "expires_in": …}`` (a bad client gets ``{"error": "invalid_client"}``);
chat at ``POST /rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint}?access_token=…``; streamed
``data: {…, "sentence_id", "is_end", "result"}`` events with no ``[DONE]``; errors as
``{"error_code", "error_msg"}`` with HTTP 200; an unknown token gets 110, an expired one 111; an
even number of messages gets 336003. Faults: ``expire_tokens()``, queued ``ErnieError`` bodies
(rate limits 18/336501/336502, ...), a stream cut before ``is_end``, a content-safety verdict.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .loopback import LoopbackHandler, LoopbackServer, RecordedRequest
from .openai_server import pieces

__all__ = ["ErnieAnswer", "ErnieError", "FakeErnieServer", "CHAT_PREFIX"]

CHAT_PREFIX = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/"
_ids = itertools.count(1)


@dataclass
class ErnieAnswer:
    """A successful answer; ``cut_after=N`` drops the connection after N events, ``is_end=False``
    ends the stream cleanly but without its last chunk's flag."""

    text: str | list[str] = "你好，我是文心一言。"
    finish_reason: str = "normal"
    usage: bool = True
    cut_after: int | None = None
    chunk_delay: float = 0.0
    need_clear_history: bool = False
    data_space: bool = True
    is_end: bool = True

    def text_pieces(self) -> list[str]:
        return pieces(self.text) if isinstance(self.text, str) else list(self.text)


@dataclass
class ErnieError:
    """An ``{"error_code", "error_msg"}`` body, sent with HTTP 200 as the real service does."""

    code: int
    message: str = "error"
    status: int = 200
    extra: dict[str, Any] = field(default_factory=dict)


Behaviour = ErnieAnswer | ErnieError


class _Handler(LoopbackHandler):
    server_version = "fake-wenxinworkshop/1.0"

    @property
    def srv(self) -> FakeErnieServer:
        return self.owner

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        req = self.record()
        if req.path == "/oauth/2.0/token":
            self._token(req)
        elif req.path.startswith(CHAT_PREFIX):
            self._chat(req)
        else:
            self.send_json(404, {"error_code": 3, "error_msg": "Unsupported openapi method"})

    # -- OAuth ----------------------------------------------------------------------------
    def _token(self, req: RecordedRequest) -> None:
        query = {k: v[0] for k, v in req.query.items()}
        self.pause(self.srv.token_delay)
        if query.get("grant_type") != "client_credentials" or query.get("client_id") != self.srv.api_key:
            self.send_json(401, {"error": "invalid_client", "error_description": "unknown client id"})
            return
        if query.get("client_secret") != self.srv.secret_key:
            self.send_json(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
            return
        token = self.srv.issue_token()
        self.send_json(200, {"access_token": token, "expires_in": self.srv.expires_in,
                             "refresh_token": "25." + secrets.token_hex(16), "scope": "public ai_custom_qianfan",
                             "session_key": secrets.token_hex(8), "session_secret": secrets.token_hex(8)})

    # -- chat -----------------------------------------------------------------------------
    def _chat(self, req: RecordedRequest) -> None:
        token = (req.query.get("access_token") or [""])[0]
        state = self.srv.token_state(token)
        if state != "valid":
            code, msg = (111, "Access token expired") if state == "expired" else (110, "Access token invalid or no longer valid")
            self.send_json(200, {"error_code": code, "error_msg": msg})
            return
        body = req.json
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self.send_json(200, {"error_code": 336002, "error_msg": "Invalid JSON"})
            return
        if len(body["messages"]) % 2 == 0:
            self.send_json(200, {"error_code": 336003, "error_msg": "the length of messages must be an odd number"})
            return
        behaviour = self.srv.next_behaviour() or self.srv.echo(body)
        if isinstance(behaviour, ErnieError):
            self.send_json(behaviour.status, {"error_code": behaviour.code, "error_msg": behaviour.message,
                                              "id": self.srv.new_id(), **behaviour.extra})
        elif body.get("stream"):
            self._stream(behaviour, body)
        else:
            self._complete(behaviour, body)

    def _complete(self, answer: ErnieAnswer, body: dict[str, Any]) -> None:
        payload = self.srv.base_payload(answer, body) | {
            "object": "chat.completion", "result": "".join(answer.text_pieces()),
            "is_truncated": False, "finish_reason": answer.finish_reason,
        }
        self.send_json(200, payload)

    def _stream(self, answer: ErnieAnswer, body: dict[str, Any]) -> None:
        texts = answer.text_pieces()
        base = self.srv.base_payload(answer, body) | {"object": "chat.completion"}
        events = [base | {"sentence_id": i, "is_end": answer.is_end and i == len(texts) - 1, "result": t, "is_truncated": False,
                          "finish_reason": answer.finish_reason if i == len(texts) - 1 else "normal"}
                  for i, t in enumerate(texts)]
        if answer.cut_after is not None:
            events = events[: answer.cut_after]
        self.start_stream(200, "text/event-stream")
        prefix = "data: " if answer.data_space else "data:"
        for event in events:
            self.write_chunk(f"{prefix}{json.dumps(event, ensure_ascii=False)}\n\n".encode())
            self.pause(answer.chunk_delay)
        if answer.cut_after is not None:
            self.cut()
        else:
            self.end_chunks()


class FakeErnieServer(LoopbackServer):
    """The server; its API Key / Secret Key pair is random unless given."""

    handler_class = _Handler

    def __init__(self, *, api_key: str | None = None, secret_key: str | None = None,
                 expires_in: int = 2592000, token_delay: float = 0.0) -> None:
        super().__init__()
        self.api_key = api_key or "ak" + secrets.token_hex(12)
        self.secret_key = secret_key or "sk" + secrets.token_hex(16)
        self.expires_in = expires_in
        self.token_delay = token_delay
        self.tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self._queue: deque[Behaviour] = deque()

    @property
    def key(self) -> str:
        """The credential as nbllm keeps it: "API_KEY:SECRET_KEY"."""
        return f"{self.api_key}:{self.secret_key}"

    def issue_token(self) -> str:
        token = f"24.{secrets.token_hex(16)}.{self.expires_in}.{int(time.time())}.282335-{next(_ids)}"
        with self.lock:
            self.tokens[token] = time.time() + self.expires_in
        return token

    def token_state(self, token: str) -> str:
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if time.time() < expiry else "expired"

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 111 (expired)."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def enqueue(self, *behaviours: Behaviour) -> None:
        with self.lock:
            self._queue.extend(behaviours)

    def next_behaviour(self) -> Behaviour | None:
        with self.lock:
            return self._queue.popleft() if self._queue else None

    def echo(self, body: dict[str, Any]) -> ErnieAnswer:
        last = str(body["messages"][-1].get("content", "")) if body["messages"] else ""
        return ErnieAnswer(text=f"echo: {last}")

    def new_id(self) -> str:
        return f"as-{next(_ids):010d}"

    def base_payload(self, answer: ErnieAnswer, body: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": self.new_id(), "created": int(time.time()),
                                   "need_clear_history": answer.need_clear_history}
        if answer.need_clear_history:
            payload["ban_round"] = -1
        if answer.usage:
            prompt = sum(len(str(m.get("content", ""))) for m in body["messages"]) + len(str(body.get("system", "")))
            completion = len("".join(answer.text_pieces()))
            payload["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                "total_tokens": prompt + completion}
        return payload

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/oauth/2.0/token"]

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(CHAT_PREFIX)]
