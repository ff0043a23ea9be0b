"""Converter throughput: ``nbllm convert`` over a generated corpus of 1,000 notebooks, --jobs 1 and 2.

The corpus (benchmarks/corpus.py) is written to a temp dir: 60% plain analysis notebooks, 10%
large ones with saved plots and logs, 30% with OpenAI calls (45% old ``openai<1`` style, 55%
``OpenAI()`` client). Throughput runs the real CLI (``python -m nbllm convert DIR --to ernie
--jobs N --output-dir NEW``) in a fresh process, so the source corpus never changes; peak
memory is that process tree's RSS sampled every 20 ms (psutil), and the largest single
process's peak from ``os.wait4``.

In-process figures use ``nbllm.convert.runner.convert_file``, the unit every job runs: a
notebook with nothing to convert against a plain ``json.load`` of the same file (alternating,
per notebook), and the time to convert (and write) a notebook that changes.

With ``--folder DIR`` (a folder of real notebooks, e.g. ../shared/corpus) the same CLI runs over
that folder, --jobs 1 and 2, and the target is ``TARGET_REAL_PER_S`` notebooks/s with --jobs 2;
the table also counts the notebooks that libcst parsed (changed ones) and that it never touched.

Run: ``python benchmarks/convert.py [--quick] [--markdown] [--json FILE] [--notebooks N] [--folder DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import Check, Stats, Table, emit, fmt_mib, fmt_ratio, fmt_time, isolate_env, stats
from corpus import LARGE, NEW, OLD, PLAIN, generate

TARGET_UNCHANGED_RATIO = 2.0
TARGET_CHANGED_S = 0.050
TARGET_REAL_PER_S = 25.0
QUICK = 12


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"tiny run ({QUICK} notebooks): checks the script works")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for benchmarks/README.md)")
    parser.add_argument("--json", metavar="FILE", help="also write the tables and target checks as JSON")
    parser.add_argument("--notebooks", type=int, default=1000, help="corpus size (default 1000)")
    parser.add_argument("--folder", type=Path, help="a folder of real notebooks instead of the generated corpus")
    return parser.parse_args(argv)


# -- throughput: the CLI in a fresh process -------------------------------------------------
class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and its children until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.wait(0.02):
            try:
                procs = [root, *root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                continue


def cli_run(corpus: Path, jobs: int, work: Path) -> dict[str, Any]:
    out, report = work / f"out-jobs{jobs}-{time.monotonic_ns()}", work / f"report-{jobs}.json"
    cmd = [sys.executable, "-m", "nbllm", "convert", str(corpus), "--to", "ernie", "--jobs", str(jobs),
           "--output-dir", str(out), "--quiet", "--report", str(report)]
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, stdout=output, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            output.seek(0)
            raise RuntimeError(f"nbllm convert failed ({proc.returncode}): {output.read().decode()[-2000:]}")
    summary = json.loads(report.read_text(encoding="utf-8"))["summary"]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "tree_peak": sampler.peak,
            "max_proc": usage.ru_maxrss * 1024.0, "summary": summary}


# -- in process: per notebook ---------------------------------------------------------------
def _options(write_to: Path | None) -> Any:
    from nbllm.convert.api import resolve_target
    from nbllm.convert.runner import Options

    return Options(spec=resolve_target("ernie"), write=write_to is not None,
                   output_dir=str(write_to) if write_to is not None else None)


def unchanged_vs_json(paths: list[Path], root: Path, repeats: int) -> tuple[Stats, Stats, Stats]:
    """Per notebook: convert_file (nothing to do) and json.load, alternating; medians over repeats."""
    from nbllm.convert.runner import convert_file

    opts = _options(None)
    conv: dict[Path, list[float]] = {p: [] for p in paths}
    plain: dict[Path, list[float]] = {p: [] for p in paths}

    def load(p: Path) -> None:
        with p.open(encoding="utf-8") as fh:
            json.load(fh)

    def convert(p: Path) -> None:
        result = convert_file(p, root, opts)
        if result.status != "unchanged":
            raise RuntimeError(f"{p.name}: expected unchanged, got {result.status} {result.reason}")

    for rep in range(repeats + 1):
        for p in paths:
            order = [(plain, load), (conv, convert)] if rep % 2 else [(conv, convert), (plain, load)]
            for bucket, fn in order:
                start = time.perf_counter()
                fn(p)
                if rep:  # round 0 warms the page cache and imports
                    bucket[p].append(time.perf_counter() - start)
    med = {p: (stats(conv[p]).median, stats(plain[p]).median) for p in paths}
    return (stats([c for c, _ in med.values()]), stats([j for _, j in med.values()]),
            stats([c / j for c, j in med.values()]))


def changed_times(paths: list[Path], root: Path, work: Path) -> tuple[float, Stats]:
    """The first changed notebook (imports libcst) apart, then every other one once."""
    from nbllm.convert.runner import convert_file

    opts = _options(work / f"changed-{time.monotonic_ns()}")
    times = []
    first = 0.0
    for i, p in enumerate(paths):
        start = time.perf_counter()
        result = convert_file(p, root, opts)
        elapsed = time.perf_counter() - start
        if result.status != "changed":
            raise RuntimeError(f"{p.name}: expected changed, got {result.status} {result.reason}")
        if i == 0:
            first = elapsed
        else:
            times.append(elapsed)
    return first, stats(times)


# -- report ---------------------------------------------------------------------------------
def throughput_table(runs: dict[int, dict[str, Any]], count: int, corpus_mib: float) -> Table:
    table = Table(f"Converter throughput: {count:,} generated notebooks ({corpus_mib:.0f} MiB), nbllm convert CLI",
                  ["run", "wall", "notebooks/s", "ratio to --jobs 1", "CPU (all processes)", "peak RSS (process tree)",
                   "peak RSS (largest process)", "changed / unchanged / failed"])
    base = runs[1]["wall"]
    for jobs, run in runs.items():
        s = run["summary"]
        table.add(f"--jobs {jobs}", fmt_time(run["wall"]), f"{count / run['wall']:.1f}", fmt_ratio(run["wall"] / base),
                  fmt_time(run["cpu"]),
                  fmt_mib(run["tree_peak"]), fmt_mib(run["max_proc"]), f"{s['changed']} / {s['unchanged']} / {s['failed']}")
    table.notes.append("one run per setting (a whole-corpus run is long); spread is given per notebook below. "
                       "Wall time includes interpreter start-up and imports; every changed notebook is written "
                       "to --output-dir")
    return table


def per_notebook_table(unchanged: dict[str, tuple[Stats, Stats, Stats]], first: float, changed: Stats) -> Table:
    table = Table("Converter per notebook, in process (convert_file)",
                  ["notebooks", "convert (median)", "json.load (median)", "ratio (median)", "ratio spread"])
    for label, (conv, plain, ratios) in unchanged.items():
        table.add(label, fmt_time(conv.median), fmt_time(plain.median), fmt_ratio(ratios.median),
                  ratios.spread(fmt_ratio))
    table.add(f"changed (OpenAI), n={changed.n}", fmt_time(changed.median), "", "", changed.spread(fmt_time))
    table.add("first changed notebook (imports libcst)", fmt_time(first), "", "", "")
    table.notes.append("unchanged rows: per-notebook medians over repeats, ratio = convert_file / json.load of "
                       "the same file; the changed row includes the atomic write to an output dir")
    return table


def folder_main(args: argparse.Namespace) -> None:
    """Throughput over a folder of real notebooks (the source folder is never written)."""
    work = Path(tempfile.mkdtemp(prefix="nbllm-bench-convert-"))
    count = sum(1 for _ in args.folder.rglob("*.ipynb"))
    mib = sum(p.stat().st_size for p in args.folder.rglob("*.ipynb")) / 2**20
    runs = {jobs: cli_run(args.folder, jobs, work) for jobs in (1, 2)}
    table = throughput_table(runs, count, mib)
    table.title = f"Converter throughput: {count:,} real notebooks in {args.folder.name} ({mib:.0f} MiB), nbllm convert CLI"
    table.notes.append("changed notebooks are the only ones libcst parses: a notebook that imports neither the "
                       "OpenAI SDK nor a wrapper of it is read, checked and left without importing libcst")
    per_s = count / runs[2]["wall"]
    checks = [Check("real notebooks/s, --jobs 2", f"{per_s:.1f}", f">= {TARGET_REAL_PER_S:.0f}",
                    per_s >= TARGET_REAL_PER_S)]
    emit(args, "convert", [table], checks)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.folder is not None:
        isolate_env()
        folder_main(args)
        return
    count = QUICK if args.quick else args.notebooks
    isolate_env()
    work = Path(tempfile.mkdtemp(prefix="nbllm-bench-convert-"))
    corpus = work / "corpus"
    paths = generate(corpus, count)
    corpus_mib = sum(p.stat().st_size for ps in paths.values() for p in ps) / 2**20
    runs = {jobs: cli_run(corpus, jobs, work) for jobs in (1, 2)}
    repeats = 2 if args.quick else 5
    unchanged = {
        f"unchanged, plain, n={min(150, len(paths[PLAIN]))}": unchanged_vs_json(paths[PLAIN][:150], corpus, repeats),
        f"unchanged, large with outputs, n={min(40, len(paths[LARGE]))}":
            unchanged_vs_json(paths[LARGE][:40], corpus, repeats),
    }
    openai_nbs = [p for pair in zip(paths[OLD], paths[NEW], strict=False) for p in pair][: 11 if args.quick else 61]
    first, changed = changed_times(openai_nbs, corpus, work)
    tables = [throughput_table(runs, count, corpus_mib), per_notebook_table(unchanged, first, changed)]
    worst_unchanged = max(r.median for _, _, r in unchanged.values())
    checks = [
        Check("unchanged notebook vs json.load", f"{fmt_ratio(worst_unchanged)} (worst group median)", "< 2x",
              worst_unchanged < TARGET_UNCHANGED_RATIO),
        Check("changed notebook, median", fmt_time(changed.median), "< 50 ms", changed.median < TARGET_CHANGED_S),
    ]
    emit(args, "convert", tables, checks)


if __name__ == "__main__":
    main()
