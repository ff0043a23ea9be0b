"""The log row of an OpenAI SDK chat request that ``nbllm.redirect`` sent to a provider.

Redirected calls never pass through nbllm's ``Response`` (the SDK sends, reads and parses them),
so the redirect hands over what it saw: the JSON body it sent, and the answer's status with its
JSON body or, for a stream, its Server-Sent Events bytes. ``Call.finish`` turns that into the
same ``Exchange`` every other call becomes (redacted by ``Exchange.row``) and writes it with
``store.write``, the log's one write path. Source ``redirect``; see docs/exchange-log.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nbllm.log.fingerprint import fingerprint
from nbllm.log.record import Exchange, host_of, notebook_path
from nbllm.messages import Usage
from nbllm.providers.catalog import ProviderSpec

SOURCE = "redirect"
CHAT_PATH = "/chat/completions"
_NOT_PARAMS = ("model", "messages", "stream", "stream_options")  # the row's own columns, or nbllm's doing


@dataclass
class Call:
    """One redirected chat request, from the moment it was built until its answer is read."""

    spec: ProviderSpec
    base_url: str
    body: dict[str, Any]  # as sent: model mapped, keys removed
    start: float = field(default_factory=time.perf_counter)
    first_byte_s: float | None = None
    logged: bool = False

    @property
    def streamed(self) -> bool:
        return bool(self.body.get("stream"))

    def arrived(self) -> None:
        """A piece of the answer arrived (the first one times the first token)."""
        if self.first_byte_s is None:
            self.first_byte_s = time.perf_counter() - self.start

    def finish(self, status: int, raw: bytes, headers: Any = None) -> int | None:
        """Write the row once: ``raw`` is the whole JSON answer, or the stream's bytes so far."""
        if self.logged:
            return None
        self.logged = True
        from nbllm.log.store import write

        return write(self.exchange(status, raw, headers))

    def exchange(self, status: int, raw: bytes, headers: Any = None) -> Exchange:
        messages = self.body.get("messages")
        messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        params = {k: v for k, v in self.body.items() if k not in _NOT_PARAMS}
        model = str(self.body.get("model") or "")
        row = Exchange(source=SOURCE, provider=self.spec.id, model=model, messages=messages, params=params,
                       fingerprint=fingerprint(self.spec.id, model, messages, params), host=host_of(self.base_url),
                       total_s=time.perf_counter() - self.start, notebook=notebook_path())
        if status >= 400:
            _fill_error(row, self.spec, status, raw, headers)
        elif self.streamed:
            _fill_stream(row, raw)
        else:
            _fill_answer(row, raw)
        row.first_token_s = self.first_byte_s if row.answer or row.reasoning else None
        return row


def _fill_error(row: Exchange, spec: ProviderSpec, status: int, raw: bytes, headers: Any) -> None:
    from nbllm.providers.errormap import decode_body, make_error

    error = make_error(spec, status, decode_body(raw), headers or {}, row.model)
    row.error_class, row.error_message = type(error).__name__, error.message


def _fill_answer(row: Exchange, raw: bytes) -> None:
    from nbllm.providers.openai_compat import delta_from_chunk
    from nbllm.providers.streams import json_object

    chunk = json_object(raw.decode("utf-8", errors="replace"))
    delta = delta_from_chunk(chunk) if chunk is not None else None
    if delta is None:
        row.error_class, row.error_message = "ProtocolError", "the answer held no text, finish reason or usage"
        return
    row.answer, row.reasoning, row.finish_reason = delta.text, delta.reasoning, delta.finish_reason
    _fill_usage(row, delta.usage)


def _fill_stream(row: Exchange, raw: bytes) -> None:
    """Add up a Chat Completions event stream as far as it was read (docs/providers.md#streaming-sse)."""
    from nbllm.providers.openai_compat import delta_from_chunk
    from nbllm.providers.streams import json_object

    text: list[str] = []
    reasoning: list[str] = []
    done = False
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue  # comments (keep-alives), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        chunk = json_object(data)
        if chunk is not None and chunk.get("error"):
            row.error_class, row.error_message = "ProviderError", str(chunk["error"])[:500]
            continue
        delta = delta_from_chunk(chunk) if chunk is not None else None
        if delta is not None:
            text.append(delta.text)
            reasoning.append(delta.reasoning)
            row.finish_reason = delta.finish_reason or row.finish_reason
            _fill_usage(row, delta.usage)
    row.answer, row.reasoning = "".join(text), "".join(reasoning)
    if row.error_class is None and not (done or row.finish_reason):
        row.error_class, row.error_message = "Stopped", "the answer was stopped before its end"


def _fill_usage(row: Exchange, usage: Usage | None) -> None:
    if usage is not None:
        row.prompt_tokens, row.completion_tokens, row.total_tokens = (
            usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
