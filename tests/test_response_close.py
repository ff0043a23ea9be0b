"""Stopping an answer from another thread (a widget's button, a watchdog) while it is being read.

A loopback server streams slowly; one thread reads the answer while another calls ``close()``.
The reader must end as on a ``break`` (partial text kept, no error), ``close()`` must return
without raising, and the connection must go back to the client (a one-connection pool serves
the next request).
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from nbllm.config import get_spec
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.openai_compat import OpenAICompatProvider
from nbllm.response import Response
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer

KEY = "bce-v3/ALTAK-closeTESTkey1/0123456789abcdef"
SLOW = Answer(["one ", "two ", "three ", "four ", "five ", "six ", "seven ", "eight "], chunk_delay=0.5)
HANG_GUARD = 30.0  # seconds: only so that a broken stop fails instead of hanging the suite


def one_connection_provider(server: FakeOpenAIServer) -> OpenAICompatProvider:
    """A provider whose client may hold one connection: a leaked one blocks the next request."""
    spec = get_spec("ernie").with_changes(base_url=server.base_url)
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1))
    return OpenAICompatProvider(spec, KEY, timeout=HANG_GUARD, transport=transport, sleep=lambda s: None)


def ask(text: str = "hi") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model="ernie-4.0-turbo-8k")


class Reader(threading.Thread):
    """Reads a response to its end, noting each delta and anything raised."""

    def __init__(self, response: Response) -> None:
        super().__init__(daemon=True)
        self.response = response
        self.seen: list[Delta] = []
        self.first = threading.Event()
        self.raised: BaseException | None = None

    def run(self) -> None:
        try:
            for delta in self.response:
                self.seen.append(delta)
                if delta.text:
                    self.first.set()
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever the reader met
            self.raised = exc
        finally:
            self.first.set()


def start_reading(response: Response) -> Reader:
    reader = Reader(response)
    reader.start()
    assert reader.first.wait(HANG_GUARD), "no text arrived"
    return reader


def test_close_from_another_thread_stops_the_reader_like_a_break(openai_server: FakeOpenAIServer) -> None:
    provider = one_connection_provider(openai_server)
    openai_server.enqueue(SLOW)
    finished: list[Response] = []
    response = provider.respond(ask(), on_done=[finished.append])
    reader = start_reading(response)

    response.close()  # must not raise "generator already executing"

    reader.join(HANG_GUARD)
    assert not reader.is_alive(), "the reader did not stop"
    assert reader.raised is None
    assert response.done and response.stopped and response.error is None and not response.ok
    full = "".join(SLOW.text_pieces())
    assert response.text and full.startswith(response.text) and response.text != full
    assert response.text == "".join(d.text for d in reader.seen)
    assert finished == [response]  # finished exactly once
    response.close()  # idempotent

    # the connection went back to the client: with a pool of one, this request would wait forever
    assert provider.complete(ask("again")).text == "echo: again"
    provider.close()


def test_close_from_another_thread_while_a_non_streamed_answer_is_awaited(openai_server: FakeOpenAIServer) -> None:
    provider = one_connection_provider(openai_server)
    openai_server.enqueue(Answer("a slow whole answer", delay=1.0))
    response = provider.respond(ask(), stream=False)
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            outcome["reply"] = response.reply()
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever the reader met
            outcome["raised"] = exc

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    while not openai_server.chat_requests and thread.is_alive():  # the request is out: the reader waits
        threading.Event().wait(0.01)
    response.close()
    thread.join(HANG_GUARD)
    assert not thread.is_alive() and "raised" not in outcome and outcome["reply"] is response
    assert response.done and response.stopped and response.error is None
    assert response.text in ("", "a slow whole answer")  # the body may already be in the socket's buffer
    assert provider.complete(ask("again")).text == "echo: again"
    provider.close()


def test_close_before_reading_and_after_the_end_are_quiet(openai_server: FakeOpenAIServer) -> None:
    provider = one_connection_provider(openai_server)
    unread = provider.respond(ask())
    unread.close()
    assert not unread.done  # nothing was sent, nothing to finish
    done = provider.respond(ask("x")).reply()
    done.close()
    assert done.ok and done.text == "echo: x"
    provider.close()


def test_a_response_closed_while_its_request_fails_is_not_retried(openai_server: FakeOpenAIServer) -> None:
    provider = one_connection_provider(openai_server)
    openai_server.enqueue(ErrorReply(500, {"error": {"message": "busy", "type": "server_error"}}, delay=1.0),
                          Answer("retried"))
    response = provider.respond(ask())
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(reply=response.reply()), daemon=True)
    thread.start()
    while not openai_server.chat_requests and thread.is_alive():  # the first attempt is out
        threading.Event().wait(0.01)
    response.close()
    thread.join(HANG_GUARD)
    assert not thread.is_alive() and outcome["reply"] is response
    assert response.stopped and response.error is None and response.text == ""
    assert len(openai_server.chat_requests) == 1  # no second attempt after the stop
    provider.close()


def test_close_while_the_reader_handles_a_delta_never_raises_in_either_thread() -> None:
    """The reader is between deltas (drawing one) when another thread closes: the generator must not be
    closed under it, or its next step raises "generator already executing"."""
    from tests.test_response import REQUEST, Scripted, words

    provider = Scripted(words(*[f"w{i} " for i in range(50)]))
    handling, resumed = threading.Event(), threading.Event()

    def slow_callback(_response: Response) -> None:  # widens the window in which the two threads overlap
        resumed.wait(HANG_GUARD)
        threading.Event().wait(0.2)

    response = Response(provider, REQUEST, on_done=[slow_callback])
    raised: list[BaseException] = []

    def read() -> None:
        try:
            for _ in response:
                handling.set()
                proceed.wait(HANG_GUARD)
                resumed.set()  # the loop asks for the next delta right after this
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever the reader met
            raised.append(exc)

    def close() -> None:
        try:
            response.close()
        except BaseException as exc:  # noqa: BLE001
            raised.append(exc)

    proceed = threading.Event()
    reader, closer = threading.Thread(target=read, daemon=True), threading.Thread(target=close, daemon=True)
    reader.start()
    assert handling.wait(HANG_GUARD)
    closer.start()
    threading.Event().wait(0.1)  # the closer is in close() while the reader still handles its delta
    proceed.set()
    reader.join(HANG_GUARD)
    closer.join(HANG_GUARD)
    assert not reader.is_alive() and not closer.is_alive()
    assert raised == []
    assert response.done and response.stopped and provider.closed == 1
    assert response.text and len(response.text) < len("".join(f"w{i} " for i in range(50)))
