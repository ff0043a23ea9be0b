"""Providers reached over HTTP: one client, retries, stream readers and one error boundary.

Sending (``send``, ``request_json``) and reading a stream (``read_events`` for SSE,
``read_lines`` for NDJSON) both run inside ``errormap.http_errors``, as httpx wraps both its
send and its response iteration, so a timeout or a dropped connection is the same error in
every dialect. Retries happen only before any text reached the caller. Decoding lives in
``nbllm.providers.streams`` as pure code, so an asyncio twin of this class needs only its own
reads and sends.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any, TypeVar

from nbllm.errors import RETRYABLE, ProviderError, RateLimitError
from nbllm.messages import Delta
from nbllm.providers.base import Provider
from nbllm.providers.catalog import ProviderSpec
from nbllm.providers.errormap import decode_body, http_errors, make_error
from nbllm.providers.streams import Decoder
from nbllm.validate import check_base_url, check_header_value, check_key

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

DEFAULT_TIMEOUT = 120.0
MAX_CONNECT_TIMEOUT = 10.0
MAX_RETRY_WAIT = 60.0


def http_timeout(seconds: float) -> httpx.Timeout:
    """A read timeout of ``seconds``; connecting gets at most MAX_CONNECT_TIMEOUT of it."""
    import httpx

    return httpx.Timeout(seconds, connect=min(seconds, MAX_CONNECT_TIMEOUT))


class HTTPProvider(Provider):
    """A provider behind an HTTP API; the client is made on first use and reused."""

    over_http = True

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
        super().__init__(spec, key)
        self.timeout = timeout or DEFAULT_TIMEOUT  # the default; a request's own timeout wins
        self.max_retries = max_retries
        self._transport = transport  # e.g. httpx.MockTransport in unit tests
        self._sleep = sleep
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- the client -----------------------------------------------------------------------
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
                timeout=http_timeout(self.timeout),
                transport=self._transport,
                trust_env=True,  # HTTPS_PROXY / NO_PROXY / SSL_CERT_FILE from the environment
            )
        return self._client

    # -- sending --------------------------------------------------------------------------
    def send(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        """Send a request and return the open response once its status is good, with retries."""
        if timeout:
            kwargs["timeout"] = http_timeout(timeout)

        def attempt() -> httpx.Response:
            with http_errors(self.spec):
                response = self.client.send(self.client.build_request(method, path, **kwargs), stream=True)
                if response.status_code >= 400:
                    raise make_error(self.spec, response.status_code, decode_body(self.read(response)),
                                     response.headers)
                return response

        return self.retrying(attempt)

    def read(self, response: httpx.Response) -> bytes:
        """The whole body of an open response, which is closed after."""
        with http_errors(self.spec), closing(response):
            return response.read()

    def request_json(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> object:
        """A non-streamed call returning the decoded JSON body."""
        body = decode_body(self.read(self.send(method, path, timeout=timeout, **kwargs)))
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

    # -- reading streams ------------------------------------------------------------------
    def read_events(self, response: httpx.Response, decoder: Decoder, *, drain: bool = False) -> Iterator[Delta]:
        """Deltas from a Server-Sent Events body; ``drain`` reads on after the last event so the
        connection can be reused (one TCP and TLS handshake saved per call)."""
        from httpx_sse import EventSource

        events = EventSource(response).iter_sse()
        items = ((event.data, event.event) for event in events)
        yield from self._decode(response, items, decoder, drain=drain)

    def read_lines(self, response: httpx.Response, decoder: Decoder) -> Iterator[Delta]:
        """Deltas from a newline-delimited JSON body (blank lines skipped)."""
        items = ((line, "") for line in response.iter_lines())
        yield from self._decode(response, items, decoder, drain=False)

    def _decode(self, response: httpx.Response, items: Iterator[tuple[str, str]], decoder: Decoder, *,
                drain: bool) -> Iterator[Delta]:
        with closing(response):
            with http_errors(self.spec, decoder):
                for data, event in items:
                    if not data.strip():
                        continue
                    for delta in decoder.feed(data, event):
                        yield decoder.note(delta)
                    if decoder.done:
                        if drain:
                            _drain(items)
                        return
            decoder.end()


def _drain(items: Iterator[Any]) -> None:
    """Read what follows the last event (the chunked terminator); a failure there costs nothing."""
    import httpx

    try:
        for _ in items:
            pass
    except httpx.HTTPError:
        pass
