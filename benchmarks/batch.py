"""Whole tables: ``nbllm.map`` against a bare asyncio + httpx loop, ``imap`` memory, the limiter's pace.

1. **Throughput.** 1,000 rows, ``concurrency=16``, against a loopback ``FakeBatchServer``
   (tests/fakes) that waits 50 ms before answering each request (then streams a short "echo"
   answer). The server runs in a child process, so its threads do not share this process's GIL
   with the client being measured. The baseline is the bare loop a user would write: one
   ``httpx.AsyncClient``, an ``asyncio.Semaphore(16)``, and for every row a POST of the exact JSON
   body nbllm sends, reading the whole streamed body. ``nbllm.map`` runs with its limiter off
   (``rpm=0, tpm=0``: the figure is nbllm's own cost, not a rate limit) and no progress bar,
   logging every row to the exchange log as a user's run does (a temporary log; every round
   asks new rows, so none is answered from the log).
   Variants alternate round by round. CPU is this process's (``time.process_time``).
2. **imap memory.** ``nbllm.imap`` over a generator of N rows, each made as it is read (server
   answering at once, in the child process), Python allocations (``tracemalloc``) while consuming, for growing N: the live
   memory sampled every 250 rows after a collection (its median; flat means it does not grow with
   N), the largest sample, and the raw peak. ``nbllm.map`` over the same rows, which keeps every answer, is shown beside it.
3. **Limiter pace.** ``nbllm.map`` with ``rpm=1200`` over 200 rows at ``concurrency=16`` against
   an in-process server that records when each request arrives; the achieved rate is
   ``60 * (n - 1) / (last arrival - first arrival)``.

Run: ``python benchmarks/batch.py [--quick] [--markdown] [--json FILE]``
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchkit import (
    ROOT,
    Check,
    Stats,
    Table,
    emit,
    fmt_mib,
    fmt_ratio,
    fmt_time,
    interleave,
    isolate_env,
    options,
    ratio,
    route,
    use_repo,
)

DELAY = 0.05
CONCURRENCY = 16
TARGET_RATIO = 1.2
TARGET_RPM_ERROR = 0.05
PACE_RPM = 1200
KEY = "bench-key-0000"
BARE = "bare asyncio + httpx.AsyncClient"
NO_LOG = "nbllm.map, NBLLM_LOG=off"
SERVE = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fakes.batch_server import FakeBatchServer
server = FakeBatchServer(delay={delay}).start()
print(server.base_url, flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def child_server(delay: float) -> Iterator[str]:
    """A FakeBatchServer in its own process; yields its base URL, stops it on exit."""
    code = SERVE.format(root=str(ROOT), delay=delay)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)


_runs = itertools.count()


def prompts(n: int) -> list[str]:
    """Rows no run has asked before: nbllm.map answers rows it finished earlier from the exchange
    log (resume), which would turn a repeated round into a cache read, not a run."""
    return list(prompt_stream(n))


def prompt_stream(n: int) -> Iterator[str]:
    """``prompts`` made one at a time: an input that is never all in memory (a list of N prompts
    would itself grow with N, ~130 bytes a row, and hide whether imap does)."""
    run = next(_runs)
    return (f"Label review {run}-{i}: the kettle boils fast but the lid sticks." for i in range(n))


# -- 1. throughput ----------------------------------------------------------------------------
def bare_loop(base_url: str, rows: list[str]) -> Callable[[], None]:
    """The loop a user would write by hand, sending nbllm's exact request body."""
    import httpx

    def body(text: str) -> dict[str, Any]:
        return {"model": "ernie-4.0-turbo-8k", "messages": [{"role": "user", "content": text}], "stream": True,
                "stream_options": {"include_usage": True}}

    async def main() -> None:
        gate = asyncio.Semaphore(CONCURRENCY)
        headers = {"Authorization": f"Bearer {KEY}", "Accept": "text/event-stream"}
        async with httpx.AsyncClient(base_url=base_url + "/", headers=headers, timeout=60) as client:
            async def one(text: str) -> str:
                async with gate, client.stream("POST", "chat/completions", json=body(text)) as response:
                    response.raise_for_status()
                    return (await response.aread()).decode()

            answers = await asyncio.gather(*(one(t) for t in rows))
        if not all("[DONE]" in a for a in answers):
            raise RuntimeError("the bare loop got an incomplete answer")

    return lambda: asyncio.run(main())


def with_map(n: int, log: bool = True) -> Callable[[], None]:
    import nbllm

    def run() -> None:
        rows = prompts(n)
        saved = os.environ["NBLLM_LOG"]
        if not log:
            os.environ["NBLLM_LOG"] = "off"
        try:
            answers = nbllm.map("{text}", rows, provider="ernie", concurrency=CONCURRENCY, rpm=0, tpm=0,
                                progress=False)
        finally:
            os.environ["NBLLM_LOG"] = saved
        if answers.summary.answered != n or answers.summary.from_log:
            raise RuntimeError(f"nbllm.map: {answers.summary}")

    return run


def cpu_and_wall(fn: Callable[[], None], cpu: list[float]) -> Callable[[], float]:
    def run() -> float:
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - start_cpu)
        return time.perf_counter() - start

    return run


def throughput(n: int, rounds: int) -> tuple[dict[str, Stats], dict[str, float]]:
    rows = prompts(n)
    cpu: dict[str, list[float]] = {BARE: [], "nbllm.map": [], NO_LOG: []}
    with child_server(DELAY) as base_url:
        route("ernie", base_url, KEY)
        variants = {BARE: cpu_and_wall(bare_loop(base_url, rows), cpu[BARE]),
                    "nbllm.map": cpu_and_wall(with_map(n), cpu["nbllm.map"]),
                    NO_LOG: cpu_and_wall(with_map(n, log=False), cpu[NO_LOG])}
        result = interleave(variants, rounds, warmup=1)
    per_row_cpu = {name: sorted(values)[len(values) // 2] / n for name, values in cpu.items()}
    return result, per_row_cpu


# -- 2. imap memory ---------------------------------------------------------------------------
SAMPLE_EVERY = 250


def traced(fn: Callable[[Callable[[], None]], None]) -> tuple[float, float, float]:
    """``fn`` run under tracemalloc: (median and largest live memory sampled after a collection, raw peak).

    ``fn`` calls its argument every so often while it consumes; that samples the live memory
    after ``gc.collect()``. httpx leaves reference cycles behind every request (Request, URL,
    stream objects), which the cyclic collector frees in batches, so the raw peak swings with
    the collector's timing; the live samples show what the run actually keeps. Flatness compares
    medians: the live figure swings by a few hundred KiB with the rows in flight and queued for the
    log, and the largest of 32 samples (8,000 rows) sits higher than the largest of 4 (1,000 rows)
    even when nothing grows.
    """
    live: list[int] = []

    def sample() -> None:
        gc.collect()
        live.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        fn(sample)
        return float(statistics.median(live)), float(max(live)), float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def memory(sizes: list[int]) -> dict[int, tuple[float, float, float, float, float]]:
    import nbllm

    def consume_imap(n: int, sample: Callable[[], None]) -> None:
        rows = ({"text": text + " " + "x" * 200} for text in prompt_stream(n))
        count = 0
        for count, _ in enumerate(nbllm.imap("{text}", rows, provider="ernie", concurrency=CONCURRENCY, rpm=0, tpm=0),
                                  start=1):
            if count % SAMPLE_EVERY == 0:
                sample()
        if count != n:
            raise RuntimeError("imap lost rows")

    def keep_map(n: int, sample: Callable[[], None]) -> None:
        rows = ({"text": text + " " + "x" * 200} for text in prompt_stream(n))
        answers = nbllm.map("{text}", rows, provider="ernie", concurrency=CONCURRENCY, rpm=0, tpm=0, progress=False)
        sample()
        if len(answers) != n:
            raise RuntimeError("map lost rows")

    def log_off(fn: Callable[[Callable[[], None]], None]) -> Callable[[Callable[[], None]], None]:
        def run(sample: Callable[[], None]) -> None:
            saved, os.environ["NBLLM_LOG"] = os.environ["NBLLM_LOG"], "off"
            try:
                fn(sample)
            finally:
                os.environ["NBLLM_LOG"] = saved

        return run

    out: dict[int, tuple[float, float, float, float, float]] = {}
    with child_server(0.0) as base_url:
        route("ernie", base_url, KEY)
        consume_imap(50, lambda: None)  # warm-up: imports, client, caches
        for n in sizes:
            imap_live, imap_max, imap_peak = traced(lambda sample, n=n: consume_imap(n, sample))
            off_live, _, _ = traced(log_off(lambda sample, n=n: consume_imap(n, sample)))
            map_live, _, _ = traced(lambda sample, n=n: keep_map(n, sample))
            out[n] = (imap_live, imap_max, imap_peak, off_live, map_live)
    return out


# -- 3. limiter pace --------------------------------------------------------------------------
def pace(n: int) -> tuple[float, float]:
    """Achieved requests a minute at the server, and the wall time of the run."""
    use_repo()
    import nbllm
    from tests.fakes.batch_server import FakeBatchServer

    with FakeBatchServer(delay=DELAY) as server:
        route("ernie", server.base_url, KEY)
        start = time.perf_counter()
        nbllm.map("{text}", prompts(n), provider="ernie", concurrency=CONCURRENCY, rpm=PACE_RPM, tpm=0, progress=False)
        wall = time.perf_counter() - start
        arrivals = sorted(server.arrivals)
    return 60 * (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), wall


def report(n: int, rounds: int, result: dict[str, Stats], cpu: dict[str, float], mem: dict[int, tuple[float, float, float, float, float]],
           achieved: float, pace_rows: int, pace_wall: float) -> tuple[list[Table], list[Check]]:
    bare, mapped = result[BARE], result["nbllm.map"]
    t1 = Table(f"{n:,} rows, server answering after {DELAY * 1e3:.0f} ms, concurrency {CONCURRENCY}, {rounds} rounds, interleaved",
               ["variant", "wall (median)", "spread", "ratio", "rows/s", "client CPU per row"])
    for name, value in result.items():
        t1.add(name, fmt_time(value.median), value.spread(fmt_time), fmt_ratio(ratio(value, bare)) if value is not bare else "",
               f"{n / value.median:,.0f}", fmt_time(cpu[name]))
    t1.notes.append(f"ideal (latency only): {n / CONCURRENCY * DELAY:.2f} s; the server runs in a child process")
    t1.notes.append("nbllm.map writes every row to the exchange log (a temporary one), as a user's run does; "
                    "the NBLLM_LOG=off row shows what that costs")
    t2 = Table("imap memory: Python allocations while consuming (tracemalloc)",
               ["rows", "nbllm.imap live (median of samples)", "nbllm.imap live (max of samples)", "nbllm.imap raw peak",
                "nbllm.imap live, NBLLM_LOG=off (median)", "nbllm.map live at the end (keeps every answer)"])
    for rows, (imap_live, imap_max, imap_peak, off_live, map_live) in mem.items():
        t2.add(f"{rows:,}", fmt_mib(imap_live), fmt_mib(imap_max), fmt_mib(imap_peak), fmt_mib(off_live), fmt_mib(map_live))
    sizes = sorted(mem)
    growth = mem[sizes[-1]][0] / mem[sizes[0]][0]
    off_growth = mem[sizes[-1]][3] / mem[sizes[0]][3]
    t2.notes.append(f"live: sampled every {SAMPLE_EVERY} rows after gc.collect(); median imap at {sizes[-1]:,} rows / at "
                    f"{sizes[0]:,} rows: {growth:.2f}x for {sizes[-1] / sizes[0]:.0f}x the rows "
                    f"({off_growth:.2f}x with NBLLM_LOG=off)")
    t2.notes.append("raw peak: includes the reference cycles httpx leaves per request until the cyclic collector "
                    "frees them, so it moves with the collector's timing")
    error = abs(achieved - PACE_RPM) / PACE_RPM
    t3 = Table("Limiter pace: rpm asked vs achieved at the server", ["rpm asked", "rows", "achieved rpm", "error", "wall"])
    t3.add(f"{PACE_RPM:,}", f"{pace_rows:,}", f"{achieved:,.0f}", f"{error:.1%}", fmt_time(pace_wall))
    checks = [
        Check("nbllm.map vs bare asyncio loop (wall)", fmt_ratio(ratio(mapped, bare)), f"<= {TARGET_RATIO}x",
              ratio(mapped, bare) <= TARGET_RATIO),
        Check("imap live memory (median of samples), largest vs smallest input", f"{growth:.2f}x", "flat (< 1.5x)", growth < 1.5),
        Check("limiter holds rpm", f"{error:.1%} off", f"within {TARGET_RPM_ERROR:.0%}", error <= TARGET_RPM_ERROR),
    ]
    return [t1, t2, t3], checks


def main(argv: list[str] | None = None) -> None:
    args = options(__doc__.splitlines()[0], argv)
    isolate_env()
    use_repo()
    n, rounds = (100, 1) if args.quick else (1_000, 3)
    sizes = [500, 1_000] if args.quick else [1_000, 4_000, 8_000]
    pace_rows = 30 if args.quick else 200
    result, cpu = throughput(n, rounds)
    mem = memory(sizes)
    achieved, pace_wall = pace(pace_rows)
    tables, checks = report(n, rounds, result, cpu, mem, achieved, pace_rows, pace_wall)
    emit(args, "batch", tables, checks)


if __name__ == "__main__":
    main()
