"""The OpenAI-compatible dialect: Qianfan v2, TokenHub, DashScope, DeepSeek, GLM, Kimi, vLLM, ...

One class serves every provider whose row says ``dialect = "openai"``; the differences live in
the ``ProviderSpec`` (base URL, key variables, extra headers and body fields). Wire rules are
those of docs/providers.md#streaming-sse: SSE ``data:`` events (with or without a space, comments
ignored) ending in ``[DONE]``, a usage chunk with empty ``choices``, ``reasoning_content`` kept
apart from the answer, and a JSON body where a stream was asked for when the request failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nbllm.errors import BadRequestError, ProtocolError
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.errormap import decode_body, make_error
from nbllm.providers.http import HTTPProvider
from nbllm.providers.streams import Decoder, json_object, sendable, usage_from

if TYPE_CHECKING:
    import httpx

# Besides nbllm's own options: fields nbllm sets itself, or merges (extra_body).
_NOT_SENT = ("stream_options", "extra_body")


class ChunkDecoder(Decoder):
    """Chat Completions SSE: one JSON chunk per event, ``[DONE]`` last, ``event: error`` for errors."""

    def feed(self, data: str, event: str = "") -> list[Delta]:
        data = data.strip()
        if data == "[DONE]":
            self.done = True
            return []
        chunk = parse_chunk(self.spec, data)
        if event == "error":  # `event: error` streams (vLLM, gateways) name it so
            raise make_error(self.spec, None, chunk)
        delta = delta_from_chunk(chunk)
        return [] if delta is None else [delta]


def parse_chunk(spec: Any, data: str) -> dict[str, Any]:
    """One event's JSON object, or the error it carries."""
    chunk = json_object(data)
    if chunk is None:
        raise ProtocolError(
            f"{spec.label} ({spec.id}) sent a stream event that is not a JSON object: {data[:200]!r}.",
            provider=spec.id,
        )
    if chunk.get("error"):
        raise make_error(spec, None, chunk)
    return chunk


def delta_from_chunk(chunk: dict[str, Any]) -> Delta | None:
    """One chunk's text, reasoning, finish reason and usage (first choice only)."""
    raw = chunk.get("usage")
    usage = usage_from(raw.get("prompt_tokens"), raw.get("completion_tokens"),
                       raw.get("total_tokens")) if isinstance(raw, dict) else None
    choices = chunk.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or choice.get("message") or {}
    text = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    finish = choice.get("finish_reason") or None
    if not (text or reasoning or finish or usage):
        return None
    return Delta(text=str(text), reasoning=str(reasoning), finish_reason=finish, usage=usage)


class OpenAICompatProvider(HTTPProvider):
    """Chat Completions over httpx, streamed (SSE) or not."""

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body: spec extras < call params < the fields nbllm must control."""
        params = sendable(request.params, drop=_NOT_SENT)
        if isinstance(params.get("stop"), str):
            params["stop"] = [params["stop"]]  # Qianfan wants a list; OpenAI takes both
        # ``max_tokens`` goes out under that name: OpenAI still accepts it and every
        # compatible server we know reads it (Qianfan's Go SDK lists max_completion_tokens,
        # so callers who need that name pass max_completion_tokens=... and it goes through).
        body: dict[str, Any] = {**self.spec.extra_body, **params, **(request.params.get("extra_body") or {})}
        body |= {"model": request.model, "messages": list(request.messages), "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    # -- streaming --------------------------------------------------------------------------
    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        """Yield deltas; the response is closed however the consumer stops."""
        response = self._open(request)
        content_type = response.headers.get("content-type", "").lower()
        if "text/event-stream" in content_type:
            # transformers serve ends a complete stream without [DONE]; only a missing
            # finish_reason as well means the answer was cut off (the decoder's end()).
            yield from self.read_events(response, ChunkDecoder(self.spec), drain=True)
        elif "json" in content_type:
            delta = delta_from_chunk(self._check_answer(decode_body(self.read(response)), response.status_code))
            if delta is not None:  # a whole answer where a stream was expected (stream=true ignored)
                yield delta
        else:
            raw = self.read(response)
            raise ProtocolError(
                f"{self.spec.label} ({self.spec.id}) answered a stream request with {content_type or 'no'} "
                f"content type: {raw[:200].decode(errors='replace')!r}. Check that the base URL ({self.spec.base_url}) is an "
                "OpenAI-compatible endpoint.",
                provider=self.spec.id, status=response.status_code,
            )

    def _open(self, request: ChatRequest) -> httpx.Response:
        """POST the stream request; servers that reject ``stream_options`` get it once more without."""
        body = self.build_body(request, stream=True)
        headers = {"Accept": "text/event-stream"}
        try:
            return self.send("POST", "chat/completions", json=body, headers=headers, timeout=request.timeout)
        except BadRequestError as exc:
            if "stream_options" not in exc.message:
                raise
        del body["stream_options"]
        return self.send("POST", "chat/completions", json=body, headers=headers, timeout=request.timeout)

    # -- JSON answers -----------------------------------------------------------------------
    def _check_answer(self, body: object, status: int | None = None) -> dict[str, Any]:
        """A chat answer with choices, or the error it carries instead."""
        if isinstance(body, dict) and (body.get("error") or "error_code" in body):
            raise make_error(self.spec, status, body)
        if not isinstance(body, dict) or not body.get("choices"):
            text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
            raise make_error(self.spec, None, f"a JSON answer without choices: {text[:200]}")
        return body

    def fetch(self, request: ChatRequest) -> Iterator[Delta]:
        """One non-streamed call (``stream: false``): the whole answer as one delta."""
        raw = self.request_json("POST", "chat/completions", json=self.build_body(request, stream=False),
                                timeout=request.timeout)
        yield delta_from_chunk(self._check_answer(raw, 200)) or Delta()

    def models(self, timeout: float | None = None) -> list[str]:
        """Live list from ``GET models`` where the provider serves it; failures raise."""
        if not self.spec.lists_models:
            return list(self.spec.models)
        body = self.request_json("GET", "models", timeout=timeout)
        data = body.get("data") if isinstance(body, dict) else body
        if not isinstance(data, list):
            raise make_error(self.spec, None, f"a model list without data: {json.dumps(body)[:200]}")
        return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]
