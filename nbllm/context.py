"""Notebook context for a prompt: only what the user names, rendered readably and cut to size.

References a prompt may hold:

    {name}       a variable of the notebook (DataFrames as a truncated table, long text cut)
    {In[3]}      the input of cell 3 (negative numbers count back from the current cell)
    {Out[3]}     the output of cell 3
    {Err}        the last error's traceback, as plain text
    {{...}}      doubled braces give the single-braced text literally: {{name}} -> {name}

Every other brace is left exactly as typed, so JSON or code pasted into a prompt is never
changed and never a crash. The namespace is never dumped wholesale (that would surprise users
and leak secrets); each rendered value also passes through ``redact`` so a key held in a
variable cannot reach a provider. This module is engine-side: it knows nothing of IPython.
"""

from __future__ import annotations

import pprint
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbllm.errors import ContextError
from nbllm.secrets import redact_text

MAX_VALUE_CHARS = 4000
MAX_CELL_CHARS = 2000
MAX_TABLE_ROWS = 20
MAX_TABLE_COLS = 12

_TOKEN = re.compile(
    r"\{\{(?P<literal>[^{}\n]*)\}\}"
    r"|\{(?P<cell>In|Out)\[(?P<index>-?\d+)\]\}"
    r"|\{(?P<name>[^\W\d]\w*)\}"
)


@dataclass
class NotebookState:
    """What a prompt may draw on; the magics build it from the running shell."""

    namespace: Mapping[str, Any] = field(default_factory=dict)
    inputs: Sequence[str] = ()  # inputs[n] is the source of cell n; inputs[0] is empty
    outputs: Mapping[int, Any] = field(default_factory=dict)
    texts: Mapping[int, str] = field(default_factory=dict)  # what each cell printed or displayed
    last_error: str | None = None
    current: int | None = None  # the running cell's number, left out of --cells


def cut(text: str, limit: int) -> str:
    """Keep the first ``limit`` characters and say how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [cut: {len(text) - limit} more characters]"


def describe(value: Any) -> str:
    """A short type label such as ``DataFrame, 1000 rows × 5 columns`` or ``str, 12 chars``.

    A value whose ``shape`` or ``len`` raises is labelled by its type name alone.
    """
    kind = type(value).__name__
    try:
        return _label(kind, value)
    except Exception:  # a broken property or __len__ of the user's object
        return kind


def _label(kind: str, value: Any) -> str:
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(n, int) for n in shape):
        return f"{kind}, {shape[0]} rows × {shape[1]} columns"
    if isinstance(shape, tuple) and shape:
        return f"{kind}, shape {shape}"
    if isinstance(value, (str, bytes)):
        return f"{kind}, {len(value)} chars"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{kind}, {len(value)} items"
    return kind


def render_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A readable, size-capped, redacted text for any value (a value that cannot be shown: its type)."""
    try:
        text = _raw_text(value)
    except Exception:  # broken __repr__, __str__, shape or dtype properties of the user's object
        text = f"<{type(value).__name__} object>"
    return redact_text(cut(text, limit))


def _raw_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "to_string"):
        return _pandas_text(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return str(value)  # numpy and friends summarise big arrays themselves
    if isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > 200:
        return _short_repr.repr(value)
    return pprint.pformat(value, width=100, compact=True, sort_dicts=False)


def _pandas_text(value: Any) -> str:
    try:
        if getattr(value, "ndim", 1) == 2:
            return value.to_string(max_rows=MAX_TABLE_ROWS, max_cols=MAX_TABLE_COLS)
        return value.to_string(max_rows=MAX_TABLE_ROWS)
    except TypeError:  # an older or different to_string signature
        return str(value)


_short_repr = reprlib.Repr()
_short_repr.maxlist = _short_repr.maxtuple = _short_repr.maxset = _short_repr.maxfrozenset = 50
_short_repr.maxdict = 50
_short_repr.maxstring = _short_repr.maxother = 400
_short_repr.maxlevel = 4


def expand(prompt: str, state: NotebookState) -> str:
    """Fill in the references of a prompt; a reference to something missing is a ContextError."""

    def replace(match: re.Match[str]) -> str:
        if match.group("literal") is not None:
            return "{" + match.group("literal") + "}"
        if match.group("cell"):
            return _cell_part(state, match.group("cell"), int(match.group("index")))
        name = match.group("name")
        if name == "Err":
            return _last_error(state)
        return render_value(_lookup(state, name))

    return _TOKEN.sub(replace, prompt)


def _lookup(state: NotebookState, name: str) -> Any:
    try:
        return state.namespace[name]
    except KeyError:
        raise ContextError(
            f"The prompt refers to {{{name}}}, but the notebook has no variable named {name!r}. "
            f"Define it first, or write {{{{{name}}}}} to send the braces literally."
        ) from None


def _cell_number(state: NotebookState, index: int) -> int:
    if index >= 0:
        return index
    current = state.current if state.current is not None else len(state.inputs)
    return current + index


def _cell_part(state: NotebookState, which: str, index: int) -> str:
    number = _cell_number(state, index)
    if which == "In":
        if 0 < number < len(state.inputs):
            return redact_text(cut(state.inputs[number], MAX_CELL_CHARS))
        raise ContextError(
            f"The prompt refers to {{In[{index}]}}, but there is no input cell {number}. "
            f"Cells run so far are numbered 1 to {max(len(state.inputs) - 1, 0)}."
        )
    if number in state.outputs:
        return render_value(state.outputs[number])
    raise ContextError(
        f"The prompt refers to {{Out[{index}]}}, but cell {number} has no output. Use a cell whose "
        "last line returns a value (see the Out[n] prompts), or {In[n]} for its source."
    )


def _last_error(state: NotebookState) -> str:
    if not state.last_error:
        raise ContextError("The prompt refers to {Err}, but no error has happened in this session yet.")
    return redact_text(cut(state.last_error, MAX_VALUE_CHARS))


def with_variables(state: NotebookState, names: Sequence[str]) -> str:
    """The ``--with a,b`` block: each variable with a type label and its rendering."""
    parts = []
    for name in names:
        value = _lookup(state, name)
        parts.append(f"Variable `{name}` ({describe(value)}):\n```\n{render_value(value)}\n```")
    return "\n\n".join(parts)


def recent_cells(state: NotebookState, count: int) -> str:
    """The ``--cells N`` block: the last N cells before the current one, inputs and outputs."""
    last = (state.current if state.current is not None else len(state.inputs)) - 1
    first = max(1, last - count + 1)
    parts = []
    for number in range(first, last + 1):
        if number >= len(state.inputs):
            break
        block = f"In [{number}]:\n```python\n{redact_text(cut(state.inputs[number], MAX_CELL_CHARS))}\n```"
        output = _cell_output(state, number)
        if output:
            block += f"\nOutput:\n```\n{output}\n```"
        parts.append(block)
    return "\n\n".join(parts)


def _cell_output(state: NotebookState, number: int) -> str:
    """A cell's text output as shown; its Out value when the shell recorded no text."""
    if state.texts.get(number):
        return redact_text(cut(state.texts[number], MAX_CELL_CHARS))
    if number in state.outputs:
        return render_value(state.outputs[number], MAX_CELL_CHARS)
    return ""


def build_prompt(prompt: str, state: NotebookState, *, with_names: Sequence[str] = (), cells: int = 0) -> str:
    """The user message: opted-in context first, then the prompt with its references filled in.

    The prompt is sent as typed, except for secret values (a key pasted into the cell is masked).
    """
    body = redact_text(expand(prompt, state))
    blocks = []
    if cells > 0:
        recent = recent_cells(state, cells)
        if recent:
            blocks.append(f"Recent cells of my notebook:\n\n{recent}")
    if with_names:
        blocks.append(f"Variables from my notebook:\n\n{with_variables(state, with_names)}")
    if not blocks:
        return body
    return "\n\n".join([*blocks, f"My request:\n\n{body}"])
