"""The cost of showing a streamed answer: the %%llm renderer alone, and a 5,000-delta answer end to end.

Part 1 feeds N deltas straight into the rich renderer (``RichView`` with the real clock; the
publisher only counts what a frontend would receive) and reports the time per delta and the
number of display updates. The time per delta should stay flat as N grows (constant work per
delta) and the updates should follow elapsed time / 0.1 s, not N. Each update carries the whole
text, as Jupyter's update_display requires, so the characters sent grow with updates × length.

Part 2 streams a 5,000-delta answer from the loopback ``FakeOpenAIServer`` (tests/fakes), once
consumed bare through ``nbllm.stream`` and once as a ``%%llm --no-history`` cell of a real
IPython shell with a recording display publisher; the rounds alternate, and the difference is
what the magic, its renderer and its display messages add to a long streamed answer.

Run: ``python benchmarks/stream_render.py [--quick] [--markdown] [--json FILE]``
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchkit import (
    Check,
    Stats,
    Table,
    emit,
    fmt_count,
    fmt_ratio,
    fmt_time,
    interleave,
    isolate_env,
    options,
    ratio,
    route,
    timed,
    use_repo,
)

SIZES = (1_000, 10_000, 100_000)
PIECES = 5_000
INTERVAL = 0.1


class Counter:
    """A display publisher that keeps only counts: publishes and characters."""

    def __init__(self) -> None:
        self.calls = 0
        self.chars = 0

    def __call__(self, data: dict[str, Any], metadata: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        self.chars += sum(len(v) for v in data.values() if isinstance(v, str))


class RendererRun:
    """One variant of part 1: a sample is the time per delta; updates and bound checks kept aside."""

    def __init__(self, n: int) -> None:
        from nbllm.messages import Delta

        self.n = n
        self.deltas = [Delta(text=f"tok{i % 97} ") for i in range(n)]
        self.updates: list[int] = []
        self.chars: list[int] = []
        self.within_bound = True

    def __call__(self) -> float:
        from nbllm.magics.render import RichView, show

        from nbllm.response import Response

        publisher = Counter()
        view = RichView(publisher)
        start = time.perf_counter()
        show(Response.from_deltas(iter(self.deltas), provider="bench", model="bench"), view)
        elapsed = time.perf_counter() - start
        self.updates.append(view.updates)
        self.chars.append(publisher.chars)
        self.within_bound &= view.updates <= elapsed / INTERVAL + 2
        return elapsed / self.n


def end_to_end(rounds: int) -> tuple[dict[str, Stats], int]:
    """Part 2: bare nbllm.stream vs a %%llm cell, same 5,000-delta answer, alternating rounds."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    import nbllm
    from tests.fakes.openai_server import Answer as Reply
    from tests.fakes.openai_server import FakeOpenAIServer

    pieces = [f"w{i} " for i in range(PIECES)]
    expected = "".join(pieces)
    updates: list[int] = []
    with FakeOpenAIServer() as server:
        route("ernie", server.base_url)
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "nbllm")
        publisher = CapturingDisplayPublisher()
        shell.display_pub = publisher

        def bare() -> None:
            server.enqueue(Reply(pieces))
            if "".join(nbllm.stream("bench", provider="ernie")) != expected:
                raise RuntimeError("bare stream lost text")

        def cell() -> None:
            server.enqueue(Reply(pieces))
            result = shell.run_cell("%%llm -p ernie --no-history\nbench")
            if not result.success:
                raise RuntimeError(f"cell failed: {result.error_in_exec}")
            updates.append(sum(1 for o in publisher.outputs if o["transient"]))
            publisher.outputs.clear()

        variants: dict[str, Callable[[], float]] = {"nbllm.stream, consumed bare": timed(bare),
                                                    "%%llm cell": timed(cell)}
        walls = interleave(variants, rounds, warmup=1)
    return walls, max(updates)


def main(argv: list[str] | None = None) -> None:
    args = options(__doc__.splitlines()[0], argv)
    use_repo()
    isolate_env()
    rounds = 2 if args.quick else 7
    runs = {f"{n:,} deltas": RendererRun(n) for n in SIZES}
    per_delta = interleave(dict(runs), rounds, warmup=1)
    part1 = Table(f"Renderer alone: {rounds} rounds per size", ["answer", "per delta (median)", "spread",
                                                               "display updates", "characters sent"])
    for label, run in runs.items():
        part1.add(label, fmt_time(per_delta[label].median), per_delta[label].spread(fmt_time),
                  fmt_count(max(run.updates)), fmt_count(max(run.chars)))
    walls, updates = end_to_end(1 if args.quick else 5)
    base, cell = walls["nbllm.stream, consumed bare"], walls["%%llm cell"]
    part2 = Table(f"A {PIECES:,}-delta answer over loopback HTTP", ["variant", "total (median)", "spread", "ratio"])
    part2.add("nbllm.stream, consumed bare", fmt_time(base.median), base.spread(fmt_time), "")
    part2.add("%%llm cell", fmt_time(cell.median), cell.spread(fmt_time), fmt_ratio(ratio(cell, base)))
    part2.notes.append(f"the %%llm cell sent {updates} display messages for the answer (first delta, updates, final)")
    small, big = per_delta[f"{SIZES[0]:,} deltas"], per_delta[f"{SIZES[-1]:,} deltas"]
    checks = [
        Check(f"per-delta time, {SIZES[-1]:,} vs {SIZES[0]:,} deltas", fmt_ratio(ratio(big, small)), "< 4x",
              ratio(big, small) < 4),
        Check("display updates within elapsed/0.1 s + 2", "yes" if all(r.within_bound for r in runs.values())
              else "no", "every run", all(r.within_bound for r in runs.values())),
        Check(f"%%llm added to a {PIECES:,}-delta answer", fmt_time(cell.median - base.median), "< 10% of the answer",
              cell.median - base.median < 0.1 * base.median),
    ]
    emit(args, "stream_render", [part1, part2], checks)


if __name__ == "__main__":
    main()
