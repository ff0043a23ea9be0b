"""Raw notebook I/O that changes nothing but the cells we rewrote.

``nbformat.write`` re-serialises the whole file (key order, indent, escapes, trailing newline),
which turns a two-line conversion into a thousand-line diff. Instead we keep the original text
and splice new values into the exact byte spans of the rewritten cells' ``source`` (and, when
asked, ``outputs``/``execution_count``). Writes go to a temp file in the same folder, then
``os.replace``, so a crash mid-write leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from nbllm.errors import NotebookReadError, NotebookWriteError

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_NON_ASCII_ESCAPE = re.compile(r"\\u(?:00[89a-fA-F][0-9a-fA-F]|0[1-9a-fA-F][0-9a-fA-F]{2}|[1-9a-fA-F][0-9a-fA-F]{3})")
_BOM = "\ufeff"


@dataclass
class RawNotebook:
    """A notebook as read: its text, parsed content and where each cell's fields sit in the text."""

    path: Path
    text: str
    nb: dict[str, Any]
    bom: bool = False
    spans: list[dict[str, tuple[int, int]]] = field(default_factory=list)

    @property
    def cells(self) -> list[dict[str, Any]]:
        return self.nb["cells"]  # type: ignore[no-any-return]

    @property
    def ensure_ascii(self) -> bool:
        """Write escapes like the file does: ``\\uXXXX`` for non-ASCII only if it already uses them."""
        return self.text.isascii() and bool(_NON_ASCII_ESCAPE.search(self.text))

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text[:4096] else "\n"


def cell_source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def read_notebook(path: Path) -> RawNotebook:
    """Read and validate a notebook; anything we cannot convert safely is a NotebookReadError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotebookReadError(f"{path} vanished before it could be read; nothing was written.") from exc
    except OSError as exc:
        raise NotebookReadError(f"{path} could not be read ({exc.strerror or exc}); it was left untouched.") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookReadError(f"{path} is not UTF-8 text, so it is not a notebook; it was left untouched.") from exc
    bom = text.startswith(_BOM)
    if bom:
        text = text[1:]
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookReadError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); it was left "
            "untouched. Repair it in Jupyter or restore it from version control, then convert again."
        ) from exc
    _validate(path, nb)
    return RawNotebook(path=path, text=text, nb=nb, bom=bom)


def _validate(path: Path, nb: Any) -> None:
    major = nb.get("nbformat") if isinstance(nb, dict) else None
    if isinstance(nb, dict) and (isinstance(major, int) and major < 4 or "worksheets" in nb):
        raise NotebookReadError(
            f"{path} is an nbformat {major} notebook (cells inside 'worksheets'); nbllm converts nbformat 4 "
            "notebooks only, so it was left untouched. Upgrade it with "
            f"`jupyter nbconvert --to notebook --inplace {path.name}` and convert again."
        )
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookReadError(f"{path} is JSON but not a Jupyter notebook (no 'cells' list); it was left untouched.")
    if not isinstance(major, int):
        raise NotebookReadError(f"{path} has no nbformat version; it was left untouched.")
    for i, cell in enumerate(nb["cells"], 1):
        if not isinstance(cell, dict) or not isinstance(cell.get("source", ""), (str, list)):
            raise NotebookReadError(f"{path}: cell {i} is malformed (no cell_type/source); the file was left untouched.")


# --- locating byte spans -------------------------------------------------------------------


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]


def _object_members(text: str, pos: int) -> tuple[dict[str, tuple[int, int]], int]:
    """Spans of each member value of the JSON object starting at pos; returns (spans, end)."""
    spans: dict[str, tuple[int, int]] = {}
    pos = _skip_ws(text, pos + 1)
    if text[pos] == "}":
        return spans, pos + 1
    while True:
        key, pos = scanstring(text, pos + 1)
        pos = _skip_ws(text, pos)
        pos = _skip_ws(text, pos + 1)  # past ':'
        _, end = _DECODER.raw_decode(text, pos)
        spans[key] = (pos, end)
        pos = _skip_ws(text, end)
        if text[pos] == "}":
            return spans, pos + 1
        pos = _skip_ws(text, pos + 1)  # past ','


def locate_cells(raw: RawNotebook) -> list[dict[str, tuple[int, int]]]:
    """Member spans of every cell object, in order (computed once, on demand)."""
    if raw.spans:
        return raw.spans
    top, _ = _object_members(raw.text, _skip_ws(raw.text, 0))
    start, _ = top["cells"]
    pos = _skip_ws(raw.text, start + 1)
    spans: list[dict[str, tuple[int, int]]] = []
    while raw.text[pos] != "]":
        members, pos = _object_members(raw.text, pos)
        spans.append(members)
        pos = _skip_ws(raw.text, pos)
        if raw.text[pos] == ",":
            pos = _skip_ws(raw.text, pos + 1)
    raw.spans = spans
    return spans


# --- serialising in the file's own style ---------------------------------------------------


def _line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    line = text[start:pos]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _indent_unit(text: str) -> str:
    m = re.match(r"\s*\{\r?\n([ \t]+)", text)
    return m.group(1) if m else ""


def _encode_source(raw: RawNotebook, span: tuple[int, int], old: Any, new: str) -> str:
    """The JSON text for a new source value, shaped like the old one (string or list of lines)."""
    ascii_ = raw.ensure_ascii
    if isinstance(old, str):
        return json.dumps(new, ensure_ascii=ascii_)
    lines = new.splitlines(keepends=True)
    if not lines:
        return "[]"
    old_text = raw.text[span[0] : span[1]]
    items = [json.dumps(line, ensure_ascii=ascii_) for line in lines]
    if "\n" in old_text and len(old) > 0:
        second_line = old_text[old_text.index("\n") + 1 :]
        item_indent = second_line[: len(second_line) - len(second_line.lstrip(" \t"))]
        close_indent = _line_indent(raw.text, span[1] - 1)
    else:
        unit = _indent_unit(raw.text)
        if not unit:
            return "[" + ", ".join(items) + "]"
        close_indent = _line_indent(raw.text, span[0])
        item_indent = close_indent + unit
    nl = raw.newline
    body = f",{nl}{item_indent}".join(items)
    return f"[{nl}{item_indent}{body}{nl}{close_indent}]"


def render(raw: RawNotebook, new_sources: dict[int, str], clear_outputs: bool = False) -> str:
    """The file text with the given cells' sources replaced and everything else byte-identical."""
    spans = locate_cells(raw)
    edits: list[tuple[int, int, str]] = []
    for index, source in new_sources.items():
        cell, members = raw.cells[index], spans[index]
        edits.append((*members["source"], _encode_source(raw, members["source"], cell["source"], source)))
        if clear_outputs and cell.get("cell_type") == "code":
            if "outputs" in members and cell.get("outputs"):
                edits.append((*members["outputs"], "[]"))
            if "execution_count" in members and cell.get("execution_count") is not None:
                edits.append((*members["execution_count"], "null"))
    text = raw.text
    for start, end, value in sorted(edits, reverse=True):
        text = text[:start] + value + text[end:]
    _check_render(raw, text, new_sources, clear_outputs)
    return (_BOM if raw.bom else "") + text


def _check_render(raw: RawNotebook, text: str, new_sources: dict[int, str], clear: bool) -> None:
    """Re-read what we are about to write: it must be the old notebook with exactly our edits."""
    again = json.loads(text)
    for i, (a, b) in enumerate(zip(raw.cells, again["cells"], strict=True)):
        expected = new_sources.get(i, cell_source(a))
        if cell_source(b) != expected or type(a.get("source")) is not type(b.get("source")):
            raise NotebookWriteError(f"{raw.path}: internal check failed for cell {i + 1}; nothing was written.")
        if not (clear and i in new_sources) and b.get("outputs") != a.get("outputs"):
            raise NotebookWriteError(f"{raw.path}: internal check failed for cell {i + 1}; nothing was written.")


# --- writing -------------------------------------------------------------------------------


def _write_bytes(fh: Any, data: bytes) -> None:
    """The one place bytes reach the disk (a test replaces it to simulate a full disk)."""
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())


def atomic_write(path: Path, text: str, *, like: Path | None = None) -> None:
    """Write text to path via a temp file in the same folder and os.replace; never half a file."""
    like = like or path
    try:
        mode = stat.S_IMODE(like.stat().st_mode) if like.exists() else 0o644
    except OSError:
        mode = 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_bytes(fh, text.encode("utf-8"))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise NotebookWriteError(
                f"{path} could not be written ({exc.strerror or exc}); the original file is untouched. "
                "Free some disk space or fix the folder's permissions and convert again."
            ) from exc
        raise


TEMP_SUFFIX = ".nbllm-tmp"


def remove_stale_temp_files(folders: set[Path]) -> None:
    """Remove temp files that a killed run left in these folders (their writer is gone)."""
    for folder in folders:
        try:
            names = [n for n in os.listdir(folder) if n.endswith(TEMP_SUFFIX) and n.startswith(".")]
        except OSError:
            continue
        for name in names:
            pid = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)[-2] if name.count(".") >= 3 else ""
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(folder / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(path: Path) -> None:
    """Refuse to replace a read-only or vanished file (os.replace would happily do both)."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise NotebookWriteError(f"{path} vanished while it was being converted; nothing was written.") from exc
    if not st.st_mode & stat.S_IWUSR or not os.access(path.parent, os.W_OK):
        raise NotebookWriteError(
            f"{path} is read-only; it was left untouched. Make it writable (chmod u+w) or use --output-dir."
        )
