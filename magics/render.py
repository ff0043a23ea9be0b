"""Show a streamed answer: one display updated in place (rich frontends) or stdout (terminal).

The renderer only consumes ``Delta``s; it never touches HTTP. Text is kept as a list of pieces
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from nbllm.chat import Delta, Usage
from nbllm.errors import NbllmError, StreamInterrupted

Clock = Callable[[], float]
Publish = Callable[..., None]

FORMATS = ("markdown", "text", "code", "json", "html", "math")
INTERVAL = 0.1
CHAR_BUDGET = 200_000  # characters a second the in-place display may be sent once the text is long

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)


@dataclass
class Answer:
    """What one provider produced, with the figures shown in the footer and the compare table."""

    provider: str
    model: str
    text: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    first_token_s: float | None = None
    total_s: float = 0.0
    note: str = ""  # "interrupted", "stream dropped", "answered after ernie failed", ...
    error: NbllmError | None = field(default=None, repr=False)

    @property
    def tokens(self) -> int | None:
        if self.usage is None:
            return None
        return self.usage.completion_tokens or self.usage.total_tokens


def footer(answer: Answer) -> str:
    """One line: provider, model, time to first token, total time, tokens, and any note."""
    parts = [answer.provider, answer.model]
    if answer.first_token_s is not None:
        parts.append(f"first token {answer.first_token_s:.2f} s")
    parts.append(f"total {answer.total_s:.2f} s")
    if answer.tokens is not None:
        parts.append(f"{answer.tokens} tokens")
    if answer.note:
        parts.append(answer.note)
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

    def finish(self, answer: Answer) -> None: ...


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

    def finish(self, answer: Answer) -> None:
        self._render(final=True)
        line = footer(answer)
        self._publish({"text/plain": line, "text/html": f"<small>{html.escape(line)}</small>"}, {})

    def _dirty(self) -> bool:
        return self.answer.dirty or self.reasoning.dirty

    def _render(self, *, final: bool) -> None:
        self._last = self._clock()
        if self.reasoning.pieces and (self.reasoning.dirty or final):
            self._show(self.reasoning, reasoning_bundle(self.reasoning.text(), final=final))
        if self.answer.pieces and (self.answer.dirty or final):
            self._show(self.answer, bundle(self.answer.text(), self._fmt, final=final))
            self.updates += 1
        size = self.answer.size + self.reasoning.size
        self._interval = max(self._min_interval, size / self._char_budget)

    def _show(self, part: _Part, data: dict[str, Any]) -> None:
        self._publish(data, {}, transient={"display_id": part.display_id}, update=part.shown)
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

    def finish(self, answer: Answer) -> None:
        if self._in_reasoning:
            self._out("\x1b[0m")
        self._out(f"\n\n{footer(answer)}\n" if self._wrote or self._in_reasoning else f"{footer(answer)}\n")


def consume(deltas: Iterator[Delta], view: View, answer: Answer, *, start: float,
            clock: Clock = time.perf_counter) -> Answer:
    """Feed a stream to a view and fill in ``answer``; the stream is closed on every exit path.

    An interrupt or a dropped stream keeps the partial text on screen and is raised again so
    the cell fails; an error before any text shows nothing and is raised as it is.
    """
    text: list[str] = []
    reasoning: list[str] = []
    try:
        _pump(deltas, view, answer, text, reasoning, start, clock)
    except KeyboardInterrupt:
        _end(answer, text, reasoning, start, clock, "interrupted: partial answer")
        view.finish(answer)
        raise
    except StreamInterrupted as exc:
        exc.partial_text = exc.partial_text or "".join(text)
        _end(answer, text, reasoning, start, clock, "stream dropped: partial answer")
        view.finish(answer)
        raise
    except NbllmError:
        if any(text) or any(reasoning):
            _end(answer, text, reasoning, start, clock, "failed: partial answer")
            view.finish(answer)
        raise
    _end(answer, text, reasoning, start, clock, answer.note)
    view.finish(answer)
    return answer


def _pump(deltas: Iterator[Delta], view: View, answer: Answer, text: list[str], reasoning: list[str],
          start: float, clock: Clock) -> None:
    try:
        for delta in deltas:
            if answer.first_token_s is None and (delta.text or delta.reasoning):
                answer.first_token_s = clock() - start
            text.append(delta.text)
            reasoning.append(delta.reasoning)
            answer.usage = delta.usage or answer.usage
            answer.finish_reason = delta.finish_reason or answer.finish_reason
            view.feed(delta)
    finally:  # close the connection first, whatever happened, before anything is rendered
        close = getattr(deltas, "close", None)
        if close is not None:
            close()


def _end(answer: Answer, text: list[str], reasoning: list[str], start: float, clock: Clock, note: str) -> None:
    answer.text = "".join(text)
    answer.reasoning = "".join(reasoning)
    answer.total_s = clock() - start
    answer.note = note


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
