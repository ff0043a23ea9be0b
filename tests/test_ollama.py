"""Ollama's native API over real loopback sockets: NDJSON streaming, OLLAMA_HOST, models, faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nbllm
from nbllm.config import get_spec
from nbllm.errors import (
    BadRequestError,
    ConnectError,
    ServerError,
    StreamInterrupted,
    UnknownModelError,
)
from nbllm.messages import ChatRequest
from nbllm.providers.ollama import OllamaProvider, chat_body, ollama_base_url
from nbllm.session import Session
from tests.fakes.loopback import free_port
from tests.fakes.ollama_server import FakeOllamaServer, OllamaAnswer, OllamaError


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


def make_provider(server: FakeOllamaServer | None = None, url: str | None = None, **kw: object) -> OllamaProvider:
    spec = get_spec("ollama").with_changes(base_url=url or (server.url if server else ""))
    kw.setdefault("sleep", lambda s: None)
    return OllamaProvider(spec, None, **kw)  # type: ignore[arg-type]


def ask(text: str = "hi", model: str = "qwen2.5:7b", **params: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model=model, params=dict(params))


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":56789", "http://127.0.0.1:56789"),
        ("1.2.3.4:56789", "http://1.2.3.4:56789"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://1.2.3.4:56789", "https://1.2.3.4:56789"),
        ("example.com", "http://example.com:11434"),
        ("example.com:56789/", "http://example.com:56789"),
        ("https://example.com:56789/ollama/", "https://example.com:56789/ollama"),
        ("ollama.com", "https://ollama.com:443"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("::1", "http://[::1]:11434"),
        ("[::]", "http://[::1]:11434"),
        (' "127.0.0.1:5000" ', "http://127.0.0.1:5000"),
        ("example.com:99999", "http://example.com:11434"),
        ("http://example.com:port", "http://example.com:80"),
    ],
)
def test_ollama_host_forms(value: str, url: str) -> None:
    assert ollama_base_url(value) == url


@pytest.mark.parametrize("form", [":{port}", "0.0.0.0:{port}", "http://127.0.0.1:{port}/", "127.0.0.1:{port}"])
def test_ollama_host_from_the_environment_reaches_the_server(
    ollama: FakeOllamaServer, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", form.format(port=ollama.port))
    assert nbllm.chat("ping", provider="ollama:llama3.2").text == "echo: ping"
    assert ollama.chat_requests[0].json["model"] == "llama3.2"


def test_streams_ndjson_and_maps_options(ollama: FakeOllamaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_OLLAMA_BASE_URL", ollama.url)
    ollama.enqueue(OllamaAnswer(text=["Bonjour", " le", " monde"], done_reason="length"))
    deltas = list(Session("ollama").stream("hello", model="qwen2.5:7b", system="be brief", temperature=0.2,
                                           max_tokens=64, top_p=0.9, stop="END", keep_alive="10m"))
    assert [d.text for d in deltas] == ["Bonjour", " le", " monde", ""]
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 3
    body = ollama.chat_requests[0].json
    assert body == {
        "model": "qwen2.5:7b", "stream": True, "keep_alive": "10m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "options": {"temperature": 0.2, "num_predict": 64, "top_p": 0.9, "stop": ["END"]},
    }


@pytest.mark.parametrize("writes", ["packed", "split"])
def test_lines_packed_or_split_across_writes(ollama: FakeOllamaServer, writes: str) -> None:
    ollama.enqueue(OllamaAnswer(text="a longer answer cut into many small pieces", writes=writes))  # type: ignore[arg-type]
    reply = make_provider(ollama).complete(ask())
    assert reply.text == "a longer answer cut into many small pieces"
    assert reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens == 1 and reply.usage.total_tokens == 1 + reply.usage.completion_tokens


def test_thinking_is_kept_apart_as_reasoning(ollama: FakeOllamaServer) -> None:
    ollama.enqueue(OllamaAnswer(text="42", thinking=["Let me ", "think."]))
    reply = make_provider(ollama).complete(ask(model="deepseek-r1:7b"))
    assert reply.reasoning == "Let me think."
    assert reply.text == "42"


def test_models_lists_the_pulled_models(ollama: FakeOllamaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ollama.url)
    provider, model = Session("ollama").resolve()
    assert provider.models() == ["qwen2.5:7b", "llama3.2:latest", "deepseek-r1:7b"]
    assert model == "qwen2.5:7b"
    assert ollama.requests[-1].path == "/api/tags"


def test_missing_model_says_how_to_pull_it(ollama: FakeOllamaServer) -> None:
    with pytest.raises(UnknownModelError) as info:
        list(make_provider(ollama).stream(ask(model="qwen3:32b")))
    assert "`ollama pull qwen3:32b`" in info.value.message
    assert isinstance(info.value.__cause__, BadRequestError) and info.value.__cause__.status == 404


def test_ndjson_cut_mid_line_keeps_the_partial_text(ollama: FakeOllamaServer) -> None:
    ollama.enqueue(OllamaAnswer(text=["one ", "two ", "three ", "four"], cut_mid_line=2))
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for delta in make_provider(ollama).stream(ask()):
            received.append(delta.text)
    assert received == ["one ", "two "]
    assert info.value.partial_text == "one two "


def test_stream_without_done_is_interrupted(ollama: FakeOllamaServer) -> None:
    ollama.enqueue(OllamaAnswer(text=["x", "y"], done=False))
    with pytest.raises(StreamInterrupted) as info:
        make_provider(ollama).complete(ask())
    assert info.value.partial_text == "xy"
    assert "done: true" in info.value.message


def test_error_line_mid_stream(ollama: FakeOllamaServer) -> None:
    ollama.enqueue(OllamaAnswer(text=["a", "b", "c"], error_after=2, error_message="model runner has unexpectedly stopped"))
    with pytest.raises(StreamInterrupted) as info:
        make_provider(ollama).complete(ask())
    assert info.value.partial_text == "ab"
    assert "model runner has unexpectedly stopped" in info.value.message


def test_error_line_before_any_text_is_a_server_error(ollama: FakeOllamaServer) -> None:
    ollama.enqueue(OllamaAnswer(text=["a"], error_after=0, error_message="out of memory"))
    with pytest.raises(ServerError) as info:
        make_provider(ollama).complete(ask())
    assert '"out of memory"' in info.value.message


@pytest.mark.parametrize(("status", "cls"), [(400, BadRequestError), (500, ServerError), (502, ServerError)])
def test_error_statuses(ollama: FakeOllamaServer, status: int, cls: type[Exception]) -> None:
    ollama.enqueue(OllamaError(status, f"failure {status}"))
    with pytest.raises(cls) as info:
        make_provider(ollama, max_retries=0).complete(ask())
    assert f"failure {status}" in str(info.value)
    assert f"HTTP {status}" in str(info.value)


def test_server_errors_are_retried_before_any_text(ollama: FakeOllamaServer) -> None:
    waits: list[float] = []
    ollama.enqueue(OllamaError(503, "server busy"))
    assert make_provider(ollama, sleep=waits.append).complete(ask("again")).text == "echo: again"
    assert len(waits) == 1 and len(ollama.chat_requests) == 2


def test_a_wrong_base_path_is_not_mistaken_for_a_missing_model(ollama: FakeOllamaServer) -> None:
    with pytest.raises(BadRequestError) as info:
        make_provider(url=ollama.url + "/nope").complete(ask())
    assert not isinstance(info.value, UnknownModelError)
    assert "404 page not found" in info.value.message
    assert ollama.requests[0].path == "/nope/api/chat"


def test_stopped_server_says_how_to_start_it() -> None:
    provider = make_provider(url=f"127.0.0.1:{free_port()}", max_retries=0)
    with pytest.raises(ConnectError) as info:
        provider.complete(ask())
    assert "`ollama serve`" in info.value.message and "OLLAMA_HOST" in info.value.message
    with pytest.raises(ConnectError):
        provider.models()


def test_body_passes_unknown_options_and_format() -> None:
    request = ask(num_ctx=8192, seed=7, format="json", think=True, repetition_penalty=1.1, timeout=5)
    body = chat_body(request, {"options": {"num_gpu": 1}})
    assert body["format"] == "json" and body["think"] is True
    assert body["options"] == {"num_gpu": 1, "num_ctx": 8192, "seed": 7, "repeat_penalty": 1.1}
