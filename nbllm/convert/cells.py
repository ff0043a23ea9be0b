"""Code cells to one Python module and back, with IPython syntax masked so libcst can parse it.

Names must resolve across cells (a client built in cell 2 is used in cell 7), so all code cells
are joined into one module with a separator statement between them. ``%magic``, ``!shell``,
``obj?`` and ``x = !cmd`` lines are replaced by unique placeholder names at the same indent, and
restored byte for byte afterwards; ``%%capture``-style cell magics whose body is Python are
masked on their first line, other cell magics (``%%bash``, ``%%writefile``) skip the cell.
"""

from __future__ import annotations

import ast
import re
import secrets
from dataclasses import dataclass, field

# Cell magics whose body is ordinary Python that runs in the kernel.
PYTHON_CELL_MAGICS = frozenset({"capture", "time", "timeit", "prun", "memit", "debug", "python", "python3"})

_MAGIC = re.compile(r"[ \t]*(?:[%!]|[A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*[ \t]*=[ \t]*[%!])")
_HELP = re.compile(r"[ \t]*(?:\?{1,2}[\w.*]+|[\w.*]+(?:\(\))?\?{1,2})[ \t]*$")
_STRING_START = re.compile(r"(?i)(?:[rbuf]{0,2})('''|\"\"\"|'|\")")
# What the converter retargets: the openai SDK, or a LangChain/llama_index OpenAI wrapper.
# Other packages' ``openai`` modules (``agent_framework.openai``, ``langkit.openai``) are not
# retargeted, so they do not count: a key read next to them may go to OpenAI.
_SDK_USE = re.compile(r"^[ \t]*(?:import[ \t]+(?:[\w.]+(?:[ \t]+as[ \t]+\w+)?[ \t]*,[ \t]*)*openai\b|"
                      r"from[ \t]+(?:openai|langchain_openai|llama_index\.[\w.]*openai[\w.]*)\b[\w.]*[ \t]+import\b|"
                      r"from[ \t]+(?:langchain\w*|llama_index)[\w.]*[ \t]+import[ \t]+(?:\([^)]*|[^\n]*)OpenAI)",
                      re.M)


def uses_sdk(text: str) -> bool:
    """Whether code imports the OpenAI SDK or a wrapper of it. Code that does not is never
    changed, whatever it does with ``OPENAI_API_KEY`` (that key may be for another service)."""
    return bool(_SDK_USE.search(text))


# ``%time CODE`` / ``%timeit [-n N ...] CODE``: line magics whose rest is Python to convert.
_TIMED = re.compile(r"(?P<prefix>[ \t]*%(?:time|timeit)(?:[ \t]+-[A-Za-z]+(?:[ \t]*\d+)?)*[ \t]+)(?P<code>\S.*)$")
# Deeper than this, libcst's parser can exhaust the stack (Python itself stops at 200 brackets and
# 100 indentation levels), so the cell is left alone before libcst ever sees it
# (docs/converter.md#cells-that-cannot-be-parsed).
MAX_BRACKETS = 100
MAX_INDENT = 200  # columns


@dataclass
class CodeCell:
    """One code cell on its way through the codemods."""

    index: int  # position in the notebook's cell list
    text: str  # source as stored
    masked: str = ""
    masks: dict[str, str] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)  # token -> "%time " of a converted line magic
    skip: str | None = None  # why the cell is left alone (non-Python, unparseable)
    cell_magic: bool = False
    relevant: bool = True  # False: nothing a codemod looks for, kept out of the joined module


@dataclass
class _ScanState:
    depth: int = 0
    deepest: int = 0
    quote: str | None = None
    continued: bool = False


def _scan(line: str, st: _ScanState) -> None:
    """Advance bracket/string state over one physical line (a tokenizer would choke on magics)."""
    i, n = 0, len(line)
    st.continued = False
    while i < n:
        if st.quote:
            if line[i] == "\\":
                i += 2
                continue
            if line.startswith(st.quote, i):
                i += len(st.quote)
                st.quote = None
                continue
            i += 1
            continue
        ch = line[i]
        if ch == "#":
            break
        m = _STRING_START.match(line, i)
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            st.quote = m.group(1)
            i = m.end()
            continue
        if ch in "([{":
            st.depth += 1
            st.deepest = max(st.deepest, st.depth)
        elif ch in ")]}":
            st.depth = max(0, st.depth - 1)
        i += 1
    stripped = line.rstrip("\r\n")
    if st.quote in ("'", '"') and not stripped.endswith("\\"):
        st.quote = None  # an unterminated one-line string: let the parser complain
    st.continued = stripped.endswith("\\") and st.quote is None


def _is_magic(line: str) -> bool:
    return bool(_MAGIC.match(line) or _HELP.match(line))


def mask_cell(cell: CodeCell, salt: str) -> None:
    """Fill cell.masked/masks (or cell.skip for a cell magic that does not hold Python)."""
    lines = cell.text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].startswith("%%"):
        name = lines[first][2:].split(None, 1)[0] if lines[first][2:].strip() else ""
        if name not in PYTHON_CELL_MAGICS:
            cell.skip = f"%%{name} cell (not Python)"
            return
        cell.cell_magic = True
    out: list[str] = []
    st = _ScanState()
    in_magic = False  # inside a `!pip install \` continuation
    indent = ""
    for i, line in enumerate(lines):
        at_start = st.depth == 0 and st.quote is None and not st.continued
        timed = _TIMED.match(line.rstrip("\r\n")) if at_start and not in_magic else None
        if timed and _python_line(timed.group("code")):
            token = f"__nbllm_{salt}_{cell.index}_{i}__"
            cell.prefixes[token] = timed.group("prefix")
            body = line.rstrip("\r\n")
            indent = body[: len(body) - len(body.lstrip(" \t"))]
            out.append(f"{indent}{timed.group('code')}  # {token}{line[len(body):]}")
            continue
        if st.quote is None and len(line) - len(line.lstrip(" \t")) > MAX_INDENT:
            cell.skip = "nesting too deep to parse safely"
            return
        if in_magic or (at_start and (_is_magic(line) or (cell.cell_magic and i == first))):
            body = line.rstrip("\r\n")
            if not in_magic:
                indent = body[: len(body) - len(body.lstrip(" \t"))]
            token = f"__nbllm_{salt}_{cell.index}_{i}__"
            cell.masks[token] = body
            out.append(f"{indent}{token}{line[len(body):]}")
            in_magic = body.endswith("\\")
            continue
        _scan(line, st)
        if st.deepest > MAX_BRACKETS:
            cell.skip = "nesting too deep to parse safely"
            return
        out.append(line)
    masked = "".join(out)
    cell.masked = masked if masked.endswith("\n") or not masked else masked + "\n"


def _python_line(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def unmask(text: str, masks: dict[str, str], prefixes: dict[str, str] | None = None) -> str | None:
    """Put the original IPython lines back; None if a placeholder went missing or moved."""
    lines = text.splitlines(keepends=True)
    found = 0
    prefixes = prefixes or {}
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        token = body.strip()
        if token in masks:
            lines[i] = masks[token] + line[len(body) :]
            found += 1
        elif prefixes and body.endswith("__") and "  # __nbllm_" in body:
            code, _, token = body.rpartition("  # ")
            if token in prefixes:
                lines[i] = prefixes[token] + code.lstrip(" \t") + line[len(body) :]
                found += 1
    return "".join(lines) if found == len(masks) + len(prefixes) else None


def new_salt(text: str) -> str:
    """A placeholder prefix that does not occur anywhere in the notebook."""
    while True:
        salt = secrets.token_hex(4)
        if salt not in text:
            return salt


def separator(salt: str) -> str:
    return f"__nbllm_{salt}_cell__"


def join(cells: list[CodeCell], salt: str) -> str:
    """One module: every cell's masked code (empty for skipped cells) between separator lines."""
    sep = separator(salt) + "\n"
    return sep.join(c.masked if c.relevant and not c.skip else "" for c in cells)


def split(code: str, salt: str, count: int) -> list[str] | None:
    """Cut the module back into cells; None if a separator was lost (the codemods must not move them)."""
    sep = separator(salt)
    parts: list[list[str]] = [[]]
    for line in code.splitlines(keepends=True):
        if line.rstrip("\r\n") == sep:
            parts.append([])
        else:
            parts[-1].append(line)
    if len(parts) != count:
        return None
    return ["".join(p) for p in parts]


def restore_text(cell: CodeCell, converted_masked: str, masks: dict[str, str] | None = None) -> str | None:
    """The converted cell as it will be stored: magics back, original trailing newline kept."""
    text = unmask(converted_masked, cell.masks if masks is None else masks, cell.prefixes)
    if text is None:
        return None
    if not cell.text.endswith("\n") and text.endswith("\n"):
        text = text[:-1]
    return text


def cell_line_starts(code: str, salt: str) -> list[int]:
    """1-based line number where each cell starts in the joined module."""
    sep = separator(salt)
    starts = [1]
    for n, line in enumerate(code.splitlines(), 1):
        if line == sep:
            starts.append(n + 1)
    return starts
