"""Per-call overhead: ``%%llm`` and ``nbllm.chat`` versus a bare httpx POST of the same request.

One loopback ``FakeOpenAIServer`` (tests/fakes, no delay: it answers at once with a short
streamed "echo" answer) serves every variant. The bare baseline replays, with one reused
``httpx.Client``, the exact JSON body and headers nbllm sent, and reads the whole streamed body.
The fake gets TCP_NODELAY (see ``benchkit.fake_openai_server``).
``%%llm`` runs in a real IPython ``InteractiveShell`` with a recording display publisher; its
fair baseline is the same bare POST run as a cell of that shell. ``--no-history`` keeps every
request identical. Samples are the mean of a block of back-to-back calls; blocks of all
variants alternate. CPU is the calling thread's (``time.thread_time``), so the server thread,
which runs in this process, is not counted.

Run: ``python benchmarks/call_overhead.py [--quick] [--markdown] [--json FILE]``
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
    fake_openai_server,
    fmt_ratio,
    fmt_time,
    interleave,
    isolate_env,
    options,
    ratio,
    route,
    stats,
)

TARGET_ADDED_S = 0.002
PROMPT = "hi"
CELL = f"%%llm -p ernie --no-history\n{PROMPT}"
AFTER_ERROR = "shell cell: %%llm, after a failed cell"


class Block:
    """A variant whose sample is the mean wall time per call of a block; CPU per call kept aside."""

    def __init__(self, fn: Callable[[], Any], calls: int, server: Any) -> None:
        self.fn = fn
        self.calls = calls
        self.server = server
        self.cpu: list[float] = []
        self.connections = 0

    def __call__(self) -> float:
        conn0 = self.server.connections
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for _ in range(self.calls):
            self.fn()
        wall = (time.perf_counter() - wall0) / self.calls
        self.cpu.append((time.thread_time() - cpu0) / self.calls)
        self.connections += self.server.connections - conn0
        return wall


def _bare_post(server: Any) -> Callable[[], None]:
    """Replay nbllm's own request with plain httpx (captured from one nbllm.chat call)."""
    import httpx

    import nbllm

    nbllm.chat(PROMPT, provider="ernie")
    sent = server.chat_requests[-1]
    headers = {k: v for k, v in sent.headers.items() if k in ("authorization", "content-type", "accept", "user-agent")}
    client = httpx.Client(trust_env=False)
    url = server.url + sent.path

    def post() -> None:
        response = client.post(url, content=sent.body, headers=headers)
        if response.status_code != 200 or b"[DONE]" not in response.content:
            raise RuntimeError(f"bare POST failed: {response.status_code}")

    return post


def _shell(bare: Callable[[], None]) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    """A real shell with the extension loaded: run %%llm, or the bare POST as a cell.

    The third variant runs %%llm as it runs after an earlier cell of the session failed: the
    shell's last error (a real ZeroDivisionError raised by a cell) is in place for that cell
    only, and cleared again so the other variants never see it.
    """
    import io
    import sys
    from contextlib import redirect_stdout

    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbllm")
    publisher = CapturingDisplayPublisher()
    shell.display_pub = publisher
    shell.user_ns["_bench_post"] = bare

    with redirect_stdout(io.StringIO()):
        shell.run_cell("1 / 0")
    error = sys.last_value
    _forget_error()

    def run(code: str, after_error: bool = False) -> Callable[[], None]:
        def cell() -> None:
            if after_error:
                sys.last_type, sys.last_value, sys.last_traceback = type(error), error, error.__traceback__
            try:
                result = shell.run_cell(code)
            finally:
                _forget_error()
            publisher.outputs.clear()
            if not result.success:
                raise RuntimeError(f"cell failed: {result.error_in_exec or result.error_before_exec}")

        return cell

    return run(CELL), run(CELL, after_error=True), run("_bench_post()")


def _forget_error() -> None:
    import sys

    for name in ("last_exc", "last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            delattr(sys, name)


def measure(rounds: int, calls: int) -> tuple[dict[str, Stats], dict[str, Block]]:
    isolate_env()
    import nbllm

    with fake_openai_server() as server:
        route("ernie", server.base_url)
        bare = _bare_post(server)
        llm_cell, llm_after_error, bare_cell = _shell(bare)
        blocks = {
            "bare httpx POST": Block(bare, calls, server),
            "nbllm.chat()": Block(lambda: nbllm.chat(PROMPT, provider="ernie"), calls, server),
            "shell cell: bare httpx POST": Block(bare_cell, calls, server),
            "shell cell: %%llm": Block(llm_cell, calls, server),
            AFTER_ERROR: Block(llm_after_error, calls, server),
        }
        walls = interleave(dict(blocks), rounds, warmup=1)
        bodies = {r.body for r in server.chat_requests}
    if len(bodies) != 1:
        raise RuntimeError(f"the variants did not send one identical request ({len(bodies)} different bodies)")
    for block in blocks.values():
        block.cpu = block.cpu[1:]
    return walls, blocks


def report(walls: dict[str, Stats], blocks: dict[str, Block], rounds: int, calls: int) -> tuple[list[Table], list[Check]]:
    table = Table(f"Per-call overhead: loopback server answering at once, {rounds} blocks x {calls} calls per variant",
                  ["variant", "per call (median)", "spread of block means", "ratio", "added per call",
                   "client CPU per call", "added CPU", "new connections per call"])
    pairs = [("bare httpx POST", None), ("nbllm.chat()", "bare httpx POST"),
             ("shell cell: bare httpx POST", None), ("shell cell: %%llm", "shell cell: bare httpx POST"),
             (AFTER_ERROR, "shell cell: bare httpx POST")]
    added: dict[str, float] = {}
    for name, base in pairs:
        wall, cpu = walls[name], stats(blocks[name].cpu)
        block = blocks[name]
        conns = f"{block.connections / (block.calls * (rounds + 1)):.2f}"
        if base is None:
            table.add(name, fmt_time(wall.median), wall.spread(fmt_time), "", "", fmt_time(cpu.median), "", conns)
            continue
        added[name] = wall.median - walls[base].median
        base_cpu = stats(blocks[base].cpu)
        table.add(name, fmt_time(wall.median), wall.spread(fmt_time), fmt_ratio(ratio(wall, walls[base])),
                  fmt_time(added[name]), fmt_time(cpu.median), fmt_time(cpu.median - base_cpu.median), conns)
    table.notes.append("every variant sent the byte-identical request body; `nbllm.chat` is compared with the bare "
                       "POST, `%%llm` with the bare POST run as a cell of the same shell")
    table.notes.append("the answer is the fake's 'echo: hi' (2 content chunks, finish, usage, [DONE]); 'new "
                       "connections per call' counts the TCP connections the server accepted (all variants share one "
                       "httpx pool per client, so a block's first call may use a connection the previous block left)")
    table.notes.append("'after a failed cell': the same %%llm cell with the session's last error (a ZeroDivisionError "
                       "raised by an earlier cell) in place, as in most real sessions; nbllm formats that traceback "
                       "only for a prompt that uses {Err}")
    checks = [Check(f"{name}: added per call", fmt_time(added[name]), "< 2 ms", added[name] < TARGET_ADDED_S)
              for name in ("nbllm.chat()", "shell cell: %%llm", AFTER_ERROR)]
    return [table], checks


def main(argv: list[str] | None = None) -> None:
    args = options(__doc__.splitlines()[0], argv)
    rounds, calls = (2, 3) if args.quick else (15, 20)
    walls, blocks = measure(rounds, calls)
    tables, checks = report(walls, blocks, rounds, calls)
    emit(args, "call_overhead", tables, checks)


if __name__ == "__main__":
    main()
