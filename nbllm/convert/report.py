"""What the user sees after a run: per-cell diffs, a summary table, the JSON report, progress."""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from nbllm.convert.notebook import atomic_write
from nbllm.convert.result import STATUSES, BatchResult, FileResult
from nbllm.errors import ConvertError
from nbllm.secrets import redact


class ReportError(ConvertError):
    """The JSON report cannot be written where asked."""


_COLORS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m"}
_RESET = "\033[0m"


def use_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def diff_text(result: FileResult, color: bool = False) -> str:
    """Unified diffs of every rewritten cell, labelled ``path#cell-N``."""
    out: list[str] = []
    for d in result.diffs:
        name = printable(result.path)
        label = name if d.cell == 0 else f"{name}#cell-{d.cell}"
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
    head = f"{result.status:9} {printable(result.path)}" + (f": {redact(result.reason)}" if result.reason else "")
    if result.written and result.written != result.path:
        head += f" -> {printable(result.written)}"
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
    """The JSON report; file names that are not valid UTF-8 are written with ``\\udcXX`` escapes."""
    if Path(path).is_dir():
        raise ReportError(f"--report {printable(str(path))} is a folder; give a file name such as "
                          f"{printable(str(Path(path) / 'nbllm-report.json'))}.")
    text = json.dumps(batch.to_json(), indent=2, ensure_ascii=True) + "\n"
    atomic_write(Path(path), text)


def printable(path: str) -> str:
    """A file name safe to print: control characters and undecodable bytes escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for ch in path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


class Progress:
    """A progress bar (tqdm.auto: a widget in a notebook, text on a terminal) for longer runs.

    Nothing is shown on a pipe or in a log (``stream`` not a terminal) or for a few files;
    tqdm is imported only when a bar is really shown.
    """

    def __init__(self, stream: TextIO = sys.stderr, minimum: int = 5, notebook: bool = False) -> None:
        self.stream = stream
        self.enabled = notebook or stream.isatty()
        self.notebook = notebook
        self.minimum = minimum
        self.bar: Any = None

    def __call__(self, done: int, total: int, path: str) -> None:
        if not self.enabled or total < self.minimum:
            return
        if self.bar is None:
            if self.notebook:
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
            self.bar = tqdm(total=total, file=None if self.notebook else self.stream, unit="file",
                            leave=False, dynamic_ncols=True)
        self.bar.set_postfix_str(printable(path)[-40:], refresh=False)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()
            self.bar = None
