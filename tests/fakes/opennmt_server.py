"""A loopback OpenNMT-py REST translation server (PROVIDERS.md 7), ``url_root`` ``/translator``.

``with FakeOpenNMTServer() as srv:`` then ``NBLLM_OPENNMT_BASE_URL=srv.base_url``.

Wire facts reproduced: ``GET /translator/models`` lists ``{"model_id", "opt", "models", "loaded",
"timeout"}``; ``GET /translator/health``; ``POST /translator/translate`` takes a JSON array of
``{"src", "id"}`` (the model is ``inputs[0]["id"]``) and answers a list of ``n_best`` lists, the
inner list in input order, each ``{"src", "tgt", "n_best", "pred_score"}``; whitespace around
``src`` is kept in ``tgt``; a model failure is ``{"error": "...", "status": "error"}`` with HTTP 200;
an unknown model id is Flask's HTML 500 page. The "translation" is deterministic so tests can
check order: every word is looked up in a tiny English-to-German table, else upper-cased.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from .loopback import LoopbackHandler, LoopbackServer, RecordedRequest

__all__ = ["FakeOpenNMTServer", "ModelError", "translate_text"]

WORDS = {"hello": "hallo", "world": "welt", "good": "gut", "morning": "morgen", "the": "die", "cat": "katze",
         "sleeps": "schläft", "i": "ich", "am": "bin", "here": "hier"}

_HTML_500 = (b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error"
             b"</h1>\n<p>The server encountered an internal error and was unable to complete your request.</p>\n")


def translate_text(src: str) -> str:
    """The fake model: word by word, whitespace around the text kept."""
    core = src.strip()
    words = [WORDS.get(w.lower(), w.upper()) for w in core.split()]
    lead, trail = src[: len(src) - len(src.lstrip())], src[len(src.rstrip()) :]
    return lead + " ".join(words) + trail


@dataclass
class ModelError:
    """The next translate request fails the way a ServerModelError does: HTTP 200, status error."""

    message: str = "Model 100 is not loaded"


class _Handler(LoopbackHandler):
    server_version = "waitress"

    @property
    def srv(self) -> FakeOpenNMTServer:
        return self.owner

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        req = self.record()
        if req.path == "/translator/models":
            self.send_json(200, [self.srv.model_entry(mid) for mid in self.srv.models])
        elif req.path == "/translator/health":
            self.send_json(200, {"status": "ok"})
        else:
            self.send_bytes(404, b"<!doctype html><title>404 Not Found</title>", "text/html; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        req = self.record()
        if req.path != "/translator/translate":
            self.send_bytes(404, b"<!doctype html><title>404 Not Found</title>", "text/html; charset=utf-8")
            return
        inputs = req.json
        if not isinstance(inputs, list) or not inputs:
            self.send_bytes(500, _HTML_500, "text/html; charset=utf-8")
            return
        with self.srv.lock:
            self.srv.batch_sizes.append(len(inputs))
        model_id = inputs[0].get("id", 0)
        if model_id not in self.srv.models:
            self.send_bytes(500, _HTML_500, "text/html; charset=utf-8")  # the KeyError inside the error handler
            return
        behaviour = self.srv.next_behaviour()
        if isinstance(behaviour, ModelError):
            self.send_json(200, {"error": behaviour.message, "status": "error"})
            return
        self.pause(self.srv.delay)
        self.send_json(200, self.srv.translations(inputs, self.srv.models[model_id]))


class FakeOpenNMTServer(LoopbackServer):
    """The server; ``models`` maps model id to its n_best."""

    handler_class = _Handler
    prefix = "/translator"

    def __init__(self, models: dict[int, int] | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.models = models if models is not None else {100: 1, 101: 2}
        self.delay = delay
        self.batch_sizes: list[int] = []
        self._queue: deque[ModelError] = deque()

    def enqueue(self, *behaviours: ModelError) -> None:
        with self.lock:
            self._queue.extend(behaviours)

    def next_behaviour(self) -> ModelError | None:
        with self.lock:
            return self._queue.popleft() if self._queue else None

    def model_entry(self, model_id: int) -> dict[str, Any]:
        return {"model_id": model_id, "opt": {"beam_size": 5, "n_best": self.models[model_id], "gpu": -1},
                "models": [f"model_{model_id}.pt"], "loaded": True, "timeout": 600,
                "tokenizer": {"type": "sentencepiece", "model": "wmtenfr.model"}}

    def translations(self, inputs: list[dict[str, Any]], n_best: int) -> list[list[dict[str, Any]]]:
        out: list[list[dict[str, Any]]] = [[] for _ in range(n_best)]
        for item in inputs:
            src = str(item.get("src", ""))
            for rank in range(n_best):
                tgt = translate_text(src) if rank == 0 else f"{translate_text(src)} (alt {rank})"
                score = 0.0 if not src.strip() else -0.5 - rank
                out[rank].append({"src": src, "tgt": tgt, "n_best": n_best, "pred_score": score})
        return out

    @property
    def translate_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/translator/translate"]

    def sources(self) -> list[str]:
        """Every src sent so far, in order."""
        return [item["src"] for r in self.translate_requests for item in json.loads(r.body)]
