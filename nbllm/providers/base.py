"""What every provider offers, and the HTTP plumbing they share.

A dialect subclasses ``Provider`` and implements ``stream`` (and, where it has a cheaper
path, ``complete`` and ``models``). Status and transport errors go through
``nbllm.providers.errormap``; retries happen only before any text reached the caller.
"""

from __future__ import annotations

import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import TYPE_CHECKING, TypeVar

from nbllm.chat import ChatRequest, Delta, Reply, Usage
from nbllm.errors import RETRYABLE, ProviderError, RateLimitError, StreamInterrupted
from nbllm.providers.catalog import ProviderSpec
from nbllm.providers.errormap import decode_body, make_error, transport_errors
from nbllm.secrets import register_secret
from nbllm.validate import check_base_url, check_header_value, check_key

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

DEFAULT_TIMEOUT = 120.0
MAX_RETRY_WAIT = 60.0

DIALECTS: dict[str, str] = {
    "openai": "nbllm.providers.openai_compat:OpenAICompatProvider",
    "ernie": "nbllm.providers.ernie_v1:ErnieV1Provider",
    "ollama": "nbllm.providers.ollama:OllamaProvider",
    "opennmt": "nbllm.providers.opennmt:OpenNMTProvider",
    "local": "nbllm.providers.local:LocalProvider",
}


def provider_class(dialect: str) -> type[Provider]:
    """Import a dialect's class only when it is first used."""
    target = DIALECTS.get(dialect, dialect)
    if ":" not in target:
        raise ProviderError(f"Unknown provider dialect {dialect!r}; known: {', '.join(DIALECTS)}.")
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


class Provider(ABC):
    """One configured provider: a spec, its key and an HTTP client made on first use."""

    def __init__(
        self,
        spec: ProviderSpec,
        key: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self._key = key
        register_secret(key)  # a key handed in directly is redacted like one read from the env
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.max_retries = max_retries
        self._transport = transport
        self._sleep = sleep
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"<{type(self).__name__} {self.spec.id} {self.spec.base_url}>"

    # -- the interface --------------------------------------------------------------------
    @abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        """Yield the answer piece by piece; close the connection on every exit path."""

    def complete(self, request: ChatRequest) -> Reply:
        """The whole answer at once; by default by consuming the stream."""
        return collect(self.spec.id, request.model, self.stream(request))

    def models(self) -> list[str]:
        """Model names the provider offers; the catalogue unless the dialect can list them."""
        return list(self.spec.models)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- shared HTTP plumbing -------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "nbllm", **self.spec.extra_headers, **self.auth_headers()}
        for header, env in self.spec.headers_from_env.items():
            if os.environ.get(env):
                check_header_value(os.environ[env], f"The environment variable {env} (the {header} header)")
                headers[header] = os.environ[env]
        return headers

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx

            from nbllm.config import base_url_origin

            check_base_url(self.spec.base_url, f"{base_url_origin(self.spec)} ({self.spec.id})")
            if self._key:  # keys read by nbllm.keys are checked already; this covers keys handed in
                check_key(self._key, f"the key given for {self.spec.id}")
            self._client = httpx.Client(
                base_url=self.spec.base_url.rstrip("/") + "/",
                headers=self.headers(),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                transport=self._transport,
                trust_env=True,  # HTTPS_PROXY / NO_PROXY / SSL_CERT_FILE from the environment
            )
        return self._client

    def open_stream(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """Send a request and return the open response once its status is good, with retries."""
        def attempt() -> httpx.Response:
            with transport_errors(self.spec):
                req = self.client.build_request(method, path, **kwargs)  # type: ignore[arg-type]
                response = self.client.send(req, stream=True)
                if response.status_code >= 400:
                    try:
                        raw = response.read()
                    finally:
                        response.close()
                    raise make_error(self.spec, response.status_code, decode_body(raw), response.headers)
                return response

        return self.retrying(attempt)

    def request_json(self, method: str, path: str, **kwargs: object) -> object:
        """A non-streamed call returning the decoded JSON body."""
        response = self.open_stream(method, path, **kwargs)
        with transport_errors(self.spec):
            try:
                raw = response.read()
            finally:
                response.close()
        body = decode_body(raw)
        if isinstance(body, str):
            raise make_error(self.spec, None, f"not JSON: {body[:200]}")
        return body

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` again after connect errors, 429 and 5xx, with backoff."""
        for n in range(self.max_retries + 1):
            try:
                return attempt()
            except RETRYABLE as exc:
                if n == self.max_retries:
                    raise
                self._sleep(self._backoff(n, exc))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _backoff(n: int, exc: ProviderError) -> float:
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_WAIT)
        return min(0.5 * 2**n, 8.0) * (0.75 + random.random() / 2)


def collect(provider_id: str, model: str, deltas: Iterator[Delta]) -> Reply:
    """Consume a delta stream into a Reply, timing the first token and the whole answer."""
    start = time.perf_counter()
    text: list[str] = []
    reasoning: list[str] = []
    first: float | None = None
    usage = Usage()
    finish: str | None = None
    try:
        for delta in deltas:
            if first is None and (delta.text or delta.reasoning):
                first = time.perf_counter() - start
            text.append(delta.text)
            reasoning.append(delta.reasoning)
            usage = delta.usage or usage
            finish = delta.finish_reason or finish
    except StreamInterrupted as exc:
        exc.partial_text = exc.partial_text or "".join(text)
        raise
    return Reply(
        text="".join(text), reasoning="".join(reasoning), provider=provider_id, model=model,
        usage=usage, finish_reason=finish, first_token_s=first, total_s=time.perf_counter() - start,
    )
