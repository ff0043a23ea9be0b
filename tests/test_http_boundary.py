"""The one HTTP error boundary: the same transport failure is the same error in every dialect.

Units on ``httpx.MockTransport`` (the providers' ``transport=`` parameter): a body that breaks
off after some text, or before any, and a connection that cannot be made.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from nbllm.config import get_spec
from nbllm.errors import ConnectError, RequestTimeout, StreamInterrupted
from nbllm.messages import ChatRequest
from nbllm.providers.base import make_provider
from nbllm.providers.http import HTTPProvider

# What each dialect's stream starts with: one piece of text, "Hel", in its own framing.
FIRST_PIECE = {
    "deepseek": ("text/event-stream", b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'),
    "ollama": ("application/x-ndjson", b'{"message":{"role":"assistant","content":"Hel"},"done":false}\n'),
    "ernie-v1": ("text/event-stream", b'data: {"id":"as-1","result":"Hel","is_end":false}\n\n'),
}
KEYS = {"deepseek": "sk-unit", "ollama": None, "ernie-v1": "ak-unit:sk-unit"}


class Breaking(httpx.SyncByteStream):
    """A body that sends its bytes and then fails as a stalled or dropped connection does."""

    def __init__(self, body: bytes, failure: Exception) -> None:
        self.body = body
        self.failure = failure

    def __iter__(self) -> Iterator[bytes]:
        if self.body:
            yield self.body
        raise self.failure


def provider(pid: str, body: bytes, failure: Exception) -> HTTPProvider:
    content_type, _ = FIRST_PIECE[pid]

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/2.0/token"):  # ERNIE v1 buys an access token first
            return httpx.Response(200, json={"access_token": "unit-token", "expires_in": 3600})
        return httpx.Response(200, headers={"content-type": content_type}, stream=Breaking(body, failure))

    made = make_provider(get_spec(pid), KEYS[pid], transport=httpx.MockTransport(handle), max_retries=0)
    assert isinstance(made, HTTPProvider)
    return made


def ask() -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")


@pytest.mark.parametrize("pid", list(FIRST_PIECE))
@pytest.mark.parametrize("failure", [httpx.ReadTimeout("stalled"), httpx.RemoteProtocolError("peer closed")])
def test_a_break_after_text_is_stream_interrupted_with_the_text(pid: str, failure: Exception) -> None:
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for delta in provider(pid, FIRST_PIECE[pid][1], failure).stream(ask()):
            got.append(delta.text)
    assert got == ["Hel"] and info.value.partial_text == "Hel" and info.value.provider == pid
    assert "after 3 characters" in info.value.message


@pytest.mark.parametrize("pid", list(FIRST_PIECE))
def test_a_stall_before_any_text_is_a_timeout(pid: str) -> None:
    with pytest.raises(RequestTimeout, match="before any text arrived"):
        list(provider(pid, b"", httpx.ReadTimeout("stalled")).stream(ask()))


@pytest.mark.parametrize("pid", list(FIRST_PIECE))
def test_a_refused_connection_is_a_connect_error(pid: str) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    made = make_provider(get_spec(pid), KEYS[pid], transport=httpx.MockTransport(refuse), max_retries=0)
    with pytest.raises(ConnectError):
        list(made.stream(ask()))
