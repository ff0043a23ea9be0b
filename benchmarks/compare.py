"""Compare mode: ``%%llm -p ernie,hunyuan,qwen`` versus ``%%llm -p ernie`` when every provider takes 300 ms.

Three loopback ``FakeOpenAIServer``s (tests/fakes), one per provider, each answer delayed
300 ms before its first byte (the fake's ``delay``), then a 100-piece answer. Both cells run
in one real IPython ``InteractiveShell`` with a recording display publisher; the sample is the
cell's wall time. Single and compare cells alternate.

Run: ``python benchmarks/compare.py [--quick] [--markdown] [--json FILE]``
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from benchkit import (
    Check,
    Stats,
    Table,
    emit,
    fake_openai_server,
    fmt_ratio,
    fmt_time,
    interleave,
    isolate_env,
    options,
    ratio,
    route,
    timed,
)

DELAY = 0.3
PROVIDERS = ("ernie", "hunyuan", "qwen")
TARGET_RATIO = 1.2
TEXT = "A fairly ordinary answer, streamed in small pieces like a real model does. " * 6


def _cell(shell: Any, servers: list[Any], line: str, used: int) -> Callable[[], None]:
    from tests.fakes.openai_server import Answer

    def run() -> None:
        for server in servers[:used]:
            server.enqueue(Answer(text=TEXT[:400], delay=DELAY))
        result = shell.run_cell(f"{line}\nWhich provider should I use?")
        shell.display_pub.outputs.clear()
        if not result.success:
            raise RuntimeError(f"cell failed: {result.error_in_exec}")
        if any(server.pending for server in servers):
            raise RuntimeError("a provider was not asked")

    return run


def measure(rounds: int) -> dict[str, Stats]:
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    isolate_env()
    with ExitStack() as stack:
        servers = [stack.enter_context(fake_openai_server()) for _ in PROVIDERS]
        for pid, server in zip(PROVIDERS, servers, strict=True):
            route(pid, server.base_url)
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "nbllm")
        shell.display_pub = CapturingDisplayPublisher()
        variants = {
            "one provider (-p ernie)": timed(_cell(shell, servers, "%%llm -p ernie --no-history", 1)),
            "compare (-p ernie,hunyuan,qwen)": timed(_cell(shell, servers, f"%%llm -p {','.join(PROVIDERS)}", 3)),
        }
        return interleave(variants, rounds, warmup=1)


def report(result: dict[str, Stats], rounds: int) -> tuple[list[Table], list[Check]]:
    table = Table(f"Compare mode: every provider delays {DELAY * 1e3:.0f} ms, {rounds} rounds, interleaved",
                  ["variant", "cell wall time (median)", "spread", "ratio", "added"])
    one = result["one provider (-p ernie)"]
    for name, value in result.items():
        table.add(name, fmt_time(value.median), value.spread(fmt_time), fmt_ratio(ratio(value, one)),
                  fmt_time(value.median - one.median) if value is not one else "")
    table.notes.append("each provider has its own loopback server; the answer is 100 pieces after the delay")
    value = ratio(result["compare (-p ernie,hunyuan,qwen)"], one)
    return [table], [Check("compare of 3 vs one provider", fmt_ratio(value), "<= 1.2x", value <= TARGET_RATIO)]


def main(argv: list[str] | None = None) -> None:
    args = options(__doc__.splitlines()[0], argv)
    rounds = 2 if args.quick else 10
    tables, checks = report(measure(rounds), rounds)
    emit(args, "compare", tables, checks)


if __name__ == "__main__":
    main()
