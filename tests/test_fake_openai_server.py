"""The fake server itself speaks the wire format the dialect relies on (checked with raw httpx)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.openai_server import Answer, FakeOpenAIServer, qianfan_error

BODY = {"model": "ernie-4.0-turbo-8k", "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True}}
AUTH = {"Authorization": "Bearer k-123"}


def _raw_stream(server: FakeOpenAIServer) -> bytes:
    with httpx.stream("POST", server.base_url + "/chat/completions", json=BODY, headers=AUTH) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.read()


def test_echo_stream_is_openai_shaped(openai_server: FakeOpenAIServer) -> None:
    raw = _raw_stream(openai_server).decode()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: hi"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    assert all(c["id"].startswith("as-") and c["object"] == "chat.completion.chunk" for c in chunks)


def test_missing_bearer_gets_qianfan_401(openai_server: FakeOpenAIServer) -> None:
    response = httpx.post(openai_server.base_url + "/chat/completions", json=BODY)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["x-ratelimit-limit-requests"] == "300"


def test_recorded_requests_and_queue(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(qianfan_error(429, "rpm_rate_limit_exceeded", "slow down", "rate_limit_exceeded"))
    first = httpx.post(openai_server.base_url + "/chat/completions", json=BODY, headers={**AUTH, "appid": "app-1"})
    assert first.status_code == 429
    assert first.json()["error"]["message"] == "slow down"
    assert _raw_stream(openai_server).endswith(b"data: [DONE]\n\n")
    req = openai_server.requests[0]
    assert (req.method, req.path, req.headers["appid"], req.json["model"]) == (
        "POST", "/v1/chat/completions", "app-1", "ernie-4.0-turbo-8k")


def test_cut_after_breaks_chunked_body(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["a", "b", "c"], cut_after=1))
    with pytest.raises(httpx.RemoteProtocolError):
        _raw_stream(openai_server)


def test_no_space_keepalive_and_packed(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["x"], data_space=False, keepalive=2, writes="packed"))
    raw = _raw_stream(openai_server).decode()
    assert raw.startswith(": keep-alive\n\n: keep-alive\n\ndata:{")
    assert raw.endswith("data:[DONE]\n\n")
