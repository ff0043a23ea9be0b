"""The OpenNMT-py REST translation server: a cell's lines in, their translations out, in order.

There is no chat here (docs/providers.md#opennmt): the last user message is split into its
non-blank lines, sent to ``/translator/translate`` with the model id from the server's
``conf.json``, and the translations are put back in place of the lines, blank lines kept. The
server reports model failures as ``{"status": "error"}`` bodies with HTTP 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nbllm.errors import BadRequestError, ServerError, UnknownModelError
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.errormap import make_error
from nbllm.providers.http import HTTPProvider

BATCH = 16  # lines per request: one round trip for short cells, visible progress for long ones


def segments(text: str) -> list[tuple[int, str, str]]:
    """(line index, indentation, stripped text) of every non-blank line."""
    found = []
    for index, line in enumerate(text.split("\n")):
        stripped = line.strip()
        if stripped:
            found.append((index, line[: len(line) - len(line.lstrip())], stripped))
    return found


class OpenNMTProvider(HTTPProvider):
    """Translation through an OpenNMT-py (or CTranslate2-backed) REST server."""

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        """One delta per translated line (blank lines travel with the next one)."""
        model_id = self._model_id(request.model)
        text = _source_text(request)
        lines = text.split("\n")
        todo = segments(text)
        done_upto = 0  # lines before this index have been yielded
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            translated = self.translate([s for _, _, s in batch], model_id, request.timeout)
            for (index, indent, _), target in zip(batch, translated, strict=True):
                lines[index] = indent + target
                yield Delta(text="\n".join(lines[done_upto : index + 1]) + ("\n" if index + 1 < len(lines) else ""))
                done_upto = index + 1
        tail = "\n".join(lines[done_upto:])
        yield Delta(text=tail, finish_reason="stop")

    def translate(self, sources: list[str], model_id: int, timeout: float | None = None) -> list[str]:
        """The best translation of each source line, in the order given."""
        payload = [{"src": src, "id": model_id} for src in sources]
        try:
            body = self.request_json("POST", "translate", json=payload, timeout=timeout)
        except ServerError as exc:
            raise ServerError(
                f"{exc.message} If model {model_id} is not in the server's conf.json, the server fails this way; "
                f"nbllm models {self.spec.id} lists the ids it serves.",
                provider=self.spec.id, status=exc.status, code=exc.code,
            ) from exc
        return self._targets(body, len(sources), model_id)

    def _targets(self, body: Any, count: int, model_id: int) -> list[str]:
        if isinstance(body, dict) and body.get("status") == "error":
            raise ServerError(
                f'The OpenNMT-py server ({self.spec.id}) at {self.spec.base_url} could not translate with model '
                f'{model_id}: "{body.get("error", "no reason given")}". Check the server log and that the model '
                f"loads (nbllm models {self.spec.id}).",
                provider=self.spec.id, code="ServerModelError",
            )
        best = body[0] if isinstance(body, list) and body and isinstance(body[0], list) else None
        if best is None or len(best) != count or not all(isinstance(h, dict) and "tgt" in h for h in best):
            raise make_error(self.spec, None, f"not a translation list for {count} lines: {str(body)[:200]}")
        return [str(h["tgt"]).strip() for h in best]

    def models(self, timeout: float | None = None) -> list[str]:
        """The model ids in the server's conf.json (``/translator/models``)."""
        body = self.request_json("GET", "models", timeout=timeout)
        if not isinstance(body, list):
            raise make_error(self.spec, None, f"/models did not list models: {str(body)[:200]}")
        return [str(m["model_id"]) for m in body if isinstance(m, dict) and "model_id" in m]

    def _model_id(self, model: str) -> int:
        try:
            return int(str(model).strip())
        except ValueError:
            raise UnknownModelError(
                f"OpenNMT-py models are chosen by their numeric id from the server's conf.json, not by name; "
                f"{model!r} is not a number. Use e.g. -p {self.spec.id}:100 (nbllm models {self.spec.id} lists the ids).",
                provider=self.spec.id,
            ) from None


def _source_text(request: ChatRequest) -> str:
    """The text to translate: the last user message (history and system prompts do not apply)."""
    for message in reversed(request.messages):
        if message["role"] == "user":
            return message["content"]
    raise BadRequestError("The OpenNMT-py translation server needs text to translate: the request has no user message.",
                          provider="opennmt")
