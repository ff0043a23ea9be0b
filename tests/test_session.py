"""The Python API (nbllm.chat, nbllm.stream) and Session, against the loopback server."""

from __future__ import annotations

import pytest

import nbllm
from nbllm.errors import StreamInterrupted, UnknownProviderError
from nbllm.messages import Usage
from nbllm.session import Session, default_session
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, FakeOpenAIServer


@pytest.fixture
def ernie(openai_server: FakeOpenAIServer, use_fake: UseFake) -> FakeOpenAIServer:
    use_fake("ernie", openai_server)
    return openai_server


def test_chat_returns_reply_with_figures(ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer(["Beijing", "."], reasoning=["capital?"]))
    reply = nbllm.chat("Capital of China?", provider="ernie", system="One word.")
    assert (reply.text, reply.reasoning, str(reply)) == ("Beijing.", "capital?", "Beijing.")
    assert (reply.provider, reply.model, reply.finish_reason) == ("ernie", "ernie-4.0-turbo-8k", "stop")
    assert reply.usage == Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)
    assert reply.first_token_s is not None and reply.total_s >= reply.first_token_s
    assert ernie.chat_requests[0].json["messages"] == [
        {"role": "system", "content": "One word."}, {"role": "user", "content": "Capital of China?"}]


def test_chat_with_model_in_target_and_params(ernie: FakeOpenAIServer) -> None:
    reply = nbllm.chat("hi", provider="ernie:ernie-speed-128k", temperature=0.2, max_tokens=10)
    body = ernie.chat_requests[0].json
    assert reply.model == "ernie-speed-128k" == body["model"]
    assert (body["temperature"], body["max_tokens"]) == (0.2, 10)


def test_chat_non_streamed(ernie: FakeOpenAIServer) -> None:
    reply = nbllm.chat("plain", provider="ernie", stream=False)
    assert reply.text == "echo: plain"
    assert ernie.chat_requests[0].json["stream"] is False


def test_stream_yields_text_pieces(ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer(["one", " two", " three"], reasoning=["hidden"]))
    assert list(nbllm.stream("count", provider="ernie")) == ["one", " two", " three"]


def test_messages_list_is_sent_as_given(ernie: FakeOpenAIServer) -> None:
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
               {"role": "user", "content": "c"}]
    assert nbllm.chat(history, provider="ernie").text == "echo: c"  # type: ignore[arg-type]
    assert ernie.chat_requests[0].json["messages"] == history


def test_interrupted_chat_keeps_partial(ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer(["Once ", "upon ", "a time"], cut_after=2))
    with pytest.raises(StreamInterrupted) as info:
        nbllm.chat("story", provider="ernie")
    assert info.value.partial_text == "Once upon "


def test_default_session_shared_and_reused(ernie: FakeOpenAIServer) -> None:
    nbllm.chat("1", provider="ernie")
    nbllm.chat("2", provider="ernie")
    session = default_session()
    assert session is default_session()
    assert len(session._providers) == 1  # one cached provider, one HTTP client
    ports = {r.headers["host"] for r in ernie.chat_requests}
    assert len(ports) == 1


def test_session_use_history_and_errors(ernie: FakeOpenAIServer) -> None:
    session = Session("ernie:ernie-lite-8k")
    assert session.target == "ernie:ernie-lite-8k"
    reply = session.chat("hello")
    session.remember("hello", reply.text)
    assert session.history == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "echo: hello"}]
    session.max_history = 1
    assert session.windowed_history() == [{"role": "assistant", "content": "echo: hello"}]
    session.provider = "qwen"
    assert session.model == ""  # switching provider resets the model
    with pytest.raises(UnknownProviderError):
        session.use("nope")
    session.close()


def test_a_timeout_travels_with_the_request_and_makes_no_second_provider(ernie: FakeOpenAIServer) -> None:
    session = Session("ernie")
    assert session.chat("a", timeout=5).text == "echo: a"
    assert session.chat("b", timeout=7).text == "echo: b"
    assert session.chat("c").text == "echo: c"
    assert len(session._providers) == 1


def test_history_is_recorded_by_the_response_callback_only_on_success(ernie: FakeOpenAIServer) -> None:
    session = Session("ernie")
    session.remember("old", "answer")
    ernie.enqueue(Answer(["par", "tial"], cut_after=1))
    failed = session.respond([{"role": "user", "content": "x"}], on_done=[session.recorder("x", fresh=True)])
    with pytest.raises(StreamInterrupted):
        failed.reply()
    assert len(session.history) == 2  # neither reset nor recorded
    session.respond([{"role": "user", "content": "y"}], on_done=[session.recorder("y", fresh=True)]).reply()
    assert session.history == [{"role": "user", "content": "y"}, {"role": "assistant", "content": "echo: y"}]
