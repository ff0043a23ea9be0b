"""Bounded concurrency over an async call, and a private event loop to run it from plain code.

``run_bounded`` keeps at most ``concurrency`` calls in flight, pulls the next input only when a
slot frees (so an input larger than memory streams through), and yields ``(position, outcome)``
as calls finish; an exception becomes a ``Failed`` outcome, never the end of the run.
``in_thread`` runs such an async iterator on its own loop in a worker thread, so ``nbllm.map``
works the same in a terminal and inside a notebook (whose kernel already runs a loop). Ctrl-C or
a kernel interrupt lands in the calling thread: it cancels the loop's work at once, the open
requests are closed, and the caller keeps everything that finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from nbllm.batch.outcome import Failed

X = TypeVar("X")
T = TypeVar("T")

_ITEM, _DONE, _ERROR = range(3)


async def run_bounded(items: Iterable[X], call: Callable[[X], Awaitable[T]], concurrency: int,
                      stop: Callable[[Failed], bool] = lambda failed: False) -> AsyncIterator[tuple[int, T | Failed]]:
    """Yield ``(position, result or Failed)`` in completion order, never more than ``concurrency``
    calls at once. When ``stop`` says a failure dooms every other row (a refused key), no new call
    starts; the ones in flight finish."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    source = enumerate(items)
    pending: set[asyncio.Task[tuple[int, T | Failed]]] = set()
    stopped = False

    async def one(position: int, item: X) -> tuple[int, T | Failed]:
        try:
            return position, await call(item)
        except Exception as exc:  # one row's failure is its own; the run goes on
            return position, Failed.of(exc)

    try:
        while True:
            while not stopped and len(pending) < concurrency:
                nxt = next(source, None)
                if nxt is None:
                    stopped = True
                    break
                pending.add(asyncio.ensure_future(one(*nxt)))
            if not pending:
                return
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: t.result()[0]):
                position, outcome = task.result()
                if isinstance(outcome, Failed) and stop(outcome):
                    stopped = True
                yield position, outcome
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def in_thread(make: Callable[[], AsyncIterator[T]], buffer: int = 64, poll: float = 0.1,
              leftover: Callable[[T], None] | None = None) -> Iterator[T]:
    """Iterate an async iterator that runs on a private event loop in a worker thread.

    At most ``buffer`` items wait for the caller, so a slow consumer slows the producer instead
    of filling memory. Leaving the loop early (``break``, an exception, KeyboardInterrupt)
    cancels the producer and waits for it to close its connections; items already produced but
    not yet taken go to ``leftover`` (finished rows are kept, not dropped).
    """
    handoff: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=buffer)
    loop = asyncio.new_event_loop()

    async def pump() -> None:
        try:
            async for item in make():
                while True:  # wait for room without blocking the loop's other work
                    try:
                        handoff.put_nowait((_ITEM, item))
                        break
                    except queue.Full:
                        await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await _put(handoff, (_ERROR, exc))
            return
        await _put(handoff, (_DONE, None))

    task = loop.create_task(pump())
    worker = threading.Thread(target=_run_loop, args=(loop, task), name="nbllm-batch", daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, value = handoff.get(timeout=poll)
            except queue.Empty:
                if not worker.is_alive() and handoff.empty():
                    return
                continue
            if kind == _DONE:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        if worker.is_alive() and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing to cancel
                loop.call_soon_threadsafe(task.cancel)
        while True:
            _drain(handoff, leftover)
            if not worker.is_alive():
                break
            worker.join(poll)
        _drain(handoff, leftover)


async def _put(handoff: queue.Queue[tuple[int, Any]], message: tuple[int, Any]) -> None:
    while True:
        try:
            handoff.put_nowait(message)
            return
        except queue.Full:
            await asyncio.sleep(0.005)


def _drain(handoff: queue.Queue[tuple[int, Any]], leftover: Callable[[Any], None] | None) -> None:
    while True:
        try:
            kind, value = handoff.get_nowait()
        except queue.Empty:
            return
        if kind == _ITEM and leftover is not None:
            leftover(value)


def _run_loop(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(task)
    except BaseException:  # cancelled by the consumer; it already has what it needs
        pass
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
