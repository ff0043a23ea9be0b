"""The asyncio path of the HTTP layer gives what the blocking one gives: same deltas, same errors.

Every scenario runs twice against the same loopback fake, once through ``stream`` and once
through ``astream``; the outcomes (deltas, or error class, message and partial text) must match.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from nbllm.batch.limiter import RateLimiter
from nbllm.config import get_spec
from nbllm.errors import NbllmError, RateLimitError, StreamInterrupted
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.base import make_provider
from nbllm.providers.http import HTTPProvider
from tests.fakes.ollama_server import FakeOllamaServer, OllamaAnswer, OllamaError
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer, qianfan_error

KEY = "nbllm-fake-async-0123456789"
JSON_ANSWER = {"id": "as-1", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

OPENAI_SCENARIOS: dict[str, list[Any]] = {
    "echo": [],
    "reasoning": [Answer(["The answer", " is 4."], reasoning=["2+2", " makes 4"])],
    "split-non-ascii": [Answer(["你好，", "世界"], writes="split")],
    "keep-alive": [Answer(["a", "b"], keepalive=2)],
    "no-done": [Answer(["a", "b"], done=False)],
    "close-delimited": [Answer(["a", "b"], framing="close")],
    "cut": [Answer(["one ", "two ", "three"], cut_after=2)],
    "clean-close-unfinished": [Answer(["par", "tial"], finish_reason=None, done=False, framing="close")],
    "error-event": [Answer(["Some "], error_event={"code": "1301", "message": "unsafe content"})],
    "quota-in-200": [ErrorReply(200, {"error": {"code": "insufficient_quota", "message": "no balance"}})],
    "json-instead-of-stream": [ErrorReply(200, JSON_ANSWER)],
    "html": [ErrorReply(200, "<html>gateway</html>", content_type="text/html")],
    "auth": [qianfan_error(401, "invalid_api_key", "bad key")],
    "500-then-ok": [ErrorReply(500, {"error": {"message": "busy"}})],
    "500-always": [ErrorReply(500, {"error": {"message": "busy"}})] * 3,
    "stream-options-rejected": [qianfan_error(400, "invalid_param", "unknown field stream_options")],
}


def outcome(deltas: list[Delta] | None = None, error: BaseException | None = None) -> tuple[Any, ...]:
    if error is None:
        return ("ok", tuple(deltas or []))
    assert isinstance(error, NbllmError), error
    return (type(error).__name__, error.message, getattr(error, "partial_text", None))


def run_sync(provider: Any, request: ChatRequest, fetch: bool = False) -> tuple[Any, ...]:
    got: list[Delta] = []
    try:
        for delta in (provider.fetch if fetch else provider.stream)(request):
            got.append(delta)
    except NbllmError as exc:
        return outcome(error=exc)
    return outcome(got)


def run_async(provider: Any, request: ChatRequest, fetch: bool = False) -> tuple[Any, ...]:
    async def main() -> tuple[Any, ...]:
        got: list[Delta] = []
        try:
            async for delta in (provider.afetch if fetch else provider.astream)(request):
                got.append(delta)
        except NbllmError as exc:
            return outcome(error=exc)
        finally:
            await provider.aclose()
        return outcome(got)

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HTTPProvider, "_backoff", staticmethod(lambda n, exc: 0.0))


def openai_provider(server: FakeOpenAIServer) -> Any:
    return make_provider(get_spec("ernie").with_changes(base_url=server.base_url), KEY, sleep=lambda s: None)


def ask(text: str = "hi", model: str = "ernie-4.0-turbo-8k", **params: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model=model, params=params)


@pytest.mark.parametrize("name", sorted(OPENAI_SCENARIOS))
def test_openai_dialect_async_matches_sync(openai_server: FakeOpenAIServer, name: str) -> None:
    provider = openai_provider(openai_server)
    openai_server.enqueue(*OPENAI_SCENARIOS[name])
    expected = run_sync(provider, ask("hello"))
    sync_bodies = [r.json for r in openai_server.chat_requests]
    openai_server.requests.clear()
    openai_server.enqueue(*OPENAI_SCENARIOS[name])
    assert run_async(provider, ask("hello")) == expected
    assert [r.json for r in openai_server.chat_requests] == sync_bodies


def test_non_streamed_fetch_matches(openai_server: FakeOpenAIServer) -> None:
    provider = openai_provider(openai_server)
    assert run_async(provider, ask("x"), fetch=True) == run_sync(provider, ask("x"), fetch=True)
    assert [r.json["stream"] for r in openai_server.chat_requests] == [False, False]


def test_a_429_pauses_the_gate_and_is_retried(openai_server: FakeOpenAIServer) -> None:
    provider = openai_provider(openai_server)
    gate = RateLimiter()
    openai_server.enqueue(qianfan_error(429, "rate_limit_exceeded", "slow down", headers={"Retry-After": "0.2"}))

    async def main() -> str:
        text = "".join([d.text async for d in provider.astream(ask("again"), gate=gate)])
        await provider.aclose()
        return text

    assert asyncio.run(main()) == "echo: again"
    assert gate.pauses == 1 and len(openai_server.chat_requests) == 2


def test_the_last_429_is_raised_with_its_retry_after(openai_server: FakeOpenAIServer) -> None:
    provider = openai_provider(openai_server)
    openai_server.enqueue(*[qianfan_error(429, "rate_limit_exceeded", "slow", headers={"Retry-After": "0"})] * 3)
    with pytest.raises(RateLimitError):
        asyncio.run(_collect(provider.astream(ask())))


async def _collect(deltas: Any) -> list[Delta]:
    return [d async for d in deltas]


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.mark.parametrize("lines", [
    [],
    [OllamaAnswer(text=["one ", "two ", "three"], cut_mid_line=2)],
    [OllamaAnswer(text=["a", "b", "c"], error_after=2, error_message="runner stopped")],
    [OllamaAnswer(text=["x", "y"], done=False)],
    [OllamaError(404, 'model "qwen3:32b" not found, try pulling it first')],
    [OllamaError(500, "failure")] * 3,
], ids=["echo", "cut", "error-line", "no-done", "missing-model", "500"])
def test_ollama_async_matches_sync(ollama: FakeOllamaServer, lines: list[Any]) -> None:
    provider = make_provider(get_spec("ollama").with_changes(base_url=ollama.url), None)
    ollama.enqueue(*lines)
    expected = run_sync(provider, ask(model="qwen2.5:7b"))
    ollama.enqueue(*lines)
    assert run_async(provider, ask(model="qwen2.5:7b")) == expected


def test_a_provider_without_an_async_twin_runs_in_a_thread() -> None:
    from nbllm.providers.base import Provider

    class Canned(Provider):
        def stream(self, request: ChatRequest) -> Iterator[Delta]:
            yield Delta(text="in a ")
            yield Delta(text="thread", finish_reason="stop")

    provider = Canned(get_spec("ernie"))
    assert "".join(d.text for d in asyncio.run(_collect(provider.astream(ask())))) == "in a thread"


def test_a_cut_keeps_partial_text_in_the_async_response(openai_server: FakeOpenAIServer) -> None:
    provider = openai_provider(openai_server)
    openai_server.enqueue(Answer(["one ", "two ", "three"], cut_after=2))

    async def main() -> Any:
        response = provider.arespond(ask())
        with pytest.raises(StreamInterrupted):
            await response.areply()
        return response

    response = asyncio.run(main())
    assert response.done and response.text == "one two " and isinstance(response.error, StreamInterrupted)
