"""The parts of nbllm.map that need no provider: limiter arithmetic, row templates, the bounded runner."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import namedtuple
from dataclasses import dataclass

import pytest

from nbllm.batch.limiter import RateLimiter, estimate_tokens, limiter_for
from nbllm.batch.outcome import Failed, Summary
from nbllm.batch.rows import fill, iter_rows, template_fields
from nbllm.batch.runner import in_thread, run_bounded
from nbllm.errors import AuthError, ContextError, RateLimitError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- limiter -------------------------------------------------------------------------------
def test_requests_are_spaced_by_rpm() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=120, clock=clock)
    starts = [limiter.reserve() for _ in range(5)]
    assert starts == [100.0, 100.5, 101.0, 101.5, 102.0]


def test_tokens_are_spaced_by_tpm_and_settled_by_usage() -> None:
    clock = Clock()
    limiter = RateLimiter(tpm=6000, clock=clock)  # 100 tokens a second
    assert limiter.reserve(200) == 100.0
    assert limiter.reserve(50) == 102.0  # the first request's 200 tokens take two seconds
    limiter.settle(50, 150)  # it used 100 tokens more than estimated: one second more
    assert limiter.reserve(10) == 103.5


def test_a_pause_holds_every_later_slot() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=60, clock=clock)
    assert limiter.reserve() == 100.0
    limiter.pause(30)
    assert limiter.reserve() == 130.0
    assert limiter.reserve() == 131.0


def test_no_limits_means_no_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert {limiter.reserve(1000) for _ in range(10)} == {100.0}


def test_a_pause_while_waiting_sends_the_worker_back_in_line() -> None:
    limiter = RateLimiter(rpm=600)  # 0.1 s apart, real clock
    order: list[str] = []

    async def main() -> None:
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.02)
        limiter.pause(0.3)  # a 429 arrives while the waiter sleeps towards its slot
        paused_at = time.monotonic()
        await waiter
        order.append("waited past the pause" if time.monotonic() - paused_at >= 0.29 else "went early")

    asyncio.run(main())
    assert order == ["waited past the pause"]


def test_one_limiter_per_provider_endpoint() -> None:
    first = limiter_for("ernie", "https://a.example/v2", 60, None)
    again = limiter_for("ernie", "https://a.example/v2", 120, 1000)
    other = limiter_for("ernie", "https://b.example/v2", 60, None)
    assert first is again and (again.rpm, again.tpm) == (120, 1000)
    assert other is not first


def test_token_estimate_counts_text_and_answer_budget() -> None:
    assert estimate_tokens("x" * 100) == 51
    assert estimate_tokens("x" * 100, max_tokens=200) == 251


# -- rows ----------------------------------------------------------------------------------
Review = namedtuple("Review", "id text stars")


@dataclass
class Ticket:
    title: str
    body: str


def test_templates_fill_from_every_row_shape() -> None:
    fields = template_fields("{title}: {body}")
    assert fill("{title}: {body}", {"title": "A", "body": "b"}, fields) == "A: b"
    assert fill("{title}: {body}", Ticket("T", "x"), fields) == "T: x"
    assert fill("{text} ({stars}★)", Review(1, "good", 5), template_fields("{text} ({stars}★)")) == "good (5★)"
    assert fill("Label: {text}", "so slow", ["text"]) == "Label: so slow"


def test_template_fields_formats_and_literal_braces() -> None:
    assert template_fields("{a} {{json}} {b:.2f} {a} {c[0]} {d.e} {f:{w}}") == ["a", "b", "c", "d", "f", "w"]
    assert fill("{{x}} {p:.1f}", {"p": 2}, ["p"]) == "{x} 2.0"


def test_a_missing_column_names_it_and_the_row_columns() -> None:
    with pytest.raises(ContextError, match=r"\{stars\}.*its columns: text"):
        fill("{stars}", {"text": "a"}, ["stars"])


@pytest.mark.parametrize("template", ["{}", "{0}", "{unclosed"])
def test_bad_templates_are_clear(template: str) -> None:
    with pytest.raises(ContextError):
        template_fields(template)


def test_dataframe_and_series_rows_come_as_columns_in_order() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": [f"r{i}" for i in range(2500)], "n": range(2500)}, index=range(10, 2510))
    rows = list(iter_rows(frame))
    assert len(rows) == 2500 and rows[0] == {"text": "r0", "n": 0} and rows[-1]["n"] == 2499
    assert list(iter_rows(frame["text"]))[:2] == ["r0", "r1"]


@pytest.mark.parametrize("rows", ["one string", {"a": 1}, 42])
def test_single_values_are_not_rows(rows: object) -> None:
    with pytest.raises(ContextError):
        list(iter_rows(rows))


# -- outcome -------------------------------------------------------------------------------
def test_failed_is_falsy_and_the_summary_names_reasons() -> None:
    failed = Failed.of(RateLimitError("ERNIE answered HTTP 429.", retry_after=2.0))
    assert not failed and str(failed) == "<failed: RateLimitError>"
    summary = Summary(total=4)
    for value in ["a", failed, "b", failed]:
        summary.count(value)
    text = str(summary)
    assert text.startswith("2 of 4 rows answered; 2 failed (2 RateLimitError: ERNIE answered HTTP 429.)")
    assert "run the same call again" in text


# -- runner --------------------------------------------------------------------------------
def test_run_bounded_never_exceeds_concurrency_and_keeps_failures() -> None:
    in_flight = 0
    peak = 0

    async def call(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (n % 5))
        in_flight -= 1
        if n % 7 == 3:
            raise ValueError(f"row {n} is bad")
        return n * n

    async def main() -> dict[int, object]:
        return {i: out async for i, out in run_bounded(range(60), call, concurrency=4)}

    results = asyncio.run(main())
    assert peak == 4
    assert sorted(results) == list(range(60))
    assert results[5] == 25 and isinstance(results[3], Failed) and results[3].message == "row 3 is bad"


def test_run_bounded_pulls_input_only_when_a_slot_frees() -> None:
    pulled = 0

    def rows():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    async def call(n: int) -> int:
        return n

    async def main() -> int:
        async for position, _ in run_bounded(rows(), call, concurrency=3):
            if position == 5:
                return pulled
        return -1

    assert asyncio.run(main()) <= 9


def test_run_bounded_stops_starting_rows_after_a_fatal_failure() -> None:
    started: list[int] = []

    async def call(n: int) -> int:
        started.append(n)
        await asyncio.sleep(0)
        raise AuthError("key refused")

    async def main() -> list[int]:
        return [i async for i, _ in run_bounded(range(100), call, 2, stop=lambda f: f.reason == "AuthError")]

    finished = asyncio.run(main())
    assert len(started) == 2 and sorted(finished) == [0, 1]


def test_in_thread_runs_beside_a_running_loop_and_cancels_on_break() -> None:
    cancelled = threading.Event()

    async def produce():
        try:
            for i in range(10_000):
                await asyncio.sleep(0.001)
                yield i
        finally:
            cancelled.set()

    async def notebook_cell() -> list[int]:  # the kernel already runs a loop
        taken = []
        for item in in_thread(produce, buffer=4):
            taken.append(item)
            if len(taken) == 3:
                break
        return taken

    assert asyncio.run(notebook_cell()) == [0, 1, 2]
    assert cancelled.wait(5)


def test_in_thread_raises_the_producer_error_and_hands_over_leftovers() -> None:
    async def broken():
        yield 1
        raise RuntimeError("producer broke")

    with pytest.raises(RuntimeError, match="producer broke"):
        list(in_thread(broken))

    async def quick():
        for i in range(5):
            yield i
        await asyncio.sleep(10)

    kept: list[int] = []
    for item in in_thread(quick, buffer=8, leftover=kept.append):
        kept.append(item)
        time.sleep(0.3)  # the other four finish meanwhile and wait in the hand-off
        break
    assert sorted(kept) == [0, 1, 2, 3, 4]


def test_a_huge_token_estimate_holds_the_next_request_one_minute_at_most() -> None:
    clock = Clock()
    limiter = RateLimiter(tpm=60_000, clock=clock)
    assert limiter.reserve(10**9) == 100.0  # max_tokens=10**9 or a 10 MB row: 31 years at full spacing
    assert limiter.reserve(10) == 160.0
    limiter.settle(10**9, 10**9)  # the provider confirmed it: still one minute, not more
    assert limiter.reserve(10) == 160.01
