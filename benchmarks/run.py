"""Run every benchmark, each in its own fresh process, and end with one table of all targets.

Run: ``python benchmarks/run.py [--quick] [--markdown] [--only NAME ...]``; ``--markdown``
prints the tables in the form benchmarks/README.md keeps them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import Check, Table, checks_table, fmt_time, machine

HERE = Path(__file__).resolve().parent
# Issue 8's five figures in its order, then the streamed-answer benchmark the magics added (issue 3),
# then the exchange log's (issue 13).
SCRIPTS = ["load", "call_overhead", "render", "convert", "compare", "stream_render", "exchange_log"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs: checks that every script works")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for benchmarks/README.md)")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, metavar="NAME", help=f"run only these: {SCRIPTS}")
    return parser.parse_args(argv)


def run_one(name: str, args: argparse.Namespace, out: Path) -> tuple[float, list[Check], int]:
    """Run one script (its tables print as they come); return its time, target checks and exit code."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--markdown"] if args.markdown else []
    print(f"{'###' if args.markdown else '>>>'} {name}.py\n", flush=True)
    start = time.perf_counter()
    code = subprocess.call(cmd, cwd=HERE)
    elapsed = time.perf_counter() - start
    if code != 0 or not out.exists():
        return elapsed, [], code or 1
    data = json.loads(out.read_text(encoding="utf-8"))
    return elapsed, [Check(**c) for c in data["checks"]], 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = [n for n in (args.only or SCRIPTS) if (HERE / f"{n}.py").exists()]
    info = machine()
    header = (f"Machine: nproc {info['nproc']}, CPU model \"{info['cpu']}\" (/proc/cpuinfo), Python {info['python']}, {info['os']}, "
              f"{info['date']}, load average at start {info['loadavg']}")
    print(header + "\n", flush=True)
    checks: list[Check] = []
    timing = Table("Benchmark scripts", ["script", "time", "status"])
    failed = 0
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nbllm-bench-run-") as tmp:
        for name in names:
            elapsed, found, code = run_one(name, args, Path(tmp) / f"{name}.json")
            checks += [Check(f"{name}: {c.figure}", c.measured, c.target, c.met) for c in found]
            timing.add(f"{name}.py", fmt_time(elapsed), "ok" if code == 0 else f"FAILED (exit {code})")
            failed += code != 0
    timing.add("all", fmt_time(time.perf_counter() - total), f"{len(names) - failed}/{len(names)} ran")
    summary = checks_table(checks, "All targets")
    for table in (summary, timing):
        print((table.markdown() if args.markdown else table.text()) + "\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
