"""One %%llm cell's call to one provider, or to a fallback chain (``a||b``) of them.

Fallback moves on only while no text has arrived, so an answer is never spliced from two
providers. Compare mode (``a,b``) lives in ``compare.py`` and builds on the same ``Call``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbllm.errors import NbllmError
from nbllm.messages import Message
from nbllm.response import Callback, Response
from nbllm.session import Session

from .render import make_view, show


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
    source: str = "magic"
    on_done: list[Callback] = field(default_factory=list)  # e.g. the session's history recorder
    cache: str | None = None  # --cache / --no-cache; None follows %llm cache and NBLLM_CACHE

    def respond(self, target: str | None) -> Response:
        """The unread response of one target; a missing key or unknown id is raised here."""
        return self.session.respond(self.messages, target, self.model, params=self.params, stream=self.stream,
                                    source=self.source, on_done=self.on_done, cache=self.cache)


def add_note(exc: NbllmError, note: str) -> NbllmError:
    """Append a sentence to an error's one paragraph (kept redacted like the rest)."""
    if note:
        exc.message = f"{exc.message} {note}"
        exc.args = (exc.message,)
    return exc


def run_chain(call: Call, targets: list[str | None]) -> Response:
    """Ask the first target; on a failure before any text, the next; raise the last failure."""
    failures: list[str] = []
    for i, target in enumerate(targets):
        try:
            response = call.respond(target).prefetch()
        except NbllmError as exc:
            failures.append(f"{target} ({type(exc).__name__})")
            if i + 1 == len(targets):
                earlier = ", ".join(failures[:-1])
                raise add_note(exc, f"Tried before it, also failing: {earlier}." if earlier else "") from None
            continue
        note = f"after {', '.join(failures)} failed" if failures else ""
        return show(response, make_view(call.shell, call.fmt), note)
    raise AssertionError("unreachable: targets is never empty")  # pragma: no cover
