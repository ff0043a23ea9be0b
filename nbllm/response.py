"""One answer as it streams: the object every front end iterates (CLI, magics, API, widget).

A ``Response`` is made from a provider and a request and sends nothing until it is read.
Iterating it yields ``Delta``s while it adds up the text, reasoning, usage and finish reason
and times the first token and the whole answer. However the reading ends (the last delta, a
provider error, a dropped stream, ``break``, ``close()``, Ctrl-C, garbage collection), the
provider's stream is closed and the response is *finished* exactly once: a dropped stream's
``StreamInterrupted`` carries the partial text, and the completion callbacks run. Readers that
share one response read on where the other stopped; only the last one to stop early ends it.

Two hooks serve every front end at once, so features such as an exchange log or a cache
plug in here and never in the CLI, magics or widget:

- ``add_observer(fn)``: ``fn(response)`` is called once with every finished response, success
  or failure, after the response's own ``on_done`` callbacks. Read ``provider``, ``model``,
  ``request``, ``text``, ``reasoning``, ``usage``, ``finish_reason``, ``first_token_s``,
  ``total_s``, ``error``, ``ok``, ``source`` and ``meta``. Observers may be called from worker
  threads (compare mode runs one response per thread). An observer that raises is reported as
  a ``RuntimeWarning`` and never costs the user the answer.
- ``add_responder(fn)``: ``fn(response)`` is asked before the provider is called; returning an
  iterable of ``Delta``s answers the request with them (a replay: the provider is not called and
  ``meta["replayed"]`` is set), returning ``None`` passes. The first responder that answers wins.

Both return a function that removes the hook again.

``close()`` may be called from any thread, also while another thread is reading: the reading
thread then ends as on a ``break`` (partial text kept, no error). Providers make that prompt by
registering, while the first delta is read (where they connect and send), how to cut the
connection (``on_stop``: an HTTP provider shuts its socket down); a provider that registers
nothing stops at its next delta.

``AsyncResponse`` is the asyncio twin (``async for``, ``await areply()``): it differs only in
how it reads the provider (``astream``/``afetch``), so the hooks, figures and finishing are the
same object's.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nbllm.errors import StreamInterrupted
from nbllm.messages import ChatRequest, Delta, Usage
from nbllm.secrets import aredact_deltas, mask_partial, redact_deltas, redact_text, secret_values

if TYPE_CHECKING:
    from nbllm.providers.base import Provider

Callback = Callable[["Response"], None]
Responder = Callable[["Response"], "Iterable[Delta] | None"]

SOURCES = ("api", "cli", "magic", "compare", "widget")  # the front ends that set ``source``

_observers: list[Callback] = []
_responders: list[Responder] = []

STOP_WAIT = 2.0  # seconds close() waits for a reader in another thread to end (it ends later if it must)
class _Reading(threading.local):
    response: Response | None = None  # the Response whose provider stream this thread is opening


_reading = _Reading()
_stopping = threading.Lock()  # a stop registered while close() runs in another thread is not missed
_ended = threading.Condition()  # notified whenever a response finishes; close() waits on it


def on_stop(stop: Callable[[], None]) -> None:
    """Register how to cut the stream this thread is reading, for ``close()`` from another thread.

    Providers call it once their connection is open (``HTTPProvider.send``: shut the socket down);
    outside a response it does nothing, and a response already asked to stop calls ``stop`` at once.
    """
    response = _reading.response
    if response is not None:
        response._add_stop(stop)


def stop_requested() -> bool:
    """The response this thread is reading was closed from another thread (retries then give up)."""
    response = _reading.response
    return response is not None and response._stop_requested


def add_observer(fn: Callback) -> Callable[[], None]:
    """Call ``fn(response)`` once for every finished response; returns the remover."""
    _observers.append(fn)
    return lambda: _remove(_observers, fn)


def add_responder(fn: Responder) -> Callable[[], None]:
    """Let ``fn(response)`` answer requests before providers are called; returns the remover."""
    _responders.append(fn)
    return lambda: _remove(_responders, fn)


def _remove(hooks: list[Any], fn: Any) -> None:
    if fn in hooks:
        hooks.remove(fn)


class Response:
    """A streamed answer and, once finished, its record: text, reasoning, usage, timings, error."""

    def __init__(self, provider: Provider, request: ChatRequest, *, stream: bool = True, source: str = "api",
                 on_done: Iterable[Callback] = (), meta: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._setup(provider.spec.id, request, source, on_done, meta, clock)
        self._opener = (provider.stream if stream else provider.fetch)
        self.streamed = stream

    @classmethod
    def from_deltas(cls, deltas: Iterable[Delta], *, provider: str, model: str,
                    request: ChatRequest | None = None, source: str = "api", on_done: Iterable[Callback] = (),
                    clock: Callable[[], float] = time.perf_counter) -> Response:
        """A response over deltas from elsewhere (a replay, a test, a benchmark)."""
        self = cls.__new__(cls)
        self._setup(provider, request or ChatRequest(messages=[], model=model), source, on_done, None, clock)
        self._opener = lambda _request: iter(deltas)
        self.streamed = True
        return self

    def _setup(self, provider: str, request: ChatRequest, source: str, on_done: Iterable[Callback],
               meta: dict[str, Any] | None, clock: Callable[[], float]) -> None:
        self.provider = provider  # the provider's id
        self.model = request.model
        self.request = request
        self.source = source
        self.meta: dict[str, Any] = dict(meta or {})
        self.usage = Usage()
        self.finish_reason: str | None = None
        self.first_token_s: float | None = None
        self.total_s = 0.0
        self.error: BaseException | None = None  # what ended the stream early (provider error, Ctrl-C)
        self.stopped = False  # the reader stopped before the end (break, close(), its own exception)
        self.done = False
        self._callbacks = list(on_done)
        self._clock = clock
        self._start = 0.0
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._deltas: Iterator[Delta] | None = None
        self._ahead: list[Delta] = []  # read by prefetch(), not yet handed to the reader
        self._reader: weakref.ref[Iterator[Delta]] | None = None
        self._readers: weakref.WeakSet[Generator[Delta, None, None]] = weakref.WeakSet()  # not yet ended
        self._reader_thread: int | None = None  # the thread that reads the provider's stream
        self._stop_requested = False  # close() was called while a thread was reading
        self._stops: list[Callable[[], None]] = []  # how to cut the open connection (on_stop)

    def __repr__(self) -> str:
        state = "ok" if self.ok else type(self.error).__name__ if self.error else "stopped" if self.done else "open"
        return f"<Response {self.provider}:{self.model} {state} {len(self.text)} chars>"

    def __str__(self) -> str:
        return self.text

    @property
    def text(self) -> str:
        """The answer so far (all of it once finished)."""
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        """Reasoning text kept apart from the answer (reasoning models), so far."""
        return "".join(self._reasoning)

    @property
    def ok(self) -> bool:
        """Finished, complete and without error: what history and caches may keep."""
        return self.done and self.error is None and not self.stopped

    @property
    def cached(self) -> bool:
        """Answered from the exchange log (cache or replay), not by the provider."""
        return bool(self.meta.get("replayed"))

    @property
    def tokens(self) -> int | None:
        """Tokens of the answer (the total when the provider counts only that)."""
        return self.usage.completion_tokens or self.usage.total_tokens

    def on_done(self, callback: Callback) -> Response:
        """Call ``callback(self)`` once when the response finishes (at once if it already has)."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)
        return self

    # -- reading ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Delta]:
        reader = self._read()
        self._reader = weakref.ref(reader)
        self._readers.add(reader)
        return reader

    def _read(self) -> Generator[Delta, None, None]:
        try:
            while self._ahead:
                yield self._ahead.pop(0)
            while not self.done and not self._stop_requested:
                delta = self._next()
                if delta is None:
                    return
                yield delta
        finally:  # the last reader stopped early (break, close, GC, its own exception): end here
            if not self.done and (self._stop_requested or not self._other_reader()):
                self._finish(stopped=True)

    def _other_reader(self) -> bool:
        """Another reader is part-way through this answer (this one is running its ``finally``)."""
        import inspect

        return any(inspect.getgeneratorstate(r) == inspect.GEN_SUSPENDED for r in self._readers)

    def _next(self) -> Delta | None:
        """One delta from the provider, added up; None at the end; errors finish and raise.

        A failure after ``close()`` from another thread cut the connection is that stop, not an error.
        """
        self._reader_thread = threading.get_ident()
        try:
            # a responder or an opener that raises is the response's error too
            delta = self._first() if self._deltas is None else next(self._deltas)
        except StopIteration:
            self._finish()
            return None
        except Exception as exc:
            if self._stop_requested:
                self._finish(stopped=True)
                return None
            self._finish(error=exc)
            raise
        except BaseException as exc:  # Ctrl-C while waiting for the network
            self._finish(error=exc)
            raise
        self._add(delta)
        return delta

    def _first(self) -> Delta:
        """Open the stream and read its first delta: where providers connect, send and retry, so
        where ``on_stop`` and ``stop_requested`` find this response."""
        outer, _reading.response = _reading.response, self
        try:
            self._open()
            return next(self._deltas)  # type: ignore[arg-type]
        finally:
            _reading.response = outer

    def _open(self) -> None:
        self._start = self._clock()
        replay = self._replay()
        deltas = iter(replay if replay is not None else self._opener(self.request))
        self._deltas = redact_deltas(deltas)  # every front end reads masked text

    def _replay(self) -> Iterable[Delta] | None:
        """The first responder's answer (the provider is then not called), or None."""
        for responder in list(_responders):
            replay = responder(self)
            if replay is not None:
                self.meta["replayed"] = True
                return replay
        return None

    def _add(self, delta: Delta) -> None:
        if self.first_token_s is None and (delta.text or delta.reasoning):
            self.first_token_s = self._clock() - self._start
        if delta.text:
            self._text.append(delta.text)
        if delta.reasoning:
            self._reasoning.append(delta.reasoning)
        self.usage = delta.usage or self.usage
        self.finish_reason = delta.finish_reason or self.finish_reason

    def prefetch(self) -> Response:
        """Read up to the first delta with text, so a failure before any text is raised here.

        The deltas read are handed out again by the next iteration (a fallback chain uses this
        to move on to another provider while nothing has been shown).
        """
        while not self.done and not self._stop_requested and not any(d.text or d.reasoning for d in self._ahead):
            delta = self._next()
            if delta is None:
                break
            self._ahead.append(delta)
        return self

    def reply(self) -> Response:
        """Read to the end and return the finished response; a failure is raised."""
        if self.done and self.error is not None:
            raise self.error
        for _ in self:
            pass
        return self

    def close(self) -> None:
        """Stop reading: the provider's stream is closed and the response finished (idempotent).

        From a thread other than the reader's, the reader is stopped where it waits (the connection
        is cut) or before its next delta, and ends in its own thread as on a ``break``: its stream is
        never closed under it. This waits up to STOP_WAIT seconds for that.
        """
        if self.done:
            return
        reading = self._reader_thread
        if reading is not None and reading != threading.get_ident():
            self._request_stop(wait=True)
            return
        reader = self._reader() if self._reader is not None else None
        if reader is not None:
            try:
                reader.close()  # type: ignore[attr-defined]
            except ValueError:  # closed from its own running step (a responder): it ends after this delta
                self._request_stop(wait=False)
                return
        if not self.done and self._deltas is not None:
            self._finish(stopped=True)

    def _request_stop(self, wait: bool) -> None:
        with _stopping:
            self._stop_requested = True
            stops = list(self._stops)
        for stop in stops:
            stop()
        if wait:
            with _ended:
                _ended.wait_for(lambda: self.done, STOP_WAIT)

    def _add_stop(self, stop: Callable[[], None]) -> None:
        with _stopping:
            self._stops.append(stop)
            now = self._stop_requested
        if now:
            stop()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- finishing --------------------------------------------------------------------------
    def _finish(self, error: BaseException | None = None, stopped: bool = False) -> None:
        """Close the stream, freeze the figures, then run the callbacks and observers once."""
        if self.done:
            return
        self.done = True
        self._stops = []
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()
        self._text = [self.text]  # joined once: later reads cost nothing
        self._reasoning = [self.reasoning]
        self.total_s = self._clock() - self._start
        self.error, self.stopped = error, stopped
        if isinstance(error, StreamInterrupted):
            error.partial_text = error.partial_text or self.text
        try:
            for callback in self._callbacks:
                callback(self)
        finally:  # a front end's failing callback still reaches the log
            self._observe()
            if self._stop_requested:  # a close() in another thread waits for this
                with _ended:
                    _ended.notify_all()

    def _observe(self) -> None:
        for observer in list(_observers):
            try:
                observer(self)
            except Exception as exc:  # a broken log or plugin must not lose the user's answer
                warnings.warn(f"nbllm: the response observer {observer!r} failed: {type(exc).__name__}: {exc}",
                              RuntimeWarning, stacklevel=2)


class AsyncResponse(Response):
    """The asyncio twin: ``async for delta in response``, ``await response.areply()``.

    Only the reading differs from ``Response``: the provider's ``astream``/``afetch`` are read
    instead of ``stream``/``fetch``; responders, figures, callbacks and observers are the same.
    ``gate`` (a rate limiter) and ``tokens`` (the request's estimate) go to the provider's send.
    """

    _mask_at_end = False  # areply() with nobody reading: mask the whole text once, not every delta

    def __init__(self, provider: Provider, request: ChatRequest, *, stream: bool = True, source: str = "api",
                 on_done: Iterable[Callback] = (), meta: dict[str, Any] | None = None, gate: Any = None,
                 tokens: int = 0, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(provider, request, stream=stream, source=source, on_done=on_done, meta=meta, clock=clock)
        opener = provider.astream if stream else provider.afetch
        self._aopener = lambda req: opener(req, gate=gate, tokens=tokens)
        self._adeltas: AsyncIterator[Delta] | None = None

    def __iter__(self) -> Iterator[Delta]:
        raise TypeError("An AsyncResponse is read with `async for` or `await response.areply()`.")

    @property
    def text(self) -> str:
        """The answer so far; while ``areply()`` reads unmasked deltas, nothing until it is masked."""
        return "" if self._mask_at_end and not self.done else "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "" if self._mask_at_end and not self.done else "".join(self._reasoning)

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._aread()

    async def _aread(self) -> AsyncIterator[Delta]:
        try:
            while not self.done:
                delta = await self._anext()
                if delta is None:
                    return
                yield delta
        finally:  # the reader stopped early (break, cancellation, its own exception): end here
            if not self.done:
                await self._afinish(stopped=True)

    async def _anext(self) -> Delta | None:
        if self._adeltas is None:
            self._start = self._clock()
            replay = self._replay()
            deltas = _aiter(replay) if replay is not None else self._aopener(self.request)
            self._adeltas = deltas if self._mask_at_end else aredact_deltas(deltas)  # as the blocking reader masks
        try:
            delta = await self._adeltas.__anext__()
        except StopAsyncIteration:
            await self._afinish()
            return None
        except BaseException as exc:  # provider errors, cancellation, Ctrl-C
            await self._afinish(error=exc)
            raise
        self._add(delta)
        return delta

    async def _afinish(self, error: BaseException | None = None, stopped: bool = False) -> None:
        """Close the provider's stream (awaited), then finish as ``Response`` does."""
        aclose = getattr(self._adeltas, "aclose", None)
        if aclose is not None and not self.done:
            await aclose()
        if self._mask_at_end and not self.done:  # what stream masking gives, in one pass
            values = secret_values()
            self._text = [redact_text("".join(self._text), values)]
            self._reasoning = [redact_text("".join(self._reasoning), values)]
            if error is not None:
                mask_partial(error)
        self._finish(error, stopped)

    async def areply(self) -> AsyncResponse:
        """Read to the end and return the finished response; a failure is raised.

        Read this way (nobody has started reading), the answer is masked once when it is complete,
        so ``text`` and ``reasoning`` stay empty until then.
        """
        if self.done and self.error is not None:
            raise self.error
        if self._adeltas is None:  # nobody else reads these deltas: no need to mask each one
            self._mask_at_end = True
        while not self.done and await self._anext() is not None:
            pass
        return self

    async def aclose(self) -> None:
        """Stop reading: the provider's stream is closed and the response finished (idempotent)."""
        if not self.done and self._adeltas is not None:
            await self._afinish(stopped=True)


async def _aiter(deltas: Iterable[Delta]) -> AsyncIterator[Delta]:
    for delta in deltas:
        yield delta


# -- the exchange log and its cache (nbllm.log/hook.py), hooked in here once for every front end --
# Thin wrappers, so nbllm.log and sqlite3 load with the first response, never with %load_ext.
def _log_exchange(response: Response) -> None:
    from nbllm.log.hook import record

    record(response)


def _answer_from_log(response: Response) -> Iterable[Delta] | None:
    from nbllm.log.hook import respond

    return respond(response)


add_observer(_log_exchange)
add_responder(_answer_from_log)
