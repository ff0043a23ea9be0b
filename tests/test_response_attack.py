"""The engine's Response against a hostile caller: responders and callbacks that raise, two
readers at once, Ctrl-C in the reader's loop over a real socket, responses in threads."""

from __future__ import annotations

import gc
import json
import threading
import warnings
from collections.abc import Iterator

import pytest

from nbllm.config import get_spec
from nbllm.errors import AuthError
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.base import Provider, make_provider
from nbllm.response import Response, add_observer, add_responder
from tests.conftest import UseFake
from tests.fakes.loopback import LoopbackHandler, LoopbackServer
from tests.fakes.openai_server import Answer, FakeOpenAIServer
from tests.test_response import REQUEST, SPEC, Scripted, words


@pytest.fixture
def seen() -> Iterator[list[Response]]:
    finished: list[Response] = []
    remove = add_observer(finished.append)
    yield finished
    remove()


def test_a_responder_that_raises_is_the_responses_error(seen: list[Response]) -> None:
    provider = Scripted(words("never"))

    def broken(response: Response) -> None:
        raise AuthError("the cache is locked")

    remove = add_responder(broken)
    try:
        response = provider.respond(REQUEST)
        with pytest.raises(AuthError):
            response.reply()
        with pytest.raises(AuthError):  # asked again: the same failure, never an empty "answer"
            response.reply()
    finally:
        remove()
    assert seen == [response] and isinstance(response.error, AuthError) and not response.stopped
    assert provider.opened == 0


def test_a_provider_that_fails_before_its_stream_starts(seen: list[Response]) -> None:
    class Eager(Provider):
        def stream(self, request: ChatRequest) -> Iterator[Delta]:
            raise AuthError("no key")  # raised at the call, not at the first next()

    response = Eager(SPEC).respond(REQUEST)
    with pytest.raises(AuthError):
        list(response)
    with pytest.raises(AuthError):
        response.reply()
    assert seen == [response] and not response.ok and isinstance(response.error, AuthError)


def test_a_second_reader_keeps_reading_when_the_first_is_abandoned(seen: list[Response]) -> None:
    provider = Scripted(words("a", "b", "c"))
    response = provider.respond(REQUEST)
    iter(response)  # a reader never started ends nothing and holds nothing open
    first = iter(response)
    got = [next(first).text]
    second = iter(response)
    got.append(next(second).text)
    del first
    gc.collect()  # the abandoned reader must not end the answer the other one is reading
    got += [d.text for d in second]
    assert "".join(got) == "abc"
    assert response.ok and response.text == "abc" and seen == [response] and provider.closed == 1


def test_reply_after_partial_iteration_reads_the_rest() -> None:
    response = Scripted(words("a", "b", "c")).respond(REQUEST)
    reader = iter(response)
    next(reader)
    assert response.reply().text == "abc" and response.ok
    assert list(reader) == [] and list(response) == []  # iterating a finished response: nothing more


def test_a_callback_that_raises_still_lets_observers_see_the_response(seen: list[Response]) -> None:
    def broken(response: Response) -> None:
        raise ValueError("front end bug")

    response = Scripted(words("a")).respond(REQUEST, on_done=[broken])
    with pytest.raises(ValueError, match="front end bug"):
        response.reply()
    assert seen == [response] and response.text == "a"


def test_observers_added_and_removed_during_a_call_are_called_at_most_once() -> None:
    calls: list[str] = []
    removers: list = []

    def first(response: Response) -> None:
        calls.append("first")
        removers.append(add_observer(lambda r: calls.append("late")))  # added while observers run
        remove_first()

    remove_first = add_observer(first)
    try:
        Scripted(words("a")).respond(REQUEST).reply()
        Scripted(words("b")).respond(REQUEST).reply()
    finally:
        for remove in removers:
            remove()
        remove_first()
    assert calls == ["first", "late"]


def test_responses_in_threads_each_finish_once(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                seen: list[Response]) -> None:
    key = use_fake("ernie", openai_server)
    provider = make_provider(get_spec("ernie"), key, max_retries=0)
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            request = ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], model="ernie-speed-128k")
            provider.respond(request, source="compare").reply()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.close()
    assert errors == []
    mine = [r for r in seen if r.source == "compare"]
    assert sorted(r.text for r in mine) == sorted(f"echo: q{i}" for i in range(8))
    assert len({id(r) for r in mine}) == 8 and all(r.ok for r in mine)


def test_ctrl_c_in_the_readers_loop_closes_the_connection_and_keeps_the_partial(
        openai_server: FakeOpenAIServer, use_fake: UseFake, seen: list[Response]) -> None:
    key = use_fake("ernie", openai_server)
    provider = make_provider(get_spec("ernie"), key, max_retries=0)
    openai_server.enqueue(Answer(text="one two three four five six", chunk_delay=0.01))
    response = provider.respond(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="ernie-speed-128k"))
    with pytest.raises(KeyboardInterrupt):
        for delta in response:
            if delta.text:
                raise KeyboardInterrupt
    assert seen == [response] and response.done and not response.ok and response.text == "one "
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ResourceWarning for an unclosed response
        again = provider.respond(ChatRequest(messages=[{"role": "user", "content": "x"}], model="ernie-speed-128k"))
        assert again.reply().text == "echo: x"
    first, second = openai_server.requests[-2:]
    assert first.client_port != second.client_port  # the cut connection was not handed back to the pool
    provider.close()


# -- the HTTP boundary: what a hostile or broken server sends back ---------------------------------
@pytest.mark.parametrize("headers", [{"Retry-After": "nan"}, {"Retry-After": "inf"}, {"retry-after-ms": "NaN"}])
def test_a_retry_after_that_is_not_a_number_of_seconds_still_retries(openai_server: FakeOpenAIServer,
                                                                     use_fake: UseFake,
                                                                     headers: dict[str, str]) -> None:
    from tests.fakes.openai_server import qianfan_error

    key = use_fake("ernie", openai_server)
    waits: list[float] = []
    provider = make_provider(get_spec("ernie"), key, max_retries=1, sleep=waits.append)
    openai_server.enqueue(qianfan_error(429, "rpm_rate_limit_exceeded", "slow down", headers=headers))
    answer = provider.respond(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")).reply()
    provider.close()
    assert answer.text == "echo: hi" and len(waits) == 1 and 0 <= waits[0] <= 60


@pytest.mark.parametrize("body", [
    {"error": {"message": "bad", "code": "x", "type": ["not", "a", "string"]}},
    {"error": "invalid", "error_description": {"detail": "nested"}},
    {"error": {"message": "line one\n\x1b[2J\x1b[31mline two\x07", "code": 400}},
    {"error": {"message": "x" * 100_000}},
])
def test_odd_error_bodies_are_one_short_paragraph(body: object) -> None:
    from nbllm.errors import ProviderError
    from nbllm.providers.errormap import make_error

    error = make_error(get_spec("qwen"), 400, body, {})
    assert isinstance(error, ProviderError)
    assert "\n" not in error.message and "\x1b" not in error.message and "\x07" not in error.message
    assert len(error.message) < 1000


class _Lingering(LoopbackHandler):
    """Sends a whole answer and [DONE], then keeps the connection open (no chunking) for up to 10 s."""

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.record()
        self.start_stream(200, "text/event-stream", chunked=False)
        chunk = {"id": "1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}]}
        self.write_chunk(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        for _ in range(100):
            if self.owner.stopping.is_set():
                return
            try:
                self.write_chunk(b": still here\n\n")
            except OSError:  # the client hung up: what a finished answer should do
                self.owner.hung_up = True
                return
            self.pause(0.1)


class LingeringServer(LoopbackServer):
    handler_class = _Lingering
    hung_up = False


def test_a_finished_answer_does_not_wait_for_a_server_that_lingers(use_fake: UseFake) -> None:
    with LingeringServer() as server:
        key = use_fake("ernie", server)
        provider = make_provider(get_spec("ernie"), key, max_retries=0)
        answer = provider.respond(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")).reply()
        provider.close()
        assert answer.ok and answer.text == "hello"
        for _ in range(50):  # the server notices the hang-up at its next write
            if server.hung_up:
                break
            server.stopping.wait(0.1)
        assert server.hung_up


def test_an_abandoned_reader_on_a_real_socket_is_closed_once(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                              seen: list[Response]) -> None:
    key = use_fake("ernie", openai_server)
    provider = make_provider(get_spec("ernie"), key, max_retries=0)
    openai_server.enqueue(Answer(text="one two three four five six"))
    response = provider.respond(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m"))
    reader = iter(response)
    while not next(reader).text:
        pass
    del reader
    gc.collect()
    assert seen == [response] and response.stopped and response.text == "one "
    response.close()  # closing again: nothing more happens
    assert seen == [response] and response.reply() is response and response.text == "one "
    again = provider.respond(ChatRequest(messages=[{"role": "user", "content": "x"}], model="m")).reply()
    assert again.text == "echo: x" and openai_server.requests[-1].client_port != openai_server.requests[-2].client_port
    provider.close()


def test_a_password_in_a_base_url_reaches_no_message_or_table(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from nbllm.cli import main

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("NBLLM_ERNIE_BASE_URL", f"http://gw:gwpass-5e6f7a@127.0.0.1:{port}/v1")
    monkeypatch.setenv("QIANFAN_API_KEY", "bce-v3-some-key-1234")
    assert main(["providers"]) == 0
    assert main(["chat", "-p", "ernie", "--timeout", "5", "hi"]) == 1
    captured = capsys.readouterr()
    assert "Could not connect" in captured.err and f"@127.0.0.1:{port}" in captured.err
    assert "gwpass-5e6f7a" not in captured.out + captured.err


class _KeepsPinging(LoopbackHandler):
    """A chunked answer and [DONE], then keep-alive comments for up to 10 s before the last chunk."""

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.record()
        self.start_stream(200, "text/event-stream", chunked=True)
        chunk = {"id": "1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}]}
        self.write_chunk(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        for _ in range(100):
            if self.owner.stopping.is_set():
                return
            try:
                self.write_chunk(b": " + b"ping " * 30 + b"\n\n")
            except OSError:
                self.owner.hung_up = True
                return
            self.pause(0.1)
        self.end_chunks()


class PingingServer(LoopbackServer):
    handler_class = _KeepsPinging
    hung_up = False


def test_a_finished_answer_does_not_wait_for_keep_alives_after_done(use_fake: UseFake) -> None:
    with PingingServer() as server:
        key = use_fake("ernie", server)
        provider = make_provider(get_spec("ernie"), key, max_retries=0)
        answer = provider.respond(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")).reply()
        provider.close()
        assert answer.ok and answer.text == "hello"
        for _ in range(50):
            if server.hung_up:
                break
            server.stopping.wait(0.1)
        assert server.hung_up
