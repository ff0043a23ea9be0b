"""Shared measuring and reporting for the benchmark scripts (one copy, imported by each).

Every figure is a set of samples measured side by side with its baseline in one run (the
variants alternate round by round, so drift on a shared machine hits both alike), summarised
as median and spread (interquartile range, min and max) and compared as a ratio of medians.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# -- statistics -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """Samples of one measurement (seconds, bytes, counts, ...)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return _quantile(sorted(self.samples), 0.25)

    @property
    def q3(self) -> float:
        return _quantile(sorted(self.samples), 0.75)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def n(self) -> int:
        return len(self.samples)

    def spread(self, fmt: Callable[[float], str]) -> str:
        """``IQR a–b, min–max c–d`` in the unit ``fmt`` gives."""
        return f"IQR {fmt(self.q1)}–{fmt(self.q3)}, range {fmt(self.min)}–{fmt(self.max)}"

    def to_json(self) -> dict[str, float]:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "min": self.min, "max": self.max, "n": self.n}


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile (statistics.quantiles needs two samples; this takes one)."""
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def stats(samples: Sequence[float]) -> Stats:
    if not samples:
        raise ValueError("no samples")
    return Stats(tuple(samples))


def ratio(a: Stats, b: Stats) -> float:
    """How many times ``b``'s median ``a``'s median is."""
    return a.median / b.median if b.median else float("inf")


def interleave(variants: dict[str, Callable[[], float]], rounds: int, warmup: int = 1) -> dict[str, Stats]:
    """Run every variant once per round, rotating the order; each call returns its own sample.

    Warm-up rounds (imports, connection set-up, caches) are run the same way and dropped.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            value = variants[name]()
            if r >= warmup:
                samples[name].append(value)
    return {name: stats(values) for name, values in samples.items()}


def timed(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> Callable[[], float]:
    """A variant for ``interleave``: the time one call of ``fn`` takes on ``clock``."""

    def run() -> float:
        start = clock()
        fn()
        return clock() - start

    return run


def per_call(fn: Callable[[], Any], calls: int, clock: Callable[[], float] = time.perf_counter) -> Callable[[], float]:
    """A variant whose sample is the mean time of ``calls`` back-to-back calls (a block)."""

    def run() -> float:
        start = clock()
        for _ in range(calls):
            fn()
        return (clock() - start) / calls

    return run


# -- units ----------------------------------------------------------------------------------
def fmt_time(seconds: float) -> str:
    if abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_count(value: float) -> str:
    return f"{value:,.0f}"


# -- tables ---------------------------------------------------------------------------------
@dataclass
class Table:
    """A titled table that prints as aligned text or as Markdown; rows keep their first cell as a label."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: row has {len(cells)} cells, table has {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def labels(self) -> list[str]:
        return [row[0] for row in self.rows]

    def text(self) -> str:
        grid = [self.columns, *self.rows]
        widths = [max(len(r[i]) for r in grid) for i in range(len(self.columns))]
        lines = [self.title, "=" * len(self.title)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in grid[:1]]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in grid[1:]]
        lines += [f"  * {note}" for note in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"#### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join(" --- " for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes}


@dataclass(frozen=True)
class Check:
    """One target of issue 8 and whether this run met it."""

    figure: str
    measured: str
    target: str
    met: bool


def checks_table(checks: list[Check], title: str = "Targets") -> Table:
    table = Table(title, ["figure", "measured", "target", "met"])
    for c in checks:
        table.add(c.figure, c.measured, c.target, "yes" if c.met else "NO")
    return table


# -- command line and output ----------------------------------------------------------------
def options(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny run (a few repetitions): checks the script works")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for benchmarks/README.md)")
    parser.add_argument("--json", metavar="FILE", help="also write the tables and target checks as JSON")
    return parser.parse_args(argv)


def emit(args: argparse.Namespace, name: str, tables: list[Table], checks: list[Check]) -> None:
    """Print the tables (and the targets) and write the JSON file when asked."""
    everything = [*tables, checks_table(checks, f"{name}: targets")] if checks else list(tables)
    out = "\n\n".join(t.markdown() if args.markdown else t.text() for t in everything)
    print(out + "\n", flush=True)
    if args.json:
        data = {"name": name, "tables": [t.to_json() for t in tables],
                "checks": [_check_json(c) for c in checks]}
        Path(args.json).write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


def _check_json(check: Check) -> dict[str, Any]:
    return {"figure": check.figure, "measured": check.measured, "target": check.target, "met": check.met}


# -- machine and environment ----------------------------------------------------------------
def machine() -> dict[str, str]:
    """What the figures came from: cores, CPU model, Python, OS, date and load at the start."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": model or "unknown",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg": load,
    }


def use_repo() -> None:
    """Let ``from tests.fakes... import ...`` work when a script is run directly."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def isolate_env() -> Path:
    """Like tests/conftest.py: an empty config, a log of its own, no provider keys or other NBLLM_* settings,
    no proxy for loopback.

    Returns the empty config file (in a temp dir that lives as long as the process).
    """
    from nbllm.providers.catalog import BUILTIN

    names: set[str] = set()
    for spec in BUILTIN:
        names.update(spec.key_env, spec.secret_env, spec.headers_from_env.values())
        if spec.base_url_env:
            names.add(spec.base_url_env)
    for name in list(os.environ):
        if name.startswith("NBLLM_") or name in names:
            del os.environ[name]
    config = Path(tempfile.mkdtemp(prefix="nbllm-bench-")) / "config.toml"
    config.write_text("", encoding="utf-8")
    os.environ["NBLLM_CONFIG"] = str(config)
    os.environ["NBLLM_LOG"] = str(config.with_name("logs.db"))  # logged as a user's calls are, never in their log
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var, ""), "127.0.0.1", "localhost"]))
    return config


def route(provider_id: str, base_url: str, key: str = "bench-key-0000") -> None:
    """Point a provider at a loopback server and give it a key (what conftest's ``use_fake`` does)."""
    from nbllm.config import env_name, get_spec

    os.environ[f"NBLLM_{env_name(provider_id)}_BASE_URL"] = base_url
    spec = get_spec(provider_id)
    if spec.key_env:
        os.environ[spec.key_env[0]] = key


def fake_openai_server(**kwargs: Any) -> Any:
    """tests/fakes' ``FakeOpenAIServer`` (TCP_NODELAY, as real servers), counting connections (not started).

    ``server.connections`` counts the TCP connections accepted, to see keep-alive at work.
    """
    use_repo()
    from tests.fakes.openai_server import FakeOpenAIServer

    def setup(handler: Any) -> None:
        FakeOpenAIServer.handler_class.setup(handler)
        with handler.owner.lock:
            handler.owner.connections += 1

    handler = type("CountingHandler", (FakeOpenAIServer.handler_class,), {"setup": setup})
    server_class = type("CountingFakeOpenAIServer", (FakeOpenAIServer,), {"handler_class": handler, "connections": 0})
    return server_class(**kwargs)
