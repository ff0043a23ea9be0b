"""Several providers for one prompt, side by side (``%%llm -p a,b,c``).

Every provider streams in its own thread into one display that the main thread refreshes at
most every 0.1 s, then a table shows the figures users choose a provider by. One provider
failing never stops the others. Sections are Markdown whatever -f says, and a comparison is
one-off: it never enters the conversation history.
"""

from __future__ import annotations

import threading
from typing import Any

from nbllm.errors import NbllmError, ProviderError
from nbllm.response import Response
from nbllm.tables import Table

from .call import Call, add_note
from .render import CHAR_BUDGET, INTERVAL, footer, is_rich


class Lane:
    """One provider of a comparison: its response, read in its own thread."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.response: Response | None = None
        self.error: NbllmError | None = None
        self.note = ""
        self.size = 0  # characters so far: the board's redraw interval grows with the text it sends
        self.version = 0  # bumped on every change, so the display knows what to redraw
        self.done = False

    @property
    def text(self) -> str:
        return self.response.text if self.response is not None else ""

    def prepare(self, call: Call) -> None:
        """Resolve in the main thread: a missing key or unknown id is this lane's error."""
        try:
            self.response = call.respond(self.target)
        except NbllmError as exc:
            self._fail(exc)

    def run(self, cancel: threading.Event) -> None:
        if self.response is None:
            return
        try:
            for delta in self.response:
                self.size += len(delta.text)
                self.version += 1
                if cancel.is_set():
                    self.note = "interrupted"
                    break
        except NbllmError as exc:
            self._fail(exc)
        except Exception as exc:  # a lane must end with a row in the table, whatever happened
            self._fail(ProviderError(f"{self.target} failed unexpectedly: {type(exc).__name__}: {exc}"))
        finally:
            self.response.close()
            self.done = True
            self.version += 1

    def _fail(self, exc: NbllmError) -> None:
        self.error = exc
        self.done = True
        self.version += 1

    def section(self) -> str:
        response = self.response
        head = f"### {response.provider} · {response.model}" if response is not None else f"### {self.target}"
        parts = [head, self.text]
        if self.error is not None:
            parts.append(f"**{type(self.error).__name__}**: {self.error.message}")
        elif not self.done:
            parts[-1] += " …"
        elif response is not None:
            parts.append(f"<small>{footer(response, self.note)}</small>")
        return "\n\n".join(part for part in parts if part)

    def row(self) -> list[str]:
        """provider, model, first token, total, tokens, error."""
        response, failed = self.response, self.error is not None
        if response is None:
            return [self.target, "", "", "", "", type(self.error).__name__]
        return [
            response.provider, response.model,
            "" if response.first_token_s is None else f"{response.first_token_s:.2f} s",
            "" if failed and not response.text else f"{response.total_s:.2f} s",
            "" if response.tokens is None else str(response.tokens),
            type(self.error).__name__ if failed else "",
        ]


TABLE_HEADERS = ["provider", "model", "first token", "total", "tokens", "error"]


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
        table = Table(TABLE_HEADERS, [lane.row() for lane in self._lanes])
        if self._publish is None:
            print(table, flush=True)
        else:
            self._publish(table.bundle(), {"nbllm": provenance(self._lanes)})


def provenance(lanes: list[Lane]) -> dict[str, Any]:
    """Each lane's provenance (with its own text: the display mixes them), saved with the table."""
    from nbllm.log.hook import provenance_of

    return {"lanes": [provenance_of(lane.response) if lane.response is not None
                      else {"provider": lane.target, "error": type(lane.error).__name__} for lane in lanes]}


def run_compare(call: Call, targets: list[str]) -> list[Lane]:
    """Stream every target at once; raise only when every one of them failed."""
    lanes = [Lane(t) for t in targets]
    for lane in lanes:
        lane.prepare(call)
    cancel = threading.Event()
    threads = [threading.Thread(target=lane.run, args=(cancel,), daemon=True, name=f"nbllm {lane.target}")
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
    if all(lane.error is not None for lane in lanes):
        raise add_note(lanes[0].error, "Every provider in the comparison failed; the table lists why.")  # type: ignore[arg-type]
    return lanes
