"""The OpenAI-compatible dialect: Qianfan v2, TokenHub, DashScope, DeepSeek, GLM, Kimi, vLLM, ...

One class serves every provider whose row says ``dialect = "openai"``; the differences live in
the ``ProviderSpec`` (base URL, key variables, extra headers and body fields). Wire rules are
those of PROVIDERS.md 0.1 and 9.1: SSE ``data:`` events (with or without a space, comments
ignored) ending in ``[DONE]``, a usage chunk with empty ``choices``, ``reasoning_content`` kept
apart from the answer, and a JSON body where a stream was asked for when the request failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbllm.chat import ChatRequest, Delta, Reply, Usage
from nbllm.errors import BadRequestError, ProtocolError, RequestTimeout, StreamInterrupted
from nbllm.providers.base import Provider
from nbllm.providers.errormap import decode_body, make_error, transport_errors

if TYPE_CHECKING:
    import httpx

# Options nbllm itself consumes; never sent to the provider.
_LOCAL_PARAMS = {"timeout", "stream", "stream_options", "extra_body"}


@dataclass
class _StreamState:
    received: list[str] = field(default_factory=list)
    finished: bool = False


class OpenAICompatProvider(Provider):
    """Chat Completions over httpx, streamed (SSE) or not."""

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body: spec extras < call params < the fields nbllm must control."""
        params = {k: v for k, v in request.params.items() if v is not None and k not in _LOCAL_PARAMS}
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

    def _request_kwargs(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"json": self.build_body(request, stream=stream)}
        if stream:
            kwargs["headers"] = {"Accept": "text/event-stream"}
        if request.timeout:
            import httpx

            kwargs["timeout"] = httpx.Timeout(request.timeout, connect=min(request.timeout, 10.0))
        return kwargs

    # -- streaming --------------------------------------------------------------------------
    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        """Yield deltas; the response is closed however the consumer stops."""
        response = self._open(request)
        try:
            content_type = response.headers.get("content-type", "").lower()
            if "text/event-stream" in content_type:
                yield from self._read_events(response)
            elif "json" in content_type:
                yield from self._deltas_from_json(self._read_json(response))
            else:
                raw = self._read_raw(response)
                raise ProtocolError(
                    f"{self.spec.label} ({self.spec.id}) answered a stream request with {content_type or 'no'} "
                    f"content type: {raw[:200].decode(errors='replace')!r}. Check that the base URL ({self.spec.base_url}) is an "
                    "OpenAI-compatible endpoint.",
                    provider=self.spec.id, status=response.status_code,
                )
        finally:
            response.close()

    def _open(self, request: ChatRequest) -> httpx.Response:
        """POST the stream request; servers that reject ``stream_options`` get it once more without."""
        kwargs = self._request_kwargs(request, stream=True)
        try:
            return self.open_stream("POST", "chat/completions", **kwargs)
        except BadRequestError as exc:
            if "stream_options" not in exc.message:
                raise
        del kwargs["json"]["stream_options"]
        return self.open_stream("POST", "chat/completions", **kwargs)

    def _read_events(self, response: httpx.Response) -> Iterator[Delta]:
        """Turn SSE events into deltas; decide at the end whether the stream was complete."""
        from httpx_sse import EventSource

        state = _StreamState()
        with self._mid_stream(state):
            events = EventSource(response).iter_sse()
            for event in events:
                data = event.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    _drain(events)
                    return
                chunk = self._parse_event(data)
                if event.event == "error":  # `event: error` streams (vLLM, gateways) name it so
                    raise make_error(self.spec, None, chunk)
                delta = self._delta_from_chunk(chunk)
                if delta is None:
                    continue
                state.finished = state.finished or delta.finish_reason is not None
                state.received.append(delta.text)
                yield delta
        if not state.finished:
            # transformers serve ends a complete stream without [DONE]; only a missing
            # finish_reason as well means the answer was cut off.
            raise self._interrupted("the stream ended before the answer was complete", state.received)

    @contextmanager
    def _mid_stream(self, state: _StreamState) -> Iterator[None]:
        """Transport failures after the headers: keep what arrived (never retried).

        A break after the finish reason only loses the usage chunk: the answer is complete.
        """
        import httpx

        try:
            yield
        except (httpx.TransportError, httpx.StreamError) as exc:
            if state.finished:
                return
            if isinstance(exc, httpx.TimeoutException):
                if not "".join(state.received):
                    raise RequestTimeout(
                        f"{self.spec.label} ({self.spec.id}) stopped sending before any text arrived "
                        f"({type(exc).__name__}). Try again or raise the timeout.",
                        provider=self.spec.id,
                    ) from exc
                raise self._interrupted(f"the stream stalled ({type(exc).__name__})", state.received) from exc
            raise self._interrupted(f"the connection broke ({type(exc).__name__}: {exc})", state.received) from exc

    def _interrupted(self, what: str, received: list[str]) -> StreamInterrupted:
        partial = "".join(received)
        return StreamInterrupted(
            f"{self.spec.label} ({self.spec.id}): {what}, after {len(partial)} characters of text. "
            "The partial answer is kept; run the request again for a full one.",
            provider=self.spec.id, partial_text=partial,
        )

    def _parse_event(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            raise ProtocolError(
                f"{self.spec.label} ({self.spec.id}) sent a stream event that is not a JSON object: {data[:200]!r}.",
                provider=self.spec.id,
            )
        if chunk.get("error"):
            raise make_error(self.spec, None, chunk)
        return chunk

    @staticmethod
    def _delta_from_chunk(chunk: dict[str, Any]) -> Delta | None:
        """One chunk's text, reasoning, finish reason and usage (first choice only)."""
        usage = _usage(chunk.get("usage"))
        choices = chunk.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        delta = choice.get("delta") or choice.get("message") or {}
        text = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        finish = choice.get("finish_reason") or None
        if not (text or reasoning or finish or usage):
            return None
        return Delta(text=str(text), reasoning=str(reasoning), finish_reason=finish, usage=usage)

    # -- JSON answers -----------------------------------------------------------------------
    def _read_raw(self, response: httpx.Response) -> bytes:
        with transport_errors(self.spec):
            return response.read()

    def _read_json(self, response: httpx.Response) -> dict[str, Any]:
        return self._check_answer(decode_body(self._read_raw(response)), response.status_code)

    def _check_answer(self, body: object, status: int | None = None) -> dict[str, Any]:
        """A chat answer with choices, or the error it carries instead."""
        if isinstance(body, dict) and (body.get("error") or "error_code" in body):
            raise make_error(self.spec, status, body)
        if not isinstance(body, dict) or not body.get("choices"):
            text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
            raise make_error(self.spec, None, f"a JSON answer without choices: {text[:200]}")
        return body

    def _deltas_from_json(self, body: dict[str, Any]) -> Iterator[Delta]:
        """A whole answer where a stream was expected (some servers ignore stream=true)."""
        delta = self._delta_from_chunk(body)
        if delta is not None:
            yield delta

    def complete(self, request: ChatRequest) -> Reply:
        """One non-streamed call (``stream: false``)."""
        start = time.perf_counter()
        raw = self.request_json("POST", "chat/completions", **self._request_kwargs(request, stream=False))
        body = self._check_answer(raw, 200)
        delta = self._delta_from_chunk(body) or Delta()
        return Reply(
            text=delta.text, reasoning=delta.reasoning, provider=self.spec.id,
            model=str(body.get("model") or request.model), usage=delta.usage or Usage(),
            finish_reason=delta.finish_reason, total_s=time.perf_counter() - start,
        )

    def models(self) -> list[str]:
        """Live list from ``GET models`` where the provider serves it; failures raise."""
        if not self.spec.lists_models:
            return list(self.spec.models)
        body = self.request_json("GET", "models")
        data = body.get("data") if isinstance(body, dict) else body
        if not isinstance(data, list):
            raise make_error(self.spec, None, f"a model list without data: {json.dumps(body)[:200]}")
        return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]


def _drain(events: Iterator[Any]) -> None:
    """Read what follows ``[DONE]`` (the chunked terminator) so httpx keeps the connection for
    the next call instead of closing it: one TCP and TLS handshake saved per call."""
    import httpx

    try:
        for _ in events:
            pass
    except httpx.HTTPError:
        pass  # the answer is complete; a connection that will not be reused costs nothing more


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage(
        prompt_tokens=_int(value.get("prompt_tokens")),
        completion_tokens=_int(value.get("completion_tokens")),
        total_tokens=_int(value.get("total_tokens")),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

