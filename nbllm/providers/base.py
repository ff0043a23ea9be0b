"""What every provider offers, whatever carries it (HTTP, an in-process model, a plugin).

``Provider`` is the interface the engine calls; ``nbllm.providers.http.HTTPProvider`` adds the
client, retries, stream readers and the one error boundary that HTTP dialects share. Dialect
classes are imported only when first used. The ``a``-prefixed methods are the asyncio twins;
a provider without its own reads its blocking stream in a worker thread, delta by delta.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator
from importlib import import_module
from typing import Any, Protocol

from nbllm.errors import ConfigError
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.catalog import ProviderSpec
from nbllm.response import AsyncResponse, Callback, Response
from nbllm.secrets import register_secret

DIALECTS: dict[str, str] = {
    "openai": "nbllm.providers.openai_compat:OpenAICompatProvider",
    "ernie": "nbllm.providers.ernie_v1:ErnieV1Provider",
    "ollama": "nbllm.providers.ollama:OllamaProvider",
    "opennmt": "nbllm.providers.opennmt:OpenNMTProvider",
    "local": "nbllm.providers.local:LocalProvider",
}


class Gate(Protocol):
    """What paces a provider's requests (``nbllm.batch.limiter.RateLimiter``): a slot before
    each attempt, and a pause for every waiting request when the provider says to slow down."""

    async def acquire(self, tokens: int = 0) -> None: ...

    def pause(self, seconds: float) -> None: ...


def provider_class(dialect: str) -> type[Provider]:
    """Import a dialect's class (a built-in name, or a plugin's ``module:Class``) on first use."""
    target = DIALECTS.get(dialect, dialect)
    if ":" not in target:
        raise ConfigError(f"Unknown provider dialect {dialect!r}; known: {', '.join(DIALECTS)}, "
                          "or a plugin's module:Class.")
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def make_provider(spec: ProviderSpec, key: str | None = None, **http: Any) -> Provider:
    """A provider for a spec; HTTP options (timeout, max_retries, ...) go to HTTP dialects only."""
    cls = provider_class(spec.dialect)
    return cls(spec, key, **http) if http and cls.over_http else cls(spec, key)


class Provider(ABC):
    """One configured provider: a spec and its key. Implement ``stream``; the rest has defaults."""

    over_http = False  # takes HTTP options (timeout, max_retries, transport) when constructed

    def __init__(self, spec: ProviderSpec, key: str | None = None) -> None:
        self.spec = spec
        self._key = key
        register_secret(key)  # a key handed in directly is redacted like one read from the env

    def __repr__(self) -> str:  # never shows the key
        return f"<{type(self).__name__} {self.spec.id} {self.spec.base_url}>"

    @abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        """Yield the answer piece by piece; close the connection on every exit path."""

    def fetch(self, request: ChatRequest) -> Iterator[Delta]:
        """The whole answer from one non-streamed request, as deltas; by default the stream."""
        return self.stream(request)

    def respond(self, request: ChatRequest, *, stream: bool = True, source: str = "api",
                on_done: Iterable[Callback] = (), meta: dict[str, Any] | None = None) -> Response:
        """The ``Response`` for a request: nothing is sent until it is read."""
        return Response(self, request, stream=stream, source=source, on_done=on_done, meta=meta)

    # -- asyncio ----------------------------------------------------------------------------
    def arespond(self, request: ChatRequest, *, stream: bool = True, source: str = "api",
                 on_done: Iterable[Callback] = (), meta: dict[str, Any] | None = None,
                 gate: Gate | None = None, tokens: int = 0) -> AsyncResponse:
        """The ``AsyncResponse`` for a request (read with ``async for``); ``gate`` paces it."""
        return AsyncResponse(self, request, stream=stream, source=source, on_done=on_done, meta=meta,
                             gate=gate, tokens=tokens)

    async def astream(self, request: ChatRequest, *, gate: Gate | None = None,
                      tokens: int = 0) -> AsyncIterator[Delta]:
        """``stream`` for asyncio; by default the blocking stream, read in a worker thread."""
        import asyncio  # not at import time: the blocking CLI never needs it (~25 ms)

        if gate is not None:
            await gate.acquire(tokens)
        deltas = iter(self.stream(request))
        try:
            while (delta := await asyncio.to_thread(next, deltas, None)) is not None:
                yield delta
        finally:
            close = getattr(deltas, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):  # still running in its thread (cancelled): it ends there
                    close()

    async def afetch(self, request: ChatRequest, *, gate: Gate | None = None,
                     tokens: int = 0) -> AsyncIterator[Delta]:
        """``fetch`` for asyncio; by default the asyncio stream."""
        async for delta in self.astream(request, gate=gate, tokens=tokens):
            yield delta

    async def aclose(self) -> None:  # noqa: B027 - optional: only HTTP providers hold per-loop clients
        """Release what this event loop holds (its HTTP client); the provider may be used again."""

    def complete(self, request: ChatRequest) -> Response:
        """The whole answer at once (one non-streamed request), finished."""
        return self.respond(request, stream=False).reply()

    def models(self, timeout: float | None = None) -> list[str]:
        """Model names the provider offers; the catalogue unless the dialect can list them."""
        return list(self.spec.models)

    def close(self) -> None:  # noqa: B027 - optional: most providers hold nothing to release
        """Release connections or loaded resources; the provider may be used again after."""
