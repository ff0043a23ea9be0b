"""The exchange log (issue 13): what logging adds to a call, what ``%load_ext`` loads of it, and
``nbllm logs`` on a log of 100,000 exchanges.

- **Per call**: ``nbllm.chat()`` against the loopback ``FakeOpenAIServer`` with the log on
  versus ``NBLLM_LOG=off``, blocks of back-to-back calls alternating; and the log's own work
  alone (build the row of a finished response, redact it, insert it) timed on its own, which
  is the figure without the network's noise.
- **Load**: a fresh IPython process runs ``%load_ext nbllm`` and reports whether any ``nbllm.log``
  module was imported (the log opens on the first call, never at load). ``sqlite3`` itself is not
  a sign: IPython's own history already imports it. ``load.py`` times ``%load_ext``.
- **Queries**: a log file of 100,000 generated exchanges (prompts ~300 characters, answers
  ~900, a few messages of history each, 6 providers), then each ``nbllm logs`` command in a fresh
  process, wall time from the parent (interpreter start-up included, as a user waits for it).

Run: ``python benchmarks/exchange_log.py [--quick] [--markdown] [--json FILE]``
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import (
    ROOT,
    Check,
    Stats,
    Table,
    emit,
    fake_openai_server,
    fmt_time,
    interleave,
    isolate_env,
    options,
    route,
    stats,
)

TARGET_LOG_S = 0.001
TARGET_QUERY_S = 0.5
PROVIDERS = [("ernie", "ernie-4.0-turbo-8k"), ("qwen", "qwen-plus"), ("deepseek", "deepseek-chat"),
             ("glm", "glm-4-plus"), ("kimi", "moonshot-v1-8k"), ("hunyuan", "hy3-preview")]
WORDS = ("notebook", "kernel", "answer", "model", "provider", "token", "stream", "cell", "output", "pandas", "frame",
         "column", "row", "value", "plot", "figure", "error", "retry", "cache", "replay", "log", "exchange")


# -- per call -------------------------------------------------------------------------------------
def _chat_block(calls: int, log: str) -> Callable[[], float]:
    import nbllm

    def run() -> float:
        os.environ["NBLLM_LOG"] = log
        start = time.perf_counter()
        for _ in range(calls):
            nbllm.chat("hi", provider="ernie")
        return (time.perf_counter() - start) / calls

    return run


def _observer_alone(log: Path, calls: int) -> Stats:
    """The log's own work for one finished response: row built, redacted, inserted (committed)."""
    from nbllm.log.hook import record
    from nbllm.messages import ChatRequest, Delta, Usage
    from nbllm.response import Response

    os.environ["NBLLM_LOG"] = str(log)
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": _text(random.Random(i), 300)}
               for i in range(6)]
    request = ChatRequest(messages=[*history, {"role": "user", "content": "hi"}], model="ernie-4.0-turbo-8k",
                          params={"temperature": 0.2})
    samples = []
    for i in range(calls + 20):
        response = Response.from_deltas([Delta(text=_text(random.Random(i), 900), usage=Usage(10, 200, 210))],
                                         provider="ernie", model=request.model, request=request)
        for _ in response:
            pass
        start = time.perf_counter()
        record(response)
        if i >= 20:  # the first writes open the file and create the schema
            samples.append(time.perf_counter() - start)
    return stats(samples)


def measure_calls(rounds: int, calls: int) -> tuple[dict[str, Stats], Stats]:
    isolate_env()
    log = Path(tempfile.mkdtemp(prefix="nbllm-bench-log-")) / "logs.db"
    with fake_openai_server() as server:
        route("ernie", server.base_url)
        variants = {"nbllm.chat(), NBLLM_LOG=off": _chat_block(calls, "off"),
                    "nbllm.chat(), log on": _chat_block(calls, str(log))}
        result = interleave(variants, rounds, warmup=1)
    return result, _observer_alone(log.with_name("alone.db"), calls * rounds)


# -- load -----------------------------------------------------------------------------------------
_LOAD_PROBE = """
import sys, json
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic('load_ext', 'nbllm')
print(json.dumps(sorted(m for m in sys.modules if m.startswith('nbllm.log'))))
"""


def measure_load() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", _LOAD_PROBE], capture_output=True, text=True, cwd=tmp,
                              env={**os.environ, "IPYTHONDIR": tmp}, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- queries on a big log -------------------------------------------------------------------------
def _text(rng: random.Random, size: int) -> str:
    return " ".join(rng.choices(WORDS, k=size // 5))[:size]


def build_log(path: Path, rows: int, distinct: int = 1_000) -> None:
    """``rows`` exchanges written the way nbllm writes them: ``distinct`` generated ones, repeated with
    their own ids and times (one transaction: building the file is not what is measured)."""
    from datetime import datetime, timedelta, timezone

    from nbllm.log.fingerprint import fingerprint
    from nbllm.log.record import COLUMNS, Exchange
    from nbllm.log.store import connect

    rng = random.Random(13)
    made = []
    for i in range(min(distinct, rows)):
        provider, model = PROVIDERS[i % len(PROVIDERS)]
        history = [{"role": "user" if j % 2 == 0 else "assistant", "content": _text(rng, 200)} for j in range(i % 4)]
        messages = [*history, {"role": "user", "content": _text(rng, 300)}]
        made.append(Exchange("magic", provider, model, messages, fingerprint(provider, model, messages),  # type: ignore[arg-type]
                             answer=_text(rng, 900), prompt_tokens=120, completion_tokens=300, total_tokens=420,
                             first_token_s=0.4, total_s=2.5).row())
    start = datetime.now(timezone.utc) - timedelta(days=200)
    conn = connect(path)
    insert = f"INSERT INTO exchanges ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    conn.execute("BEGIN")
    for i in range(rows):
        row = {**made[i % len(made)], "time": (start + timedelta(minutes=2 * i)).isoformat(timespec="milliseconds")}
        conn.execute(insert, [row[c] for c in COLUMNS])
    conn.execute("COMMIT")
    conn.close()


COMMANDS = {
    "nbllm --version (process start-up)": ["--version"],
    "nbllm logs": ["logs"],
    "nbllm logs -n 100 --provider qwen": ["logs", "-n", "100", "--provider", "qwen"],
    "nbllm logs --since 1h --json": ["logs", "--since", "1h", "--json"],
    "nbllm logs --search (no match: every row read)": ["logs", "--search", "zebra crossing"],
    "nbllm logs show ID": ["logs", "show", "1000"],
    "nbllm logs usage": ["logs", "usage"],
}


def _cli(argv: list[str], log: Path) -> Callable[[], float]:
    env = {**os.environ, "NBLLM_LOG": str(log)}

    def run() -> float:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nbllm", *argv], capture_output=True, env=env, cwd=ROOT)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"nbllm {' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
        return elapsed

    return run


def measure_queries(rows: int, rounds: int) -> tuple[dict[str, Stats], int]:
    log = Path(tempfile.mkdtemp(prefix="nbllm-bench-logs-")) / "logs.db"
    build_log(log, rows)
    result = interleave({name: _cli(argv, log) for name, argv in COMMANDS.items()}, rounds, warmup=1)
    return result, log.stat().st_size


# -- report ---------------------------------------------------------------------------------------
def report(calls: dict[str, Stats], alone: Stats, loaded: list[str], queries: dict[str, Stats], rows: int,
           size: int) -> tuple[list[Table], list[Check]]:
    off, on = calls["nbllm.chat(), NBLLM_LOG=off"], calls["nbllm.chat(), log on"]
    t1 = Table("Logging cost per call", ["variant", "per call (median)", "spread", "added"])
    t1.add("nbllm.chat(), NBLLM_LOG=off", fmt_time(off.median), off.spread(fmt_time), "")
    t1.add("nbllm.chat(), log on", fmt_time(on.median), on.spread(fmt_time), fmt_time(on.median - off.median))
    t1.add("the log's work alone (row + insert)", fmt_time(alone.median), alone.spread(fmt_time), "")
    t1.notes.append("nbllm.chat rows: mean of a block of back-to-back calls to the loopback fake; "
                    "the last row: one finished response (7 messages, 900-character answer) recorded")
    t2 = Table(f"nbllm logs on {rows:,} exchanges ({size / 2**20:.0f} MiB file), fresh process each",
               ["command", "wall time (median)", "spread"])
    for name, value in queries.items():
        t2.add(name, fmt_time(value.median), value.spread(fmt_time))
    slowest = max((v.median, k) for k, v in queries.items() if "--version" not in k)
    checks = [
        Check("logging per call (the log's work)", fmt_time(alone.median), "< 1 ms", alone.median < TARGET_LOG_S),
        Check("%load_ext imports nothing of the log", ", ".join(loaded) or "nothing", "nothing", not loaded),
        Check(f"slowest nbllm logs command on {rows:,} rows", f"{fmt_time(slowest[0])} ({slowest[1]})",
              "< 0.5 s", slowest[0] < TARGET_QUERY_S),
    ]
    return [t1, t2], checks


def main(argv: list[str] | None = None) -> None:
    args = options(__doc__.splitlines()[0], argv)
    rounds, calls, rows = (2, 5, 2_000) if args.quick else (10, 20, 100_000)
    call_stats, alone = measure_calls(rounds, calls)
    loaded = measure_load()
    queries, size = measure_queries(rows, 2 if args.quick else 7)
    tables, checks = report(call_stats, alone, loaded, queries, rows, size)
    emit(args, "exchange_log", tables, checks)


if __name__ == "__main__":
    main()
