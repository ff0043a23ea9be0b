"""The asyncio path ends as the blocking one does when a server misbehaves: a stream that goes silent
after its headers (keep-alive comments are no progress) ends at the timeout, and a malformed
payload is the same clear NbllmError, through achat, astream and map alike.

The scripted server holds its connections for HOLD seconds, far longer than the 1 s timeout; the
module's pytest timeout fails a test that waits for it. No test measures speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import nbllm
from nbllm.errors import NbllmError
from tests.fakes.scripted_server import Script, ScriptedServer, chunk, sse

HOLD = 120.0
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        monkeypatch.setenv("NBLLM_QWEN_BASE_URL", server.base_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-asyncerr-0123456789abcdef")
        yield server


def outcome(exc: BaseException) -> tuple[str, str, str | None]:
    assert isinstance(exc, NbllmError), repr(exc)  # a clear error, never a Python one
    return type(exc).__name__, exc.message, getattr(exc, "partial_text", None)


def sync_outcome(**kw: Any) -> tuple[str, str, str | None]:
    with pytest.raises(Exception) as caught:
        nbllm.chat("hi", provider="qwen", **kw)
    return outcome(caught.value)


def achat_outcome(**kw: Any) -> tuple[str, str, str | None]:
    with pytest.raises(Exception) as caught:
        asyncio.run(nbllm.achat("hi", provider="qwen", **kw))
    return outcome(caught.value)


def astream_outcome(**kw: Any) -> tuple[str, str, str | None]:
    async def read() -> str:
        return "".join([piece async for piece in nbllm.astream("hi", provider="qwen", **kw)])

    with pytest.raises(Exception) as caught:
        asyncio.run(read())
    return outcome(caught.value)


SILENCES = {
    "keep-alives only": lambda: Script(hold=HOLD, keepalive=0.2),
    "silent after headers": lambda: Script(hold=HOLD),
    "text, then keep-alives": lambda: Script(steps=[sse(chunk("half an ans"))], hold=HOLD, keepalive=0.2),
}


@pytest.mark.parametrize("name", list(SILENCES))
def test_a_silent_stream_ends_at_the_timeout_as_in_sync(scripted: ScriptedServer, name: str) -> None:
    scripted.enqueue(SILENCES[name]())
    expected = sync_outcome(timeout=1)
    assert expected[0] in ("RequestTimeout", "StreamInterrupted")
    scripted.enqueue(SILENCES[name]())
    assert achat_outcome(timeout=1) == expected
    scripted.enqueue(SILENCES[name]())
    assert astream_outcome(timeout=1) == expected


def test_a_silent_row_of_a_map_fails_with_the_timeout(scripted: ScriptedServer) -> None:
    scripted.enqueue(SILENCES["keep-alives only"]())
    expected = sync_outcome(timeout=1)
    scripted.enqueue(SILENCES["keep-alives only"]())
    (row,) = nbllm.map("{text}", ["hi"], provider="qwen", timeout=1, rpm=0, progress=False)
    assert isinstance(row, nbllm.Failed) and (row.reason, row.message) == expected[:2]


MALFORMED = {
    "broken JSON chunks": lambda: Script(steps=[sse(chunk("Hel")), b'data: {"choices": [{"delta": {"content": "lo"\n\n',
                                                b"data: [DONE]\n\n"]),
    "chunks of the wrong shape": lambda: Script(steps=[sse({"choices": "not a list"}, {"choices": [{"delta": 7}]}),
                                                       b"data: [DONE]\n\n"]),
    "a whole JSON answer of the wrong shape": lambda: Script(
        content_type="application/json", framing="length",
        steps=[b'{"choices": [{"message": "just a string", "finish_reason": 3}]}']),
    "JSON that is not an object": lambda: Script(content_type="application/json", framing="length",
                                                 steps=[b'[1, 2, {"choices": null}]']),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_payload_is_the_same_clear_error_in_async(scripted: ScriptedServer, name: str) -> None:
    scripted.enqueue(MALFORMED[name]())
    expected = sync_outcome()
    scripted.enqueue(MALFORMED[name]())
    assert achat_outcome() == expected
    scripted.enqueue(MALFORMED[name]())
    assert astream_outcome() == expected
