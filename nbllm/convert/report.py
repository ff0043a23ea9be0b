"""What the user sees after a run: per-cell diffs, a summary table, the JSON report, progress."""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from nbllm.convert.notebook import atomic_write
from nbllm.convert.result import STATUSES, BatchResult, FileResult
from nbllm.secrets import redact

_COLORS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m"}
_RESET = "\033[0m"


def use_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def diff_text(result: FileResult, color: bool = False) -> str:
    """Unified diffs of every rewritten cell, labelled ``path#cell-N``."""
    out: list[str] = []
    for d in result.diffs:
        label = result.path if d.cell == 0 else f"{result.path}#cell-{d.cell}"
        lines = difflib.unified_diff(d.before.splitlines(keepends=True), d.after.splitlines(keepends=True),
                                     f"a/{label}", f"b/{label}")
        for line in lines:
            line = redact(line if line.endswith("\n") else line + "\n")  # a removed key must not be printed
            if color and line[:1] in _COLORS and not line.startswith(("+++", "---")):
                line = f"{_COLORS[line[0]]}{line[:-1]}{_RESET}\n"
            out.append(line)
    return "".join(out)


def _where(cell: int | None, line: int | None) -> str:
    if cell is None:
        return f"line {line}" if line else ""
    return f"cell {cell}" + (f" line {line}" if line else "")


def file_lines(result: FileResult) -> list[str]:
    """One line per file that needs attention (changed, skipped, failed, or with warnings)."""
    if result.status == "unchanged" and not result.warnings:
        return []
    head = f"{result.status:9} {result.path}" + (f": {redact(result.reason)}" if result.reason else "")
    if result.written and result.written != result.path:
        head += f" -> {result.written}"
    lines = [head]
    for w in sorted(result.warnings, key=lambda i: (i.cell or 0, i.line or 0)):
        lines.append(f"    warning [{w.kind}] {_where(w.cell, w.line)}: {redact(w.message)}")
    return lines


def summary(batch: BatchResult, dry_run: bool = False) -> str:
    """The table printed at the end of every run."""
    lines: list[str] = []
    for r in batch.results:
        lines += file_lines(r)
    verb = "would change" if dry_run else "changed"
    lines.append("")
    lines.append(f"nbllm convert --to {batch.target}: {len(batch.results)} file(s)")
    for status in STATUSES:
        label = verb if status == "changed" else status
        lines.append(f"  {label:13} {batch.count(status):5}")
    kinds = Counter(w.kind for r in batch.results for w in r.warnings)
    if kinds:
        lines.append("warnings by kind:")
        lines += [f"  {kind:20} {n:5}" for kind, n in sorted(kinds.items())]
    if batch.changed:
        lines.append("model map:")
        lines += [f"  {m}" for m in batch.model_map]
    return "\n".join(lines) + "\n"


def write_report(batch: BatchResult, path: str | Path) -> None:
    atomic_write(Path(path), json.dumps(batch.to_json(), indent=2, ensure_ascii=False) + "\n")


class Progress:
    """A one-line progress bar on a terminal (stderr) for runs of more than a few files."""

    def __init__(self, stream: TextIO = sys.stderr, minimum: int = 5) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.minimum = minimum

    def __call__(self, done: int, total: int, path: str) -> None:
        if not self.enabled or total < self.minimum:
            return
        width = 30
        fill = width * done // total
        name = path if len(path) <= 40 else "..." + path[-37:]
        self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {name:40}")
        if done == total:
            self.stream.write("\r" + " " * (width + 55) + "\r")
        self.stream.flush()
