"""What every provider offers, whatever carries it (HTTP, an in-process model, a plugin).

``Provider`` is the interface the engine calls; ``nbllm.providers.http.HTTPProvider`` adds the
client, retries, stream readers and the one error boundary that HTTP dialects share. Dialect
classes are imported only when first used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from importlib import import_module
from typing import Any

from nbllm.errors import ConfigError
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.catalog import ProviderSpec
from nbllm.response import Callback, Response
from nbllm.secrets import register_secret

DIALECTS: dict[str, str] = {
    "openai": "nbllm.providers.openai_compat:OpenAICompatProvider",
    "ernie": "nbllm.providers.ernie_v1:ErnieV1Provider",
    "ollama": "nbllm.providers.ollama:OllamaProvider",
    "opennmt": "nbllm.providers.opennmt:OpenNMTProvider",
    "local": "nbllm.providers.local:LocalProvider",
}


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
                on_done: Iterable[Callback] = ()) -> Response:
        """The ``Response`` for a request: nothing is sent until it is read."""
        return Response(self, request, stream=stream, source=source, on_done=on_done)

    def complete(self, request: ChatRequest) -> Response:
        """The whole answer at once (one non-streamed request), finished."""
        return self.respond(request, stream=False).reply()

    def models(self, timeout: float | None = None) -> list[str]:
        """Model names the provider offers; the catalogue unless the dialect can list them."""
        return list(self.spec.models)

    def close(self) -> None:  # noqa: B027 - optional: most providers hold nothing to release
        """Release connections or loaded resources; the provider may be used again after."""
