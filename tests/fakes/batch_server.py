"""A loopback server for whole-table work: the OpenAI-compatible fake plus embeddings and load figures.

``FakeBatchServer`` answers chat exactly as ``FakeOpenAIServer`` does (queue, echo, faults) and adds:

- ``answers``: a fixed answer or error per prompt text (the last user message), so a test can make
  one row of a table fail whatever order the rows arrive in;
- ``delay``: seconds every echo answer waits before its first byte (a provider's latency);
- ``in_flight``/``peak``: requests being answered now and at most, to check concurrency bounds,
  and ``arrivals``, when each POST came in (to check a pause or a pace held, never a speed);
- three embeddings dialects with a per-request input limit (``max_inputs``; more gets a 400 in
  the provider's shape): OpenAI's ``POST /v1/embeddings`` (``{"model", "input": [...]}`` ->
  ``{"data": [{"index", "embedding"}], "usage"}``, sent back in reverse order so the client must
  sort by ``index``), Ollama's ``POST /api/embed`` (``{"model", "input"}`` -> ``{"embeddings":
  [[...]]}``) and Hugging Face's ``POST /hf-inference/models/<model>/pipeline/feature-extraction``
  (``{"inputs": [...]}`` -> a JSON list of vectors).

Vectors are a function of the text (``vector_of``), so a test can check each text got its own.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .openai_server import Answer, ErrorReply, FakeOpenAIServer, _Handler, qianfan_error

__all__ = ["Answer", "ErrorReply", "FakeBatchServer", "vector_of"]

HF_PREFIX = "/hf-inference/models/"
HF_SUFFIX = "/pipeline/feature-extraction"


def vector_of(text: str) -> list[float]:
    """The fake embedding of a text: its length, a checksum and a constant."""
    return [float(len(text)), float(sum(map(ord, text)) % 997), 1.0]


class _BatchHandler(_Handler):
    server_version = "fake-batch/1.0"

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        srv: FakeBatchServer = self.owner
        with srv.lock:
            srv.arrivals.append(time.monotonic())
            srv.in_flight += 1
            srv.peak = max(srv.peak, srv.in_flight)
        try:
            path = self.path.split("?", 1)[0]
            if path.endswith("/embeddings") or path.endswith("/api/embed") or path.endswith(HF_SUFFIX):
                self._embed(path)
            else:
                super().do_POST()
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _embed(self, path: str) -> None:
        req = self.record()
        if path.endswith("/embeddings") and not self._authorised(req):
            return
        behaviour = self.owner.next_behaviour()
        if isinstance(behaviour, ErrorReply):
            self._send_reply(behaviour)
            return
        body = req.json if isinstance(req.json, dict) else {}
        texts = body.get("inputs") if path.endswith(HF_SUFFIX) else body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts:
            self._send_reply(qianfan_error(400, "invalid_input", "input must be a string or a list of strings"))
            return
        limit = self.owner.max_inputs
        if limit is not None and len(texts) > limit:
            self._send_reply(qianfan_error(400, "invalid_input", f"input has {len(texts)} items; at most {limit}"))
            return
        vectors = [vector_of(str(t)) for t in texts]
        if path.endswith("/api/embed"):
            self.send_json(200, {"model": body.get("model"), "embeddings": vectors, "prompt_eval_count": len(texts)})
        elif path.endswith(HF_SUFFIX):
            self.send_json(200, vectors)
        else:
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)][::-1]
            usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
            self.send_json(200, {"object": "list", "model": body.get("model"), "data": data, "usage": usage})


class FakeBatchServer(FakeOpenAIServer):
    """The OpenAI-compatible fake with per-prompt answers, latency, a concurrency gauge and embeddings."""

    handler_class = _BatchHandler

    def __init__(self, *, delay: float = 0.0, max_inputs: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.delay = delay
        self.max_inputs = max_inputs
        self.answers: dict[str, Answer | ErrorReply] = {}
        self.in_flight = 0
        self.peak = 0
        self.arrivals: list[float] = []  # time.monotonic() of every POST as it came in
        self.released = threading.Event()  # set it to let ``hold`` answers go
        self.released.set()

    def echo(self, body: dict[str, Any]) -> Answer | ErrorReply:  # type: ignore[override]
        users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        last = str(users[-1].get("content", "")) if users else ""
        self.released.wait(30)
        fixed = self.answers.get(last)
        if fixed is not None:
            return fixed
        return Answer(text=f"echo: {last}", delay=self.delay)

    @property
    def embed_requests(self) -> list[Any]:
        return [r for r in self.requests if r.path.endswith(("/embeddings", "/api/embed", HF_SUFFIX))]
