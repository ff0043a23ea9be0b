"""Streaming render cost: answers of 1k/10k/100k deltas through the magic's renderer versus raw.

Synthetic part: a prebuilt list of ``Delta``s (4-character pieces, like the fake server's) is
yielded by a generator that also moves a simulated clock on by 1/RATE s per delta, so the
renderer's ~100 ms throttle sees deltas arriving over time as from a real model, at no real
waiting. The renderer is ``magics.render.show`` (a ``Response`` over the deltas) + ``RichView`` publishing to a recording
publisher (it counts publishes and keeps only the last bundle; no frontend, no serialisation).
"Raw" consumes the same generator and joins the text. CPU is ``time.process_time``. The burst
rows use the real clock instead: deltas as fast as the CPU hands them over.

End-to-end part (issue 3, "the cost of a streamed answer"): one answer of many pieces from the
loopback fake, as ``%%llm`` in a real shell, as ``nbllm.stream`` consumed raw, and as a bare
httpx read of the same bytes. CPU is the calling thread's (``time.thread_time``).

Run: ``python benchmarks/render.py [--quick] [--markdown] [--json FILE]``
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from benchkit import (
    Check,
    Stats,
    Table,
    emit,
    fake_openai_server,
    fmt_count,
    fmt_ratio,
    fmt_time,
    interleave,
    isolate_env,
    options,
    ratio,
    route,
)

RATE = 100.0  # deltas per second a fast model streams
TARGET_RATIO_10K = 1.3
TARGET_UPDATES_PER_S = 10.5
TARGET_E2E_RATIO = 1.3
WORDS = "The quick brown fox jumps over the lazy dog; 数据 分析 with pandas and numpy, **bold** `code`.\n"


class SimClock:
    """A clock the delta generator moves on; calling it costs about what perf_counter does."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A display publisher that counts publishes and keeps only the latest bundle."""

    def __init__(self) -> None:
        self.count = 0
        self.chars = 0  # characters of Markdown sent, over every publish
        self.last: dict[str, Any] = {}

    def publish(self, data: dict[str, Any], metadata: Any = None, source: Any = None, *,
                transient: Any = None, update: bool = False, **kwargs: Any) -> None:
        self.count += 1
        self.chars += len(data.get("text/markdown", ""))
        self.last = data


def make_deltas(n: int) -> list[Any]:
    from nbllm.messages import Delta, Usage

    stream = itertools.cycle(WORDS)
    deltas = [Delta(text="".join(itertools.islice(stream, 4))) for _ in range(n - 1)]
    deltas.append(Delta(text="end.", finish_reason="stop", usage=Usage(10, n, n + 10)))
    return deltas


def arriving(deltas: list[Any], clock: SimClock | None) -> Iterator[Any]:
    """Yield the deltas, moving the simulated clock 1/RATE s on before each (None: real time)."""
    if clock is None:
        yield from deltas
        return
    step = 1.0 / RATE
    for i, delta in enumerate(deltas, 1):
        clock.now = i * step
        yield delta


class Run:
    """One way of consuming a synthetic answer; the sample is CPU seconds, publishes are kept."""

    def __init__(self, deltas: list[Any], simulated: bool, render: bool) -> None:
        self.deltas, self.simulated, self.render = deltas, simulated, render
        self.updates = 0
        self.publishes = 0
        self.chars = 0
        self.text = ""

    def __call__(self) -> float:
        from nbllm.magics.render import RichView, show

        from nbllm.response import Response

        clock = SimClock() if self.simulated else None
        tick: Callable[[], float] = clock if clock is not None else time.perf_counter
        start = time.process_time()
        if self.render:
            recorder = Recorder()
            view = RichView(recorder.publish, "markdown", clock=tick)
            answer = show(Response.from_deltas(arriving(self.deltas, clock), provider="ernie",
                                               model="ernie-4.0-turbo-8k", clock=tick), view)
            self.text, self.updates, self.publishes = answer.text, view.updates, recorder.count
            self.chars = recorder.chars
        else:
            self.text = "".join([d.text for d in arriving(self.deltas, clock)])
        return time.process_time() - start


def synthetic(sizes: list[int], repeats: dict[int, int], burst: list[int]) -> list[dict[str, Any]]:
    """Raw and rendered runs alternate; sizes after the first skip the warm-up (already warm)."""
    rows = []
    for i, n in enumerate(sizes):
        for simulated in [True] + ([False] if n in burst else []):
            deltas = make_deltas(n)
            raw, rendered = Run(deltas, simulated, False), Run(deltas, simulated, True)
            result = interleave({"raw": raw, "render": rendered}, repeats[n], warmup=1 if i == 0 else 0)
            if raw.text != rendered.text:
                raise RuntimeError("the renderer's answer text differs from the raw text")
            rows.append({"n": n, "simulated": simulated, "raw": result["raw"], "render": result["render"],
                         "updates": rendered.updates, "publishes": rendered.publishes, "chars": rendered.chars,
                         "length": len(rendered.text)})
    return rows


def synthetic_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(f"Streaming render cost: synthetic answers, deltas arriving at {RATE:.0f}/s (simulated clock)",
                  ["answer", "clock", "raw CPU", "renderer CPU", "renderer spread", "ratio", "CPU per delta",
                   "answer updates", "updates per s", "characters sent per answer character"])
    for row in rows:
        n, raw, render = row["n"], row["raw"], row["render"]
        per_s = row["updates"] / (n / RATE) if row["simulated"] else float("nan")
        clock = f"simulated {RATE:.0f}/s" if row["simulated"] else "real (burst)"
        table.add(f"{n:,} deltas", clock,
                  fmt_time(raw.median), fmt_time(render.median), render.spread(fmt_time), fmt_ratio(ratio(render, raw)),
                  fmt_time((render.median - raw.median) / n), fmt_count(row["updates"]),
                  f"{per_s:.1f}" if row["simulated"] else "n/a", f"{row['chars'] / row['length']:.1f}")
    table.notes.append("answer updates = publishes of the answer display (first delta, throttled updates, final "
                       "render); each publish also hands the whole text so far to the publisher")
    table.notes.append("'updates per s' divides by the simulated duration of the answer (deltas / rate)")
    table.notes.append("the update interval is max(0.1 s, len(text) / 200,000 chars/s) (magics/render.py), so once "
                       "an answer passes 20,000 characters the display is sent at most ~200,000 characters a second")
    return table


# -- end to end -----------------------------------------------------------------------------
def _e2e_variants(server: Any, pieces: int) -> dict[str, Callable[[], float]]:
    import httpx
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    import nbllm
    from tests.fakes.openai_server import Answer

    text = ("word " * pieces)[: 4 * pieces]

    def enqueue() -> None:
        server.enqueue(Answer(text=text))

    nbllm.chat("warm up", provider="ernie")
    sent = server.chat_requests[-1]
    headers = {k: v for k, v in sent.headers.items() if k in ("authorization", "content-type", "accept", "user-agent")}
    client = httpx.Client(trust_env=False)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbllm")
    shell.display_pub = CapturingDisplayPublisher()

    def bare() -> None:
        with client.stream("POST", server.url + sent.path, content=sent.body, headers=headers) as response:
            for _ in response.iter_raw():
                pass

    def raw() -> None:
        "".join(nbllm.stream("q", provider="ernie"))

    def cell() -> None:
        result = shell.run_cell("%%llm -p ernie --no-history\nq")
        shell.display_pub.outputs.clear()
        if not result.success:
            raise RuntimeError(f"%%llm failed: {result.error_in_exec}")

    def cpu(fn: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            enqueue()
            start = time.thread_time()
            fn()
            return time.thread_time() - start
        return run

    return {"bare httpx read": cpu(bare), "nbllm.stream() joined": cpu(raw), "%%llm cell": cpu(cell)}


def end_to_end(pieces: int, rounds: int) -> dict[str, Stats]:
    isolate_env()
    with fake_openai_server() as server:
        route("ernie", server.base_url)
        return interleave(_e2e_variants(server, pieces), rounds, warmup=1)


def e2e_table(result: dict[str, Stats], pieces: int, rounds: int) -> Table:
    table = Table(f"Cost of a streamed answer end to end: {pieces:,} pieces from the loopback fake, {rounds} rounds",
                  ["variant", "client CPU (median)", "spread", "ratio to bare", "ratio to nbllm.stream"])
    bare, raw = result["bare httpx read"], result["nbllm.stream() joined"]
    for name, value in result.items():
        table.add(name, fmt_time(value.median), value.spread(fmt_time), fmt_ratio(ratio(value, bare)),
                  fmt_ratio(ratio(value, raw)))
    table.notes.append("bare httpx reads the SSE bytes without parsing them; nbllm.stream parses SSE and JSON into "
                       "Deltas; %%llm adds the shell, prompt building and the renderer with the real clock")
    return table


def checks_for(rows: list[dict[str, Any]], e2e: dict[str, Stats], pieces: int) -> list[Check]:
    sim = [r for r in rows if r["simulated"]]
    checks = []
    ten = next((r for r in sim if r["n"] == 10_000), None)
    if ten is not None:
        value = ratio(ten["render"], ten["raw"])
        checks.append(Check("renderer CPU vs raw at 10k deltas", fmt_ratio(value), "< 1.3x", value < TARGET_RATIO_10K))
    if len(sim) >= 2:
        first, last = sim[0], sim[-1]
        per_first = first["render"].median / first["n"]
        per_last = last["render"].median / last["n"]
        growth = per_last / per_first
        checks.append(Check(f"renderer cost linear in deltas ({first['n']:,} -> {last['n']:,})",
                            f"CPU per delta x{growth:.1f}", "per-delta cost flat (< 1.5x)", growth < 1.5))
    worst = max(r["updates"] / (r["n"] / RATE) for r in sim)
    checks.append(Check("display updates per second", f"max {worst:.1f}/s", "<= ~10/s", worst <= TARGET_UPDATES_PER_S))
    value = ratio(e2e["%%llm cell"], e2e["nbllm.stream() joined"])
    checks.append(Check(f"%%llm vs nbllm.stream consumed raw, {pieces:,}-piece answer (client CPU)", fmt_ratio(value),
                        "< 1.3x", value < TARGET_E2E_RATIO))
    return checks


def main(argv: list[str] | None = None) -> None:
    args = options(__doc__.splitlines()[0], argv)
    if args.quick:
        sizes, repeats, burst, pieces, rounds = [1_000, 2_000, 5_000], {1_000: 2, 2_000: 2, 5_000: 2}, [5_000], 500, 2
    else:
        sizes, repeats, burst = [1_000, 10_000, 100_000], {1_000: 15, 10_000: 9, 100_000: 2}, [10_000, 100_000]
        pieces, rounds = 5_000, 7
    rows = synthetic(sizes, repeats, burst)
    e2e = end_to_end(pieces, rounds)
    emit(args, "render", [synthetic_table(rows), e2e_table(e2e, pieces, rounds)], checks_for(rows, e2e, pieces))


if __name__ == "__main__":
    main()
