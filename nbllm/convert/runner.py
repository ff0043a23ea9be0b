"""Batch conversion: every file gives a result value; one bad notebook never stops the run.

Notebooks whose code never imports the OpenAI SDK (or a wrapper of it) take a fast path: they
are read and checked, but libcst is not even imported, so they cannot change. Nothing is written
unless something changed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nbllm.convert.cells import uses_sdk
from nbllm.convert.notebook import (
    atomic_write,
    cell_source,
    check_writable,
    read_notebook,
    remove_stale_temp_files,
    render,
)
from nbllm.convert.result import CellDiff, FileResult, Item
from nbllm.errors import ConvertError, NbllmError
from nbllm.providers.catalog import ProviderSpec

PYTHON_NAMES = {"python", "python3", "ipython", "ipython3", "py", ""}
_IMPORT = re.compile(r"^\s*(?:from\s+(\w+)[\w.]*\s+import\b|import\s+(\w+))", re.M)


@dataclass(frozen=True)
class Options:
    """How to convert; picklable so --jobs workers get the same settings."""

    spec: ProviderSpec
    model_overrides: tuple[tuple[str, str], ...] = ()
    keep_v0: bool = False
    write: bool = True  # False for --dry-run and --check
    output_dir: str | None = None
    backup: bool = False
    clear_outputs: bool = False


# Folders a walk never enters: installed or generated code (docs/converter.md#files-and-folders).
SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "node_modules", ".ipynb_checkpoints", "build", "dist",
                          "__pycache__"})


def _walk_skips(folder: Path, name: str) -> bool:
    if name.startswith(".") or name in SKIPPED_DIRS:
        return True
    return (folder / name / "pyvenv.cfg").exists()  # a virtual environment


def discover(paths: list[str] | list[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, root) for every notebook and .py file under paths, each file once.

    A walk skips dot-folders, virtual environments (a ``pyvenv.cfg``) and the folders in
    SKIPPED_DIRS, and does not enter symlinked folders. A symlinked notebook stays a symlink:
    its target is converted, once, however many links and paths lead to it.
    """
    seen: set[Path] = set()
    for p in map(Path, paths):
        found = _walk(p) if p.is_dir() else iter([(p, p.parent)])
        for path, root in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                yield path, root


def _walk(root: Path) -> Iterator[tuple[Path, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _walk_skips(folder, d))
        for name in sorted(filenames):
            if name.endswith((".ipynb", ".py")):
                yield folder / name, root


_LANG_KEYS = ("vscode", "dotnet_interactive", "polyglot_notebook")


def _cell_skip(cell: dict[str, Any]) -> str | None:
    meta = cell.get("metadata")
    if not meta or not any(k in meta for k in _LANG_KEYS):
        return None
    langs = [(meta.get("vscode") or {}).get("languageId"), (meta.get("dotnet_interactive") or {}).get("language"),
             (meta.get("polyglot_notebook") or {}).get("kernelName")]
    lang = next((x for x in langs if isinstance(x, str)), "")
    return None if lang.lower() in PYTHON_NAMES else f"{lang} cell (not Python)"


def _notebook_language(nb: dict[str, Any]) -> str:
    meta = nb.get("metadata") or {}
    lang = (meta.get("kernelspec") or {}).get("language") or (meta.get("language_info") or {}).get("name") or ""
    return str(lang).lower()


@lru_cache(maxsize=256)
def _folder_names(folder: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def _sibling_warnings(path: Path, codes: list[tuple[int, str]]) -> list[Item]:
    """A notebook importing a module next to it that calls OpenAI: say so.

    docs/converter.md#reported-not-changed
    """
    items: list[Item] = []
    names = _folder_names(str(path.parent))
    seen: set[str] = set()
    for cell_no, code in codes:
        for m in _IMPORT.finditer(code):
            name = m.group(1) or m.group(2)
            if name in seen or (f"{name}.py" not in names and name not in names):
                continue
            seen.add(name)
            for candidate in (path.parent / f"{name}.py", path.parent / name / "__init__.py"):
                if candidate.is_file() and "openai" in candidate.read_text("utf-8", "replace").lower():
                    items.append(Item("sibling-module", f"imports {name} ({candidate.name}), which calls OpenAI: "
                                      f"convert it too (nbllm convert {candidate} --to ...)", cell_no, None, True))
    return items


def _convert_code(texts: list[tuple[int, str, str | None]], opts: Options) -> tuple[dict[int, str], list[Item]]:
    """Run the codemods (imported here: the fast path never loads libcst)."""
    from nbllm.convert.codemods.base import Target
    from nbllm.convert.pipeline import prepare, run_codemods
    from nbllm.modelmap import ModelMap

    target = Target(opts.spec, ModelMap(opts.spec, dict(opts.model_overrides)), keep_v0=opts.keep_v0)
    cells = prepare(texts)
    outcome = run_codemods(cells, target)
    given = {i for i, _, skip in texts if skip}
    skipped = [Item("skipped-cell", f"cell left alone: {c.skip}", c.index + 1, None, True)
               for c in cells if c.skip and c.index not in given]
    skipped += [Item("writefile", f"cell {c.index + 1} writes a file that calls OpenAI; it was not converted",
                     c.index + 1, None, True) for c in cells if c.skip and c.skip.startswith("%%writefile")
                and "openai" in c.text.lower()]
    return outcome.new_sources, outcome.items + skipped


def _destination(path: Path, root: Path, opts: Options) -> Path:
    if opts.output_dir is None:
        return path
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return Path(opts.output_dir) / rel


def _write(path: Path, root: Path, text: str, opts: Options) -> str:
    dest = _destination(path, root, opts)
    if dest == path:
        if path.is_symlink():  # a link named on the command line: its target changes, the link stays
            dest = path = path.resolve()
        check_writable(path)
        backup = path.with_name(path.name + ".bak")
        if opts.backup and not backup.exists():  # the first backup keeps the original
            shutil.copy2(path, backup)
    atomic_write(dest, text, like=path)
    return str(dest)


def _code_cells(raw_cells: list[dict[str, Any]]) -> tuple[list[tuple[int, str, str | None]], list[Item]]:
    texts: list[tuple[int, str, str | None]] = []
    items: list[Item] = []
    for i, cell in enumerate(raw_cells):
        if cell.get("cell_type") == "code":
            source = cell_source(cell)
            skip = _cell_skip(cell)
            texts.append((i, source, skip))
            if skip:
                items.append(Item("skipped-cell", f"cell left alone: {skip}", i + 1, None, True))
    return texts, items


def _convert_notebook(path: Path, root: Path, opts: Options) -> FileResult:
    raw = read_notebook(path)
    lang = _notebook_language(raw.nb)
    if lang not in PYTHON_NAMES:
        return FileResult(str(path), "skipped", f"{lang} notebook (not Python)")
    texts, items = _code_cells(raw.cells)
    items += _sibling_warnings(path, [(i + 1, t) for i, t, skip in texts if skip is None])
    if not any(uses_sdk(t) for _, t, skip in texts if skip is None):
        return FileResult(str(path), "unchanged", items=items)
    new_sources, more = _convert_code(texts, opts)
    items += more
    if not new_sources:
        return FileResult(str(path), "unchanged", items=items)
    text = render(raw, new_sources, opts.clear_outputs)
    diffs = [CellDiff(i + 1, cell_source(raw.cells[i]), s) for i, s in sorted(new_sources.items())]
    written = _write(path, root, text, opts) if opts.write else None
    return FileResult(str(path), "changed", items=items, diffs=diffs, written=written)


def _convert_python(path: Path, root: Path, opts: Options) -> FileResult:
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{path} could not be read as UTF-8 Python ({exc}); it was left untouched.") from exc
    if not uses_sdk(text):
        return FileResult(str(path), "unchanged")
    new_sources, items = _convert_code([(0, text, None)], opts)
    for item in items:
        item.cell = None
    if not new_sources:
        return FileResult(str(path), "unchanged", items=items)
    written = _write(path, root, new_sources[0], opts) if opts.write else None
    return FileResult(str(path), "changed", items=items, diffs=[CellDiff(0, text, new_sources[0])], written=written)


def _not_a_file(path: Path) -> str | None:
    """Why path is skipped rather than read: reading a FIFO or device blocks or never ends."""
    try:
        st = path.stat()
    except OSError:
        return None  # read_notebook reports a vanished or unreadable file
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device named like a notebook)"
    return None


def convert_file(path: Path, root: Path, opts: Options) -> FileResult:
    """Convert one file; every failure becomes a result (the file is then untouched)."""
    try:
        why = _not_a_file(path)
        if why:
            return FileResult(str(path), "skipped", why)
        if path.suffix == ".py":
            return _convert_python(path, root, opts)
        return _convert_notebook(path, root, opts)
    except NbllmError as exc:
        return FileResult(str(path), "failed", exc.message)
    except Exception as exc:  # a converter bug must not stop the batch or damage the file
        return FileResult(str(path), "failed", f"internal error ({type(exc).__name__}: {exc}); the file was left "
                          "untouched. Please report this notebook.")


def destinations(files: list[tuple[Path, Path]], opts: Options) -> dict[Path, list[Path]]:
    """--output-dir paths that more than one input would be written to (checked before any write)."""
    if opts.output_dir is None:
        return {}
    taken: dict[Path, list[Path]] = {}
    for path, root in files:
        taken.setdefault(_destination(path, root, opts).absolute(), []).append(path)
    return {dest: sources for dest, sources in taken.items() if len(sources) > 1}


def _die_with_parent() -> None:
    """Worker start-up: end this worker as soon as the parent dies, even by ``kill -9`` (Linux),
    instead of converting the rest of its queue. Elsewhere a watcher thread notices the parent's
    exit within a second."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0 and os.getppid() == parent:  # PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_batch(files: list[tuple[Path, Path]], opts: Options, jobs: int = 1,
              progress: Callable[[int, int, str], None] | None = None) -> list[FileResult]:
    """Convert files in order, in worker processes when jobs > 1."""
    results: list[FileResult] = []
    remove_stale_temp_files({path.parent for path, _ in files})
    if jobs > 1 and len(files) > 1:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_die_with_parent) as pool:
            chunk = max(1, len(files) // (jobs * 8))
            stream = pool.map(convert_file, *zip(*files, strict=True), [opts] * len(files), chunksize=chunk)
            for n, result in enumerate(stream, 1):
                results.append(result)
                if progress:
                    progress(n, len(files), result.path)
        return results
    for n, (path, root) in enumerate(files, 1):
        results.append(convert_file(path, root, opts))
        if progress:
            progress(n, len(files), str(path))
    return results
