"""The OpenAI-compatible fake plus ``/embeddings`` (OpenAI's shape: ``data[].embedding``, ``usage``).

Kept apart from ``openai_server.py`` while that module grows the same route in another branch;
vectors are small (``embedding_size``, 8 by default) and the same text always gets the same one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .openai_server import ErrorReply, FakeOpenAIServer, _Handler


def vector(text: str, size: int) -> list[float]:
    seed = sum(map(ord, text)) or 1
    return [((seed * (i + 7)) % 97) / 97.0 for i in range(size)]


class _EmbeddingsHandler(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        if not urlsplit(self.path).path.endswith("/embeddings"):
            super().do_POST()
            return
        req = self.record()
        if not self._authorised(req):
            return
        behaviour = self.srv.next_behaviour()
        if isinstance(behaviour, ErrorReply):
            self._send_reply(behaviour)
            return
        body: dict[str, Any] = req.json if isinstance(req.json, dict) else {}
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        size = body.get("dimensions") if isinstance(body.get("dimensions"), int) else self.srv.embedding_size
        data = [{"object": "embedding", "index": i, "embedding": vector(str(item), size)}
                for i, item in enumerate(items)]
        tokens = sum(len(str(item).split()) for item in items)
        self.send_json(200, {"object": "list", "data": data, "model": body.get("model", ""),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, self.srv.common_headers())


class FakeEmbeddingsServer(FakeOpenAIServer):
    handler_class = _EmbeddingsHandler

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding_size = 8
