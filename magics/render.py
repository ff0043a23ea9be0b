"""Show a streamed answer: one display updated in place (rich frontends) or stdout (terminal).

The renderer only presents a ``Response`` (which adds up the answer, times it and closes the
stream); it never touches HTTP. Text is kept as a list of pieces
and joined only when a render happens (the joined text is kept, so a render copies the text
once instead of re-joining every piece). Every render publishes the whole text so far, so the
wait between renders grows with the text: at least ``interval`` seconds (at most ~10 updates a
second), and ``len(text) / CHAR_BUDGET`` seconds once the text is long. The characters sent per
second then stay under ``CHAR_BUDGET`` and the total work grows with the answer's length, not
with length x duration (quadratic at a given token rate).
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from nbllm.errors import NbllmError, StreamInterrupted
from nbllm.messages import Delta
from nbllm.response import Response

Clock = Callable[[], float]
Publish = Callable[..., None]

FORMATS = ("markdown", "text", "code", "json", "html", "math")
INTERVAL = 0.1
CHAR_BUDGET = 200_000  # characters a second the in-place display may be sent once the text is long

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)


def footer(response: Response, note: str = "") -> str:
    """One line: provider, model, time to first token, total time, tokens, and any note."""
    parts = [response.provider, response.model]
    if response.first_token_s is not None:
        parts.append(f"first token {response.first_token_s:.2f} s")
    parts.append(f"total {response.total_s:.2f} s")
    if response.tokens is not None:
        parts.append(f"{response.tokens} tokens")
    if response.cached:
        parts.append("cached")
    if note:
        parts.append(note)
    return " · ".join(parts)


def extract_code(text: str) -> str:
    """The code of an answer: the contents of its fenced blocks, or the whole text if none."""
    blocks = _FENCE.findall(text)
    return "\n\n".join(b.rstrip("\n") for b in blocks) if blocks else text.strip("\n")


def bundle(text: str, fmt: str, *, final: bool) -> dict[str, Any]:
    """The MIME bundle for an answer; partial JSON/HTML/math is shown as plain text until the end."""
    if fmt == "markdown":
        return {"text/markdown": text, "text/plain": text}
    if fmt == "code":
        code = extract_code(text) if final else text
        return {"text/markdown": f"```python\n{code}\n```" if final else text, "text/plain": code}
    if not final or fmt == "text":
        return {"text/plain": text}
    if fmt == "json":
        return _json_bundle(text)
    if fmt == "html":
        return {"text/html": text, "text/plain": text}
    math = text.strip()
    return {"text/latex": math if math.startswith("$") else f"$${math}$$", "text/plain": text}


def _json_bundle(text: str) -> dict[str, Any]:
    raw = extract_code(text) if "```" in text else text
    try:
        value = json.loads(raw)
    except ValueError:
        return {"text/plain": text}  # not JSON after all: still show what the model said
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    if isinstance(value, (dict, list)):
        return {"application/json": value, "text/plain": pretty}
    return {"text/plain": pretty}


def reasoning_bundle(text: str, *, final: bool) -> dict[str, Any]:
    """Reasoning shown apart from the answer: dimmed while it streams, collapsed at the end."""
    state = "" if final else " open"
    body = html.escape(text)
    return {
        "text/html": f"<details{state}><summary>Reasoning</summary>"
        f'<div style="opacity:0.6;white-space:pre-wrap">{body}</div></details>',
        "text/plain": f"[reasoning]\n{text}",
    }


class View(Protocol):
    def feed(self, delta: Delta) -> None: ...

    def finish(self, response: Response, note: str) -> None: ...


class _Part:
    """One in-place display (answer or reasoning) with its pieces and display id."""

    def __init__(self, display_id: str) -> None:
        self.display_id = display_id
        self.pieces: list[str] = []
        self.size = 0  # characters in the pieces, kept so the throttle never has to join them
        self.shown = False
        self.dirty = False

    def add(self, piece: str) -> None:
        self.pieces.append(piece)
        self.size += len(piece)
        self.dirty = True

    def text(self) -> str:
        """The text so far; joined pieces are kept as one, so each join copies only once."""
        if len(self.pieces) > 1:
            self.pieces = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""


class RichView:
    """Rich frontends: one display for the answer (and one for reasoning), updated in place."""

    def __init__(self, publish: Publish, fmt: str = "markdown", *, clock: Clock = time.perf_counter,
                 interval: float = INTERVAL, char_budget: float = CHAR_BUDGET) -> None:
        import uuid

        self._publish = publish
        self._fmt = fmt
        self._clock = clock
        self._min_interval = interval
        self._char_budget = char_budget
        self._interval = interval
        self._last = float("-inf")
        self.answer = _Part(uuid.uuid4().hex)
        self.reasoning = _Part(uuid.uuid4().hex)
        self.updates = 0  # publishes of the answer display, the figure the rate bound is about

    def feed(self, delta: Delta) -> None:
        for part, piece in ((self.reasoning, delta.reasoning), (self.answer, delta.text)):
            if piece:
                part.add(piece)
        first = any(p.dirty and not p.shown for p in (self.reasoning, self.answer))
        if first or (self._dirty() and self._clock() - self._last >= self._interval):
            self._render(final=False)

    def finish(self, response: Response, note: str) -> None:
        """The final answer carries the provenance a saved notebook keeps (the footer, if there is no answer)."""
        from nbllm.log.hook import provenance_of

        shown = self._render(final=True, provenance=lambda plain: {"nbllm": provenance_of(response, plain)})
        line = footer(response, note)
        metadata = {} if shown else {"nbllm": provenance_of(response)}
        self._publish({"text/plain": line, "text/html": f"<small>{html.escape(line)}</small>"}, metadata)

    def _dirty(self) -> bool:
        return self.answer.dirty or self.reasoning.dirty

    def _render(self, *, final: bool, provenance: Callable[[str], dict[str, Any]] | None = None) -> bool:
        """Publish what changed; True when the answer display was published (with ``provenance``'s metadata)."""
        self._last = self._clock()
        shown = False
        if self.reasoning.pieces and (self.reasoning.dirty or final):
            self._show(self.reasoning, reasoning_bundle(self.reasoning.text(), final=final))
        if self.answer.pieces and (self.answer.dirty or final):
            data = bundle(self.answer.text(), self._fmt, final=final)
            self._show(self.answer, data, provenance(data["text/plain"]) if provenance else {})
            self.updates += 1
            shown = True
        size = self.answer.size + self.reasoning.size
        self._interval = max(self._min_interval, size / self._char_budget)
        return shown

    def _show(self, part: _Part, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self._publish(data, metadata or {}, transient={"display_id": part.display_id}, update=part.shown)
        part.shown = True
        part.dirty = False


class TerminalView:
    """Terminal IPython: deltas go to stdout as they come; reasoning is dimmed."""

    def __init__(self, write: Callable[[str], Any] | None = None) -> None:
        self._write = write
        self._in_reasoning = False
        self._wrote = False

    def _out(self, text: str) -> None:
        (self._write or sys.stdout.write)(text)
        if self._write is None:
            sys.stdout.flush()

    def feed(self, delta: Delta) -> None:
        if delta.reasoning:
            self._out(("" if self._in_reasoning else "\x1b[2m") + delta.reasoning)
            self._in_reasoning = True
        if delta.text:
            if self._in_reasoning:
                self._out("\x1b[0m\n\n")
                self._in_reasoning = False
            self._out(delta.text)
            self._wrote = True

    def finish(self, response: Response, note: str) -> None:
        line = footer(response, note)
        if self._in_reasoning:
            self._out("\x1b[0m")
        self._out(f"\n\n{line}\n" if self._wrote or self._in_reasoning else f"{line}\n")


def show(response: Response, view: View, note: str = "") -> Response:
    """Feed a response to a view and end it with the footer; returns the finished response.

    The response closes its stream before anything more is rendered. An interrupt or a dropped
    stream keeps the partial text on screen and is raised again so the cell fails; an error
    before any text shows nothing and is raised as it is.
    """
    try:
        for delta in response:
            view.feed(delta)
    except KeyboardInterrupt:
        response.close()
        view.finish(response, "interrupted: partial answer")
        raise
    except StreamInterrupted:
        view.finish(response, "stream dropped: partial answer")
        raise
    except NbllmError:
        if response.text or response.reasoning:
            view.finish(response, "failed: partial answer")
        raise
    view.finish(response, note)
    return response


def is_rich(shell: Any) -> bool:
    """A frontend that renders HTML/Markdown (a kernel), as opposed to terminal IPython."""
    if shell.has_trait("kernel"):
        return True
    types = set(shell.display_formatter.active_types)
    return bool(types & {"text/html", "text/markdown"})


def make_view(shell: Any, fmt: str, clock: Clock = time.perf_counter) -> View:
    if is_rich(shell):
        return RichView(shell.display_pub.publish, fmt, clock=clock)
    return TerminalView()
