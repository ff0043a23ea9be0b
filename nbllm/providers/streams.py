"""Decoding a provider's stream into ``Delta``s, apart from the I/O that reads it.

A ``Decoder`` takes one item at a time (an SSE event's data, or one NDJSON line) and returns
the deltas it holds. It never reads a socket, so the same decoder serves the blocking reader
in ``nbllm.providers.http`` and an asyncio reader alike; the reader wraps its reads in
``errormap.http_errors(spec, decoder)``, the decoder being the stream state that boundary
needs. Also here: the helpers every dialect used to write for itself (usage figures, the
options nbllm keeps to itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from nbllm.errors import StreamInterrupted
from nbllm.messages import Delta, Usage
from nbllm.providers.catalog import ProviderSpec
from nbllm.providers.errormap import interrupted

# Options nbllm itself consumes; never sent to a provider as they are.
OWN_PARAMS = frozenset({"stream", "timeout", "model"})


def sendable(params: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """The request options a provider should see: set ones, without nbllm's own."""
    skip = OWN_PARAMS.union(drop)
    return {name: value for name, value in params.items() if value is not None and name not in skip}


def json_object(data: str) -> dict[str, Any] | None:
    """The JSON object one stream item holds, or None when it holds something else."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def usage_from(prompt: Any, completion: Any, total: Any = None) -> Usage | None:
    """Token counts from any dialect's names; None when the provider sent no count at all."""
    counts = [n if isinstance(n, int) and not isinstance(n, bool) else None for n in (prompt, completion, total)]
    if not any(counts):
        return None
    prompt, completion, total = counts
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


class Decoder:
    """One stream's decoding state: the text so far and whether the answer is complete.

    Subclasses implement ``feed``; the reader calls ``note`` for every delta it yields, sets
    nothing else, and calls ``end`` when the stream ends without the provider's last item.
    """

    # Why a stream that ends here was cut off (the dialect's own words for its last item).
    incomplete = "the stream ended before the answer was complete"

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.done = False  # the provider's last item arrived ([DONE], done: true, is_end)
        self.finished = False  # a finish reason arrived: the answer is complete
        self.received = False  # some delta carried text, reasoning, a finish reason or usage
        self._received: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self._received)

    def feed(self, data: str, event: str = "") -> list[Delta]:  # pragma: no cover - abstract
        raise NotImplementedError

    def note(self, delta: Delta) -> Delta:
        self.received = self.received or bool(delta.text or delta.reasoning or delta.finish_reason or delta.usage)
        if delta.text:
            self._received.append(delta.text)
        self.finished = self.finished or delta.finish_reason is not None
        return delta

    def interrupted(self, why: str) -> StreamInterrupted:
        return interrupted(self.spec, why, self.text)

    def end(self) -> None:
        """The stream ended: fine after the last item or a finish reason, else cut off."""
        if not (self.done or self.finished):
            raise self.interrupted(self.incomplete)
