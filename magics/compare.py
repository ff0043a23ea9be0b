"""Several providers for one prompt: a fallback chain (``a||b``) or a side-by-side comparison.

Fallback moves on only while no text has arrived, so an answer is never spliced from two
providers. Compare mode streams every provider in its own thread into one display that the
main thread refreshes at most every 0.1 s, then shows a table of the figures users choose a
provider by. One provider failing never stops the others. Sections are Markdown whatever -f
says, and a comparison is one-off: it never enters the conversation history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nbllm.chat import ChatRequest, Delta, Message
from nbllm.errors import NbllmError, ProviderError
from nbllm.providers.base import Provider
from nbllm.secrets import redact_deltas
from nbllm.session import Session

from .render import CHAR_BUDGET, INTERVAL, Answer, consume, footer, is_rich, make_view


@dataclass
class Call:
    """Everything one %%llm cell sends, whichever provider ends up answering."""

    session: Session
    messages: list[Message]
    params: dict[str, Any]
    model: str | None
    stream: bool
    fmt: str
    shell: Any

    def open(self, target: str | None) -> tuple[Provider, ChatRequest]:
        timeout = self.params.get("timeout") or self.session.params.get("timeout")
        provider, model = self.session.resolve(target, self.model, timeout=timeout)
        return provider, self.session.request(self.messages, model, self.params)

    def deltas(self, provider: Provider, request: ChatRequest) -> Iterator[Delta]:
        return redact_deltas(provider.stream(request) if self.stream else _whole(provider, request))


def _whole(provider: Provider, request: ChatRequest) -> Iterator[Delta]:
    """--no-stream: one request for the whole answer, shown as a single delta."""
    reply = provider.complete(request)
    yield Delta(text=reply.text, reasoning=reply.reasoning, finish_reason=reply.finish_reason, usage=reply.usage)


def _close(deltas: Iterator[Delta]) -> None:
    close = getattr(deltas, "close", None)
    if close is not None:
        close()


def _peek(deltas: Iterator[Delta]) -> list[Delta]:
    """Pull deltas up to the first one with text, so failures before any text can fall back."""
    head: list[Delta] = []
    try:
        for delta in deltas:
            head.append(delta)
            if delta.text or delta.reasoning:
                break
    except BaseException:
        _close(deltas)
        raise
    return head


def _prepend(head: list[Delta], rest: Iterator[Delta]) -> Iterator[Delta]:
    try:
        yield from head
        yield from rest
    finally:
        _close(rest)


def add_note(exc: NbllmError, note: str) -> NbllmError:
    """Append a sentence to an error's one paragraph (kept redacted like the rest)."""
    if note:
        exc.message = f"{exc.message} {note}"
        exc.args = (exc.message,)
    return exc


def run_chain(call: Call, targets: list[str | None]) -> Answer:
    """Ask the first target; on a failure before any text, the next; raise the last failure."""
    failures: list[str] = []
    for i, target in enumerate(targets):
        start = time.perf_counter()
        try:
            provider, request = call.open(target)
            deltas = call.deltas(provider, request)
            head = _peek(deltas)
        except NbllmError as exc:
            failures.append(f"{target} ({type(exc).__name__})")
            if i + 1 == len(targets):
                earlier = ", ".join(failures[:-1])
                raise add_note(exc, f"Tried before it, also failing: {earlier}." if earlier else "") from None
            continue
        first = time.perf_counter() - start if head and (head[-1].text or head[-1].reasoning) else None
        note = f"after {', '.join(failures)} failed" if failures else ""
        answer = Answer(provider.spec.id, request.model, first_token_s=first, note=note)
        return consume(_prepend(head, deltas), make_view(call.shell, call.fmt), answer, start=start)
    raise AssertionError("unreachable: targets is never empty")  # pragma: no cover


class Lane:
    """One provider of a comparison: it streams in its own thread into its own pieces."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.answer = Answer(provider=target, model="")
        self.pieces: list[str] = []
        self.size = 0  # characters so far: the board's redraw interval grows with the text it sends
        self.version = 0  # bumped on every change, so the display knows what to redraw
        self.done = False
        self._opened: tuple[Provider, ChatRequest] | None = None

    def prepare(self, call: Call) -> None:
        """Resolve in the main thread: a missing key or unknown id is this lane's error."""
        try:
            self._opened = call.open(self.target)
        except NbllmError as exc:
            self._fail(exc)
            return
        self.answer.provider, self.answer.model = self._opened[0].spec.id, self._opened[1].model

    def run(self, call: Call, cancel: threading.Event) -> None:
        if self._opened is None:
            return
        start = time.perf_counter()
        deltas: Iterator[Delta] = iter(())
        try:
            deltas = call.deltas(*self._opened)
            for delta in deltas:
                if self.answer.first_token_s is None and (delta.text or delta.reasoning):
                    self.answer.first_token_s = time.perf_counter() - start
                self.pieces.append(delta.text)
                self.size += len(delta.text)
                self.answer.usage = delta.usage or self.answer.usage
                self.version += 1
                if cancel.is_set():
                    self.answer.note = "interrupted"
                    break
        except NbllmError as exc:
            self._fail(exc)
        except Exception as exc:  # a lane must end with a row in the table, whatever happened
            self._fail(ProviderError(f"{self.target} failed unexpectedly: {type(exc).__name__}: {exc}"))
        finally:
            _close(deltas)
            self.answer.text = "".join(self.pieces)
            self.answer.total_s = time.perf_counter() - start
            self.done = True
            self.version += 1

    def _fail(self, exc: NbllmError) -> None:
        self.answer.error = exc
        self.done = True
        self.version += 1

    def section(self) -> str:
        head = f"### {self.answer.provider}" + (f" · {self.answer.model}" if self.answer.model else "")
        parts = [head, "".join(self.pieces)]
        if self.answer.error is not None:
            parts.append(f"**{type(self.answer.error).__name__}**: {self.answer.error.message}")
        elif not self.done:
            parts[-1] += " …"
        else:
            parts.append(f"<small>{footer(self.answer)}</small>")
        return "\n\n".join(part for part in parts if part)


def table(answers: list[Answer]) -> tuple[str, str]:
    """The comparison table as Markdown and as aligned plain text."""
    headers = ["provider", "model", "first token", "total", "tokens", "error"]
    rows = [[
        a.provider, a.model,
        "" if a.first_token_s is None else f"{a.first_token_s:.2f} s",
        "" if a.error is not None and not a.text else f"{a.total_s:.2f} s",
        "" if a.tokens is None else str(a.tokens),
        "" if a.error is None else type(a.error).__name__,
    ] for a in answers]
    markdown = "\n".join(["| " + " | ".join(r) + " |" for r in [headers, ["---"] * len(headers), *rows]])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    plain = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows])
    return markdown, plain


class _Board:
    """The comparison display: one rich display redrawn in place, or sections printed as lanes end."""

    def __init__(self, shell: Any, lanes: list[Lane]) -> None:
        import uuid

        self._publish = shell.display_pub.publish if is_rich(shell) else None
        self._lanes = lanes
        self._id = uuid.uuid4().hex
        self._shown_version = -1
        self._printed: set[int] = set()

    def refresh(self, *, final: bool = False) -> None:
        version = sum(lane.version for lane in self._lanes)
        if self._publish is None:
            self._print_finished()
        elif version != self._shown_version or final:
            text = "\n\n".join(lane.section() for lane in self._lanes)
            self._publish({"text/markdown": text, "text/plain": text}, {},
                          transient={"display_id": self._id}, update=self._shown_version >= 0)
            self._shown_version = version

    def _print_finished(self) -> None:
        for i, lane in enumerate(self._lanes):
            if lane.done and i not in self._printed:
                text = lane.section().replace("### ", "== ", 1).replace("<small>", "").replace("</small>", "")
                print(text + "\n", flush=True)
                self._printed.add(i)

    def finish(self) -> None:
        self.refresh(final=True)
        markdown, plain = table([lane.answer for lane in self._lanes])
        if self._publish is None:
            print(plain, flush=True)
        else:
            self._publish({"text/markdown": markdown, "text/plain": plain}, {})


def run_compare(call: Call, targets: list[str]) -> list[Answer]:
    """Stream every target at once; raise only when every one of them failed."""
    lanes = [Lane(t) for t in targets]
    for lane in lanes:
        lane.prepare(call)
    cancel = threading.Event()
    threads = [threading.Thread(target=lane.run, args=(call, cancel), daemon=True, name=f"nbllm {lane.target}")
               for lane in lanes]
    board = _Board(call.shell, lanes)
    for thread in threads:
        thread.start()
    try:
        alive = threads
        while alive:
            # wakes early when that lane ends; redraws at most every INTERVAL, and less often as the
            # text grows, so the characters sent stay under CHAR_BUDGET a second (linear total work)
            alive[0].join(max(INTERVAL, sum(lane.size for lane in lanes) / CHAR_BUDGET))
            board.refresh()
            alive = [thread for thread in threads if thread.is_alive()]
    except KeyboardInterrupt:
        cancel.set()
        for thread in threads:
            thread.join(1.0)
        board.finish()
        raise
    board.finish()
    answers = [lane.answer for lane in lanes]
    if all(a.error is not None for a in answers):
        first = answers[0].error
        raise add_note(first, "Every provider in the comparison failed; the table lists why.")  # type: ignore[arg-type]
    return answers
