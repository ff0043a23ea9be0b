"""Providers reached over HTTP: one client, retries, stream readers and one error boundary.

Sending (``send``, ``request_json``) and reading a stream (``read_events`` for SSE,
``read_lines`` for NDJSON) both run inside ``errormap.http_errors``, as httpx wraps both its
send and its response iteration, so a timeout or a dropped connection is the same error in
every dialect. Retries happen only before any text reached the caller. Decoding lives in
``nbllm.providers.streams`` as pure code, so the asyncio twin below (``asend``, ``aread_events``,
``aread_lines``, over one ``httpx.AsyncClient`` per event loop) has only its own reads and sends.
"""

from __future__ import annotations

import functools
import inspect
import os
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any, TypeVar

from nbllm.errors import RETRYABLE, ProviderError, RateLimitError, RequestTimeout
from nbllm.messages import Delta
from nbllm.providers.base import Gate, Provider
from nbllm.providers.catalog import ProviderSpec
from nbllm.providers.deadline import Deadline, cut_connection
from nbllm.providers.errormap import (
    MAX_ERROR_BODY,
    decode_body,
    http_errors,
    interrupted,
    make_error,
    readable,
    redirect_error,
    unreadable,
)
from nbllm.providers.streams import Decoder
from nbllm.response import on_stop, stop_requested
from nbllm.validate import check_base_url, check_header_value, check_key

if TYPE_CHECKING:
    import asyncio  # imported where used: the blocking path never needs it (~25 ms)

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
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()  # threads (and batch runs on several loops) may share this provider

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every HTTP dialect's ``stream``, ``fetch`` and ``models`` run inside ``readable``: whatever
        shape a reply has, reading it ends in an answer or an NbllmError, never a Python error."""
        super().__init_subclass__(**kwargs)
        for name in ("stream", "fetch", "models"):
            if name in vars(cls):
                setattr(cls, name, _guarded(vars(cls)[name]))

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

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
        """The provider's one client; threads whose first requests race still make only one."""
        client = self._client  # the common path: no lock once made
        return client if client is not None else self._make_client()

    def _make_client(self) -> httpx.Client:
        import httpx

        from nbllm.config import base_url_origin

        with self._lock:
            if self._client is None:
                check_base_url(self.spec.base_url, f"{base_url_origin(self.spec)} ({self.spec.id})")
                if self._key:  # keys read by nbllm.keys are checked already; this covers keys handed in
                    check_key(self._key, f"given for {self.spec.id}")
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

        body = kwargs.get("json")
        model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None

        def attempt() -> httpx.Response:
            with http_errors(self.spec):
                response = self.client.send(self.client.build_request(method, path, **kwargs), stream=True)
                if 300 <= response.status_code < 400:
                    response.close()
                    raise redirect_error(self.spec, response.status_code, response.headers.get("location", ""))
                if response.status_code >= 400:
                    raw = self.read(response, limit=MAX_ERROR_BODY)
                    raise make_error(self.spec, response.status_code, decode_body(raw), response.headers, model)
                on_stop(functools.partial(cut_connection, response))  # Response.close() from another thread
                return response

        return self.retrying(attempt)

    def read(self, response: httpx.Response, limit: int | None = None) -> bytes:
        """The body of an open response (its first ``limit`` bytes), which is closed after.

        The whole read is bounded by the request's timeout: bytes trickling in do not extend it.
        """
        with http_errors(self.spec), closing(response), Deadline(response, _read_timeout(response)) as deadline:
            try:
                if limit is None:
                    return response.read()
                data = b""
                for piece in response.iter_bytes():
                    data += piece
                    if len(data) >= limit:
                        break
                return data[:limit]
            except Exception:
                if deadline.cut:
                    raise _silent(self.spec, deadline.seconds, "") from None
                raise

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
                if n == self.max_retries or stop_requested():
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
        """Deltas from a stream's items, with every wait bounded by the request's timeout.

        The timeout bounds the wait for the first text and every silence after it; items that
        carry nothing (keep-alive comments, empty deltas) do not count. After the provider's
        last item the answer is complete: at most DRAIN_SECONDS more are spent reading on.
        """
        first = ""
        deadline = Deadline(response, _read_timeout(response))
        with closing(response):
            try:
                with http_errors(self.spec, decoder):
                    try:
                        for data, event in items:
                            if not data.strip():
                                continue
                            first = first or data
                            for delta in decoder.feed(data, event):
                                if delta.text or delta.reasoning or delta.finish_reason or delta.usage:
                                    deadline.progress()
                                yield decoder.note(delta)
                            if decoder.done:
                                if drain:
                                    deadline.limit(DRAIN_SECONDS)
                                    _drain(items)
                                break
                            if deadline.expired:
                                raise _silent(self.spec, deadline.seconds, decoder.text)
                    except Exception as exc:
                        if deadline.cut and not decoder.done and not isinstance(exc, ProviderError):
                            raise _silent(self.spec, deadline.seconds, decoder.text) from None
                        raise
            finally:
                deadline.stop()  # before the connection goes back to the pool
        if not decoder.received and not decoder.finished:
            size = response.num_bytes_downloaded
            raise unreadable(self.spec, f"no answer in it; first item: {first[:200]!r}" if first else
                             f"{size} bytes without a single event" if size else "an empty stream")
        decoder.end()

    # -- the asyncio twin -------------------------------------------------------------------
    # The same requests, retries, error boundary and decoders as above, over httpx.AsyncClient.
    # An AsyncClient belongs to the event loop it first ran on, so each loop gets its own.
    def aclient(self) -> httpx.AsyncClient:
        """The running event loop's client, made on first use."""
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                client = self._aclients[loop] = httpx.AsyncClient(
                    base_url=self.spec.base_url.rstrip("/") + "/",
                    headers=self.headers(),
                    timeout=http_timeout(self.timeout),
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                    trust_env=True,
                )
        return client

    async def aclose(self) -> None:
        """Close the running loop's client (a batch run's private loop ends with it)."""
        import asyncio

        with self._lock:
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def asend(self, method: str, path: str, *, timeout: float | None = None, gate: Gate | None = None,
                    tokens: int = 0, **kwargs: Any) -> httpx.Response:
        """``send`` for asyncio: the open response once its status is good, with retries.

        A ``gate`` (the provider's rate limiter) is waited on before every attempt, and a 429
        pauses the gate, so every request waiting on it slows down, not only this one.
        """
        if timeout:
            kwargs["timeout"] = http_timeout(timeout)

        body = kwargs.get("json")
        model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None

        async def attempt() -> httpx.Response:
            with http_errors(self.spec):
                client = self.aclient()
                response = await client.send(client.build_request(method, path, **kwargs), stream=True)
                if 300 <= response.status_code < 400:
                    await response.aclose()
                    raise redirect_error(self.spec, response.status_code, response.headers.get("location", ""))
                if response.status_code >= 400:
                    raw = (await self.aread(response))[:MAX_ERROR_BODY]
                    raise make_error(self.spec, response.status_code, decode_body(raw), response.headers, model)
                return response

        return await self.aretrying(attempt, gate, tokens)

    async def aread(self, response: httpx.Response) -> bytes:
        """The whole body of an open response, which is closed after."""
        with http_errors(self.spec):
            try:
                return await response.aread()
            finally:
                await response.aclose()

    async def arequest_json(self, method: str, path: str, *, timeout: float | None = None,
                            gate: Gate | None = None, tokens: int = 0, **kwargs: Any) -> object:
        """``request_json`` for asyncio."""
        response = await self.asend(method, path, timeout=timeout, gate=gate, tokens=tokens, **kwargs)
        body = decode_body(await self.aread(response))
        if isinstance(body, str):
            raise make_error(self.spec, None, f"not JSON: {body[:200]}")
        return body

    async def aretrying(self, attempt: Callable[[], Awaitable[T]], gate: Gate | None = None, tokens: int = 0) -> T:
        """``retrying`` for asyncio, waiting on the gate before each attempt."""
        import asyncio

        for n in range(self.max_retries + 1):
            if gate is not None:
                await gate.acquire(tokens)
            try:
                return await attempt()
            except RETRYABLE as exc:
                if n == self.max_retries:
                    raise
                wait = self._backoff(n, exc)
                if gate is not None and isinstance(exc, RateLimitError):
                    gate.pause(wait)  # the next acquire waits it out, with every other request
                else:
                    await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aread_events(self, response: httpx.Response, decoder: Decoder, *,
                           drain: bool = False) -> AsyncIterator[Delta]:
        """``read_events`` for asyncio."""
        from httpx_sse import EventSource

        items = ((event.data, event.event) async for event in EventSource(response).aiter_sse())
        async for delta in self._adecode(response, items, decoder, drain=drain):
            yield delta

    async def aread_lines(self, response: httpx.Response, decoder: Decoder) -> AsyncIterator[Delta]:
        """``read_lines`` for asyncio."""
        items = ((line, "") async for line in response.aiter_lines())
        async for delta in self._adecode(response, items, decoder, drain=False):
            yield delta

    async def _adecode(self, response: httpx.Response, items: AsyncIterator[tuple[str, str]], decoder: Decoder, *,
                       drain: bool) -> AsyncIterator[Delta]:
        """``_decode`` for asyncio; silences are bounded by httpx's per-read timeout."""
        first = ""
        try:
            with readable(self.spec), http_errors(self.spec, decoder):
                async for data, event in items:
                    if not data.strip():
                        continue
                    first = first or data
                    for delta in decoder.feed(data, event):
                        yield decoder.note(delta)
                    if decoder.done:
                        if drain:
                            await _adrain(items)
                        break
        finally:
            await response.aclose()
        if not decoder.received and not decoder.finished:
            size = response.num_bytes_downloaded
            raise unreadable(self.spec, f"no answer in it; first item: {first[:200]!r}" if first else
                             f"{size} bytes without a single event" if size else "an empty stream")
        decoder.end()

def _drain(items: Iterator[Any]) -> None:
    """Read what follows the last event (the chunked terminator); a failure there costs nothing."""
    import httpx

    try:
        for _ in items:
            pass
    except httpx.HTTPError:
        pass


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` inside the reading boundary; a stream that yields nothing readable is an error too."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def deltas(self: HTTPProvider, *args: Any, **kwargs: Any) -> Iterator[Delta]:
            answered = False
            with readable(self.spec):
                for delta in method(self, *args, **kwargs):
                    answered = answered or bool(delta.text or delta.reasoning or delta.finish_reason or delta.usage)
                    yield delta
            if not answered:
                raise unreadable(self.spec, "no text, finish reason or usage in it")

        return deltas

    @functools.wraps(method)
    def call(self: HTTPProvider, *args: Any, **kwargs: Any) -> Any:
        with readable(self.spec):
            return method(self, *args, **kwargs)

    return call


DRAIN_SECONDS = 0.2  # reading on after the end marker, so the connection can be reused


def _read_timeout(response: httpx.Response) -> float:
    """The read timeout the request was sent with (each request may set its own)."""
    timeout = response.request.extensions.get("timeout", {}).get("read")
    return float(timeout) if timeout else DEFAULT_TIMEOUT


def _silent(spec: ProviderSpec, seconds: float, text: str) -> ProviderError:
    """The provider went quiet for longer than the timeout (keep-alive comments do not count)."""
    if not text:
        return RequestTimeout(
            f"{spec.label} ({spec.id}) sent no text for {seconds:g} s (keep-alive comments do not count). "
            "Try again later, or allow more time with --timeout or timeout=.",
            provider=spec.id,
        )
    return interrupted(spec, f"the stream went silent for {seconds:g} s", text)


async def _adrain(items: AsyncIterator[Any]) -> None:
    """``_drain`` for asyncio."""
    import httpx

    try:
        async for _ in items:
            pass
    except httpx.HTTPError:
        pass
