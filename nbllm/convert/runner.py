"""Batch conversion: every file gives a result value; one bad notebook never stops the run.

Notebooks whose code never mentions ``openai`` take a fast path: they are read and checked, but
libcst is not even imported. Nothing is written unless something changed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nbllm.convert.notebook import atomic_write, cell_source, check_writable, read_notebook, render
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


def discover(paths: list[str] | list[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, root) for every notebook and .py file under paths; checkpoints and dot-folders skipped."""
    for p in map(Path, paths):
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if d != ".ipynb_checkpoints" and not d.startswith("."))
                for name in sorted(filenames):
                    if name.endswith((".ipynb", ".py")):
                        yield Path(dirpath) / name, p
        else:
            yield p, p.parent


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
    """A notebook importing a module next to it that calls OpenAI: say so (case 37)."""
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
        check_writable(path)
        if opts.backup:
            shutil.copy2(path, path.with_name(path.name + ".bak"))
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
    if not any("openai" in t.lower() for _, t, skip in texts if skip is None):
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
    if "openai" not in text.lower():
        return FileResult(str(path), "unchanged")
    new_sources, items = _convert_code([(0, text, None)], opts)
    for item in items:
        item.cell = None
    if not new_sources:
        return FileResult(str(path), "unchanged", items=items)
    written = _write(path, root, new_sources[0], opts) if opts.write else None
    return FileResult(str(path), "changed", items=items, diffs=[CellDiff(0, text, new_sources[0])], written=written)


def convert_file(path: Path, root: Path, opts: Options) -> FileResult:
    """Convert one file; every failure becomes a result (the file is then untouched)."""
    try:
        if path.suffix == ".py":
            return _convert_python(path, root, opts)
        return _convert_notebook(path, root, opts)
    except NbllmError as exc:
        return FileResult(str(path), "failed", exc.message)
    except Exception as exc:  # a converter bug must not stop the batch or damage the file
        return FileResult(str(path), "failed", f"internal error ({type(exc).__name__}: {exc}); the file was left "
                          "untouched. Please report this notebook.")


def run_batch(files: list[tuple[Path, Path]], opts: Options, jobs: int = 1,
              progress: Callable[[int, int, str], None] | None = None) -> list[FileResult]:
    """Convert files in order, in worker processes when jobs > 1."""
    results: list[FileResult] = []
    if jobs > 1 and len(files) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
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
