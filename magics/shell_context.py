"""Read what a prompt may refer to out of the running IPython shell (for nbllm.context)."""

from __future__ import annotations

import re
import sys
from typing import Any

from nbllm.context import NotebookState

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def notebook_state(shell: Any, prompt: str | None = None, cells: int | None = None) -> NotebookState:
    """Inputs as typed, outputs, text outputs and the last error of the running shell.

    Given the prompt and --cells, the parts it cannot use are left out: collecting every cell's
    text output and formatting the last traceback cost more than the rest of a cell's work and
    grow with the session. The inputs and outputs are the shell's own (read, never copied).
    """
    history = shell.history_manager
    inputs = getattr(history, "input_hist_raw", None) or shell.user_ns.get("In", [])
    return NotebookState(
        namespace=shell.user_ns,
        inputs=inputs,
        outputs=shell.user_ns.get("Out", {}),
        texts=_text_outputs(history) if cells is None or cells > 0 else {},
        last_error=last_error_text(shell) if prompt is None or "{Err}" in prompt else None,
        current=_running_cell(shell, inputs),
    )


def _running_cell(shell: Any, inputs: list[str]) -> int:
    """The running cell's number. IPython stores a cell's input before running it, but raises
    ``execution_count`` before running it only from 8.13 on (8.12 and older raise it after)."""
    stored = len(inputs) - 1
    return stored if stored in (shell.execution_count, shell.execution_count - 1) else shell.execution_count - 1


def last_error_text(shell: Any) -> str | None:
    """The last error as IPython showed it, without colours; nbllm's own errors as their paragraph."""
    value = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if value is None:
        return None
    render = getattr(value, "_render_traceback_", None)
    if callable(render):
        return "\n".join(render())
    etype, tb = type(value), value.__traceback__
    try:
        lines = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=1)
        text = shell.InteractiveTB.stb2text(lines)
    except Exception:  # IPython's formatter is best effort; fall back to the standard one
        import traceback

        text = "".join(traceback.format_exception(etype, value, tb))
    return _ANSI.sub("", text).strip()


def _text_outputs(history: Any) -> dict[int, str]:
    """Text each cell printed or displayed (IPython >= 9 records it), streamed partials dropped."""
    recorded = getattr(history, "outputs", None) or {}
    return {number: text for number, items in recorded.items() if (text := _cell_text(items))}


def _cell_text(items: list[Any]) -> str:
    texts: list[tuple[str, str]] = []
    for item in items:
        bundle = getattr(item, "bundle", {}) or {}
        kind = getattr(item, "output_type", "")
        if kind in ("out_stream", "err_stream"):
            texts.append((kind, "".join(bundle.get("stream", []))))
        elif "text/plain" in bundle:
            plain = bundle["text/plain"]
            texts.append((kind, "".join(plain) if isinstance(plain, list) else str(plain)))
    displays = [text for kind, text in texts if kind == "display_data"]
    kept: list[str] = []
    seen = 0
    for kind, text in texts:
        if kind == "display_data":
            seen += 1
            # a display updated in place is recorded once per update: keep only its last state
            if any(later.startswith(text) for later in displays[seen:]):
                continue
        kept.append(text)
    return "\n".join(t.rstrip("\n") for t in kept if t.strip())
