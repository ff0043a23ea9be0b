"""The OpenAI-compatible dialect against the loopback Qianfan-flavoured server."""

from __future__ import annotations

from typing import Any

import pytest

from nbllm.config import get_spec
from nbllm.errors import (
    AuthError,
    ContentFilterError,
    ProtocolError,
    QuotaError,
    RequestTimeout,
    ServerError,
    StreamInterrupted,
)
from nbllm.messages import ChatRequest, Delta, Usage
from nbllm.providers.openai_compat import OpenAICompatProvider
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer, qianfan_error

KEY = "bce-v3/ALTAK-unitTESTkey1/0123456789abcdef"


def make(server: FakeOpenAIServer, provider: str = "ernie", **kw: Any) -> OpenAICompatProvider:
    spec = get_spec(provider).with_changes(base_url=server.base_url, **kw.pop("spec", {}))
    return OpenAICompatProvider(spec, KEY, sleep=lambda s: None, **kw)


def ask(text: str = "hi", **params: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model="ernie-4.0-turbo-8k", params=params)


def run(provider: OpenAICompatProvider, request: ChatRequest | None = None) -> list[Delta]:
    return list(provider.stream(request or ask()))


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def test_streams_echo_with_finish_and_usage(openai_server: FakeOpenAIServer) -> None:
    deltas = run(make(openai_server), ask("hello there"))
    assert text_of(deltas) == "echo: hello there"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage == Usage(prompt_tokens=2, completion_tokens=5, total_tokens=7)
    req = openai_server.chat_requests[0]
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["accept"] == "text/event-stream"
    assert req.json == {"model": "ernie-4.0-turbo-8k", "messages": [{"role": "user", "content": "hello there"}],
                        "stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    "answer",
    [
        Answer(["Hel", "lo", " wo", "rld"], data_space=False),
        Answer(["Hel", "lo", " wo", "rld"], keepalive=3),
        Answer(["Hel", "lo", " wo", "rld"], writes="split"),
        Answer(["Hel", "lo", " wo", "rld"], writes="packed"),
        Answer(["Hel", "lo", " wo", "rld"], newline="\r\n"),
        Answer(["Hel", "lo", " wo", "rld"], done=False),  # transformers serve: finish_reason, no [DONE]
        Answer(["Hel", "lo", " wo", "rld"], usage=False),
        Answer(["Hel", "lo", " wo", "rld"], framing="close", writes="split"),
    ],
    ids=["no-space", "keep-alive", "split", "packed", "crlf", "no-done", "no-usage", "close-delimited"],
)
def test_sse_variants_give_the_same_text(openai_server: FakeOpenAIServer, answer: Answer) -> None:
    openai_server.enqueue(answer)
    deltas = run(make(openai_server))
    assert text_of(deltas) == "Hello world"
    assert deltas[-1].finish_reason == "stop" or deltas[-1].usage is not None


def test_non_ascii_split_across_writes(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["你好，", "世界", "🙂"], writes="split"))
    assert text_of(run(make(openai_server))) == "你好，世界🙂"


def test_usage_chunk_has_empty_choices_and_only_usage(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["a", "b", "c"]))
    deltas = run(make(openai_server))
    assert deltas[-1] == Delta(usage=Usage(prompt_tokens=1, completion_tokens=3, total_tokens=4))
    assert deltas[-2] == Delta(finish_reason="stop")


def test_reasoning_kept_apart_from_text(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["The answer", " is 4."], reasoning=["2+2", " makes 4"]))
    deltas = run(make(openai_server))
    assert "".join(d.reasoning for d in deltas) == "2+2 makes 4"
    assert text_of(deltas) == "The answer is 4."
    assert all(not (d.text and d.reasoning) for d in deltas)


def test_cut_mid_stream_raises_with_partial_text(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["one ", "two ", "three ", "four"], cut_after=2))
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for delta in make(openai_server).stream(ask()):
            got.append(delta.text)
    assert "".join(got) == "one two "
    assert info.value.partial_text == "one two "
    assert info.value.provider == "ernie"


def test_clean_close_without_finish_or_done_is_interrupted(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["par", "tial"], finish_reason=None, done=False, framing="close"))
    with pytest.raises(StreamInterrupted) as info:
        run(make(openai_server))
    assert info.value.partial_text == "partial"


def test_done_without_finish_reason_is_complete(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["fine"], finish_reason=None, done=True))
    assert text_of(run(make(openai_server))) == "fine"


def test_error_event_inside_stream_is_mapped(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["Some ", "text"], error_event={"code": "1301", "message": "unsafe content"}))
    with pytest.raises(ContentFilterError) as info:
        run(make(openai_server, "glm"))
    assert '"unsafe content"' in str(info.value) and "(code 1301)" in str(info.value)


def test_json_error_body_instead_of_stream(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(ErrorReply(200, {"error": {"code": "insufficient_quota", "message": "no balance"}}))
    with pytest.raises(QuotaError, match="no balance"):
        run(make(openai_server))


def test_json_answer_instead_of_stream_is_used(openai_server: FakeOpenAIServer) -> None:
    body = {"id": "as-1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    openai_server.enqueue(ErrorReply(200, body))
    assert run(make(openai_server)) == [Delta(text="whole", finish_reason="stop", usage=Usage(1, 1, 2))]


def test_html_instead_of_stream_is_protocol_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(ErrorReply(200, "<html>captive portal</html>", content_type="text/html"))
    with pytest.raises(ProtocolError, match="captive portal"):
        run(make(openai_server))


def test_malformed_event_is_protocol_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(ErrorReply(200, b"data: {not json\n\n", content_type="text/event-stream"))
    with pytest.raises(ProtocolError, match="not a JSON object"):
        run(make(openai_server))


def test_request_params_mapping(openai_server: FakeOpenAIServer) -> None:
    provider = make(openai_server, spec={"extra_body": {"enable_thinking": False, "temperature": 0.1}})
    request = ask(temperature=0.7, top_p=0.9, max_tokens=64, stop="END", seed=7, penalty_score=1.2,
                  user=None, timeout=30, extra_body={"web_search": {"enable": True}})
    run(provider, request)
    body = openai_server.chat_requests[0].json
    assert body["temperature"] == 0.7 and body["enable_thinking"] is False
    assert (body["top_p"], body["max_tokens"], body["stop"], body["seed"]) == (0.9, 64, ["END"], 7)
    assert body["penalty_score"] == 1.2 and body["web_search"] == {"enable": True}
    assert "user" not in body and "timeout" not in body and "extra_body" not in body


def test_appid_header_only_when_set(openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    run(make(openai_server))
    monkeypatch.setenv("QIANFAN_APP_ID", "app-7Kx9")
    run(make(openai_server))
    first, second = openai_server.chat_requests
    assert "appid" not in first.headers
    assert second.headers["appid"] == "app-7Kx9"


def test_extra_headers_from_spec(openai_server: FakeOpenAIServer) -> None:
    run(make(openai_server, "hunyuan", spec={"extra_headers": {"X-Tenant": "lab"}}))
    assert openai_server.chat_requests[0].headers["x-tenant"] == "lab"


def test_complete_non_streamed(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["4"], reasoning="think", finish_reason="length"))
    reply = make(openai_server).complete(ask("2+2?"))
    assert (reply.text, reply.reasoning, reply.finish_reason, reply.provider) == ("4", "think", "length", "ernie")
    assert reply.usage == Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
    body = openai_server.chat_requests[0].json
    assert body["stream"] is False and "stream_options" not in body


def test_complete_with_error_in_200_body(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(ErrorReply(200, {"error": {"code": "1301", "message": "blocked"}}))
    with pytest.raises(ContentFilterError, match="blocked"):
        make(openai_server).complete(ask())


def test_models_live_and_from_catalogue(openai_server: FakeOpenAIServer) -> None:
    openai_server.models = ["hy3-preview", "glm-5.1"]
    assert make(openai_server, "hunyuan").models() == ["hy3-preview", "glm-5.1"]
    ernie = make(openai_server, "ernie")  # Qianfan v2 serves no model list
    assert ernie.models() == list(get_spec("ernie").models)
    assert [r.path for r in openai_server.requests] == ["/v1/models"]


def test_models_failure_raises_mapped_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(qianfan_error(403, "access_denied", "no permission", "access_denied"))
    with pytest.raises(AuthError, match="no permission"):
        make(openai_server, "deepseek").models()


def test_response_closed_when_consumer_stops_early(openai_server: FakeOpenAIServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(openai_server)
    opened: list[Any] = []
    real_open = provider.send

    def spy(*args: Any, **kw: Any) -> Any:
        opened.append(real_open(*args, **kw))
        return opened[-1]

    monkeypatch.setattr(provider, "send", spy)
    openai_server.enqueue(Answer(["a", "b", "c", "d"], chunk_delay=0.05), Answer(["x", "y"], chunk_delay=0.05))
    gen = provider.stream(ask())
    assert next(gen).text == "a"
    gen.close()
    assert opened[0].is_closed
    gen = provider.stream(ask())
    next(gen)
    with pytest.raises(KeyboardInterrupt):
        gen.throw(KeyboardInterrupt)
    assert opened[1].is_closed


def test_stall_before_any_text_is_timeout(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["late"], keepalive=0, delay=3.0))
    with pytest.raises(RequestTimeout, match="did not answer in time"):
        run(make(openai_server, timeout=0.3))


def test_stall_after_text_is_interrupted(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["quick ", "slow"], chunk_delay=3.0))
    with pytest.raises(StreamInterrupted) as info:
        run(make(openai_server, timeout=0.3))
    assert info.value.partial_text == "quick "


def test_per_request_timeout(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["late"], delay=3.0))
    request = ChatRequest(messages=[{"role": "user", "content": "x"}], model="m", timeout=0.3)
    with pytest.raises(RequestTimeout):
        run(make(openai_server), request)


def test_server_rejecting_stream_options_gets_plain_stream(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(ErrorReply(422, {"object": "error", "message": "stream_options: extra fields not permitted"}))
    assert text_of(run(make(openai_server))) == "echo: hi"
    first, second = openai_server.chat_requests
    assert "stream_options" in first.json and "stream_options" not in second.json


def test_cut_after_finish_reason_is_complete(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["all ", "there"], cut_after=3))  # two pieces + finish, then the cut
    deltas = run(make(openai_server))
    assert text_of(deltas) == "all there" and deltas[-1].finish_reason == "stop"
    assert all(d.usage is None for d in deltas)


def test_named_error_event_is_mapped(openai_server: FakeOpenAIServer) -> None:
    raw = b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\nevent: error\ndata: {"message": "overloaded", "type": "server_error"}\n\n'
    openai_server.enqueue(ErrorReply(200, raw, content_type="text/event-stream"))
    with pytest.raises(ServerError, match='"overloaded"'):
        run(make(openai_server))


def test_streamed_calls_reuse_one_connection(openai_server: FakeOpenAIServer) -> None:
    """Reading past [DONE] lets httpx keep the connection: no new handshake per call."""
    provider = make(openai_server)
    for _ in range(3):
        text = "".join(d.text for d in provider.stream(ChatRequest([{"role": "user", "content": "hi"}], "m")))
        assert text == "echo: hi"
    assert len({r.client_port for r in openai_server.chat_requests}) == 1
