"""A loopback Ollama server speaking the native API (PROVIDERS.md 6).

``with FakeOllamaServer() as srv:`` then ``OLLAMA_HOST=srv.url`` (or ``NBLLM_OLLAMA_BASE_URL``).

Wire facts reproduced: ``POST /api/chat`` streams NDJSON (``application/x-ndjson``), one
``{"model", "created_at", "message": {"role", "content"}, "done": false}`` object per line and a last
object with ``"done": true, "done_reason"`` and the ``*_count``/``*_duration`` figures; with
``"stream": false`` one JSON object; ``GET /api/tags`` lists the pulled models; ``GET /api/version``;
a model that is not pulled gets 404 ``{"error": "model \\"x\\" not found, try pulling it first"}``.
Faults: a line cut in the middle (then the connection drops), an ``{"error"}`` line after
some text with status 200, error statuses with ``{"error"}`` bodies, a stream that stops
before ``done``, and lines packed into one write or split across writes.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from .loopback import LoopbackHandler, LoopbackServer, RecordedRequest
from .openai_server import pieces

__all__ = ["FakeOllamaServer", "OllamaAnswer", "OllamaError"]


@dataclass
class OllamaAnswer:
    """A successful answer. ``cut_mid_line=N`` sends N lines, half of the next one, then drops
    the connection; ``error_after=N`` sends an ``{"error"}`` line after N lines; ``done=False``
    ends the body cleanly without the last object."""

    text: str | list[str] = "Hello from Ollama."
    thinking: list[str] = field(default_factory=list)
    done_reason: str = "stop"
    done: bool = True
    cut_mid_line: int | None = None
    error_after: int | None = None
    error_message: str = "an error was encountered while running the model: unexpected EOF"
    writes: Literal["line", "packed", "split"] = "line"

    def text_pieces(self) -> list[str]:
        return pieces(self.text) if isinstance(self.text, str) else list(self.text)


@dataclass
class OllamaError:
    """An ``{"error": message}`` body with an HTTP status."""

    status: int
    message: str


Behaviour = OllamaAnswer | OllamaError


class _Handler(LoopbackHandler):
    server_version = "fake-ollama/0.5.1"

    @property
    def srv(self) -> FakeOllamaServer:
        return self.owner

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        req = self.record()
        if req.path == "/api/tags":
            behaviour = self.srv.next_behaviour()
            if isinstance(behaviour, OllamaError):
                self.send_json(behaviour.status, {"error": behaviour.message})
                return
            self.send_json(200, {"models": [self.srv.model_entry(name) for name in self.srv.models]})
        elif req.path == "/api/version":
            self.send_json(200, {"version": "0.5.1"})
        elif req.path == "/":
            self.send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")
        else:
            self.send_bytes(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        req = self.record()
        if req.path != "/api/chat":
            self.send_bytes(404, b"404 page not found", "text/plain")
            return
        body = req.json
        if not isinstance(body, dict) or not body.get("model"):
            self.send_json(400, {"error": "model is required"})
            return
        model = str(body["model"])
        if self.srv.resolve(model) is None:
            self.send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        behaviour = self.srv.next_behaviour() or self.srv.echo(body)
        if isinstance(behaviour, OllamaError):
            self.send_json(behaviour.status, {"error": behaviour.message})
        elif body.get("stream", True):
            self._stream(behaviour, body)
        else:
            self.send_json(200, self.srv.final(behaviour, body, "".join(behaviour.text_pieces())))

    def _stream(self, answer: OllamaAnswer, body: dict[str, Any]) -> None:
        lines = [json.dumps(obj, ensure_ascii=False).encode() + b"\n" for obj in self.srv.objects(answer, body)]
        self.start_stream(200, "application/x-ndjson")
        if answer.cut_mid_line is not None:
            for line in lines[: answer.cut_mid_line]:
                self.write_chunk(line)
            self.write_chunk(lines[answer.cut_mid_line][: len(lines[answer.cut_mid_line]) // 2])
            self.cut()
            return
        if answer.writes == "packed":
            self.write_chunk(b"".join(lines))
        for line in lines if answer.writes != "packed" else []:
            if answer.writes == "split":
                self.write_chunk(line[: len(line) // 2])
                self.pause(0.01)
                self.write_chunk(line[len(line) // 2 :])
            else:
                self.write_chunk(line)
        self.end_chunks()


class FakeOllamaServer(LoopbackServer):
    """The server; ``models`` are the pulled models (a name without a tag means ``:latest``)."""

    handler_class = _Handler

    def __init__(self, models: list[str] | None = None) -> None:
        super().__init__()
        self.models = models if models is not None else ["qwen2.5:7b", "llama3.2:latest", "deepseek-r1:7b"]
        self._queue: deque[Behaviour] = deque()

    def enqueue(self, *behaviours: Behaviour) -> None:
        with self.lock:
            self._queue.extend(behaviours)

    def next_behaviour(self) -> Behaviour | None:
        with self.lock:
            return self._queue.popleft() if self._queue else None

    def resolve(self, model: str) -> str | None:
        name = model if ":" in model else f"{model}:latest"
        return name if name in self.models else None

    def echo(self, body: dict[str, Any]) -> OllamaAnswer:
        users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        return OllamaAnswer(text=f"echo: {users[-1].get('content', '') if users else ''}")

    def model_entry(self, name: str) -> dict[str, Any]:
        return {"name": name, "model": name, "modified_at": "2026-01-02T03:04:05.000000+08:00",
                "size": 4683087332, "digest": "845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e",
                "details": {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"],
                            "parameter_size": "7.6B", "quantization_level": "Q4_K_M"}}

    def objects(self, answer: OllamaAnswer, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The NDJSON objects of one streamed answer, in order."""
        model = str(body["model"])
        objs: list[dict[str, Any]] = [
            {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": "", "thinking": t},
             "done": False} for t in answer.thinking
        ]
        objs += [{"model": model, "created_at": _now(), "message": {"role": "assistant", "content": t},
                  "done": False} for t in answer.text_pieces()]
        if answer.error_after is not None:
            return objs[: answer.error_after] + [{"error": answer.error_message}]
        if answer.done:
            objs.append(self.final(answer, body, ""))
        return objs

    def final(self, answer: OllamaAnswer, body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []) if isinstance(m, dict))
        return {"model": str(body["model"]), "created_at": _now(), "message": {"role": "assistant", "content": text},
                "done": True, "done_reason": answer.done_reason, "total_duration": 5043500667,
                "load_duration": 5025959, "prompt_eval_count": prompt, "prompt_eval_duration": 325953000,
                "eval_count": len(answer.text_pieces()), "eval_duration": 4709213000}

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/api/chat"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
