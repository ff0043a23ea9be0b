"""The engine's Response as a unit: plain generators for providers, an injected clock."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from nbllm.errors import AuthError, StreamInterrupted
from nbllm.messages import ChatRequest, Delta, Usage
from nbllm.providers.base import Provider
from nbllm.providers.catalog import ProviderSpec
from nbllm.response import Response, add_observer, add_responder

SPEC = ProviderSpec(id="fake", label="Fake", dialect="fake", base_url="")
REQUEST = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m1", params={"temperature": 0.1})


class Clock:
    """Moves one second on each reading, so every timing is a count of readings."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Scripted(Provider):
    """A provider whose stream plays a script of deltas and exceptions, recording that it closed."""

    def __init__(self, script: list[Delta | BaseException]) -> None:
        super().__init__(SPEC)
        self.script = script
        self.opened = 0
        self.closed = 0

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        self.opened += 1
        try:
            for item in self.script:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed += 1


def words(*pieces: str, finish: bool = True) -> list[Delta | BaseException]:
    deltas: list[Delta | BaseException] = [Delta(text=p) for p in pieces]
    if finish:
        deltas.append(Delta(finish_reason="stop", usage=Usage(3, len(pieces), 3 + len(pieces))))
    return deltas


def test_iterating_yields_deltas_and_adds_them_up() -> None:
    provider = Scripted([Delta(reasoning="hmm "), *words("Hello", " world")])
    response = Response(provider, REQUEST, clock=Clock())
    assert provider.opened == 0  # nothing is sent before it is read
    seen = [d.text for d in response]
    assert seen == ["", "Hello", " world", ""]
    assert (response.text, response.reasoning, response.finish_reason) == ("Hello world", "hmm ", "stop")
    assert response.usage == Usage(3, 2, 5) and response.tokens == 2
    assert response.ok and response.provider == "fake" and response.model == "m1" and response.request is REQUEST
    assert provider.closed == 1


def test_first_token_and_total_are_timed_in_order() -> None:
    response = Response(Scripted([Delta(), *words("a", "b")]), REQUEST, clock=Clock())
    response.reply()
    # readings: open (1), first delta with text (2), finish (3); the empty delta is not a token
    assert response.first_token_s == 1.0 and response.total_s == 2.0
    assert 0 < response.first_token_s <= response.total_s


def test_reply_runs_to_the_end_and_returns_the_finished_response() -> None:
    response = Response(Scripted(words("x", "y")), REQUEST)
    assert response.reply() is response and str(response) == "xy" and response.done


def test_break_mid_stream_keeps_partial_text_and_closes() -> None:
    provider = Scripted(words("one ", "two ", "three"))
    response = Response(provider, REQUEST)
    for delta in response:
        if delta.text == "two ":
            break
    assert provider.closed == 1
    assert response.text == "one two " and response.done and response.stopped and not response.ok


def test_a_dropped_stream_carries_the_partial_text() -> None:
    provider = Scripted([*words("par", "tial", finish=False), StreamInterrupted("cut")])
    response = Response(provider, REQUEST)
    with pytest.raises(StreamInterrupted) as info:
        response.reply()
    assert info.value.partial_text == "partial" == response.text
    assert response.error is info.value and not response.ok and provider.closed == 1


def test_an_exception_in_the_reader_closes_the_stream() -> None:
    provider = Scripted(words("a", "b", "c"))
    response = Response(provider, REQUEST)
    with pytest.raises(ValueError, match="reader"):
        for _ in response:
            raise ValueError("reader broke")
    assert provider.closed == 1 and response.stopped and response.text == "a"


def test_keyboard_interrupt_while_waiting_closes_and_is_recorded() -> None:
    provider = Scripted([*words("a", finish=False), KeyboardInterrupt()])
    response = Response(provider, REQUEST)
    with pytest.raises(KeyboardInterrupt):
        response.reply()
    assert provider.closed == 1 and isinstance(response.error, KeyboardInterrupt) and response.text == "a"


def test_keyboard_interrupt_in_the_reader_closes() -> None:
    provider = Scripted(words("a", "b"))
    response = Response(provider, REQUEST)
    with pytest.raises(KeyboardInterrupt):
        for _ in response:
            raise KeyboardInterrupt
    assert provider.closed == 1 and response.done and not response.ok


def test_garbage_collection_closes_an_abandoned_reader() -> None:
    provider = Scripted(words("a", "b", "c"))
    response = Response(provider, REQUEST)
    reader = iter(response)
    next(reader)
    del reader
    gc.collect()
    assert provider.closed == 1 and response.done and response.stopped


def test_close_and_context_manager() -> None:
    provider = Scripted(words("a", "b"))
    with Response(provider, REQUEST) as response:
        reader = iter(response)
        next(reader)
    assert provider.closed == 1 and response.stopped
    response.close()  # idempotent
    assert provider.closed == 1


def test_callbacks_run_once_on_success_and_on_failure() -> None:
    calls: list[tuple[str, bool]] = []
    ok = Response(Scripted(words("a")), REQUEST, on_done=[lambda r: calls.append(("ctor", r.ok))])
    ok.on_done(lambda r: calls.append(("later", r.ok)))
    ok.reply()
    ok.reply()
    ok.close()
    failed = Response(Scripted([AuthError("no")]), REQUEST).on_done(lambda r: calls.append(("failed", r.ok)))
    with pytest.raises(AuthError):
        failed.reply()
    with pytest.raises(AuthError):  # a finished failure raises again rather than reading twice
        failed.reply()
    failed.on_done(lambda r: calls.append(("after the end", r.ok)))
    assert calls == [("ctor", True), ("later", True), ("failed", False), ("after the end", False)]


def test_observers_see_every_finished_response_with_its_fields() -> None:
    seen: list[dict[str, Any]] = []
    remove = add_observer(lambda r: seen.append({
        "provider": r.provider, "model": r.model, "params": r.request.params, "text": r.text,
        "usage": r.usage, "error": r.error, "source": r.source,
        "meta": {k: v for k, v in r.meta.items() if k not in ("fingerprint", "log_id")},  # the exchange log's
        "timed": r.first_token_s is not None and r.total_s > 0}))
    try:
        Response(Scripted(words("hi")), REQUEST, source="magic").reply()
        with pytest.raises(AuthError):
            Response(Scripted([AuthError("no")]), REQUEST, source="cli").reply()
    finally:
        remove()
    Response(Scripted(words("unseen")), REQUEST).reply()
    assert [s["source"] for s in seen] == ["magic", "cli"]
    assert seen[0] | {"usage": None} == {"provider": "fake", "model": "m1", "params": {"temperature": 0.1},
                                         "text": "hi", "usage": None, "error": None, "source": "magic",
                                         "meta": {}, "timed": True}
    assert isinstance(seen[1]["error"], AuthError)


def test_a_failing_observer_warns_and_keeps_the_answer() -> None:
    def broken(_: Response) -> None:
        raise OSError("disk full")

    remove = add_observer(broken)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            response = Response(Scripted(words("kept")), REQUEST).reply()
    finally:
        remove()
    assert response.text == "kept"
    assert any("disk full" in str(w.message) for w in caught)


def test_a_responder_answers_before_the_provider_is_called() -> None:
    provider = Scripted(words("live"))
    asked: list[str] = []

    def replay(response: Response) -> list[Delta] | None:
        asked.append(response.request.messages[-1]["content"])
        return [Delta(text="cached"), Delta(finish_reason="stop")] if response.model == "m1" else None

    remove = add_responder(replay)
    try:
        hit = Response(provider, REQUEST).reply()
        miss = Response(provider, ChatRequest(messages=REQUEST.messages, model="m2")).reply()
    finally:
        remove()
    assert (hit.text, hit.meta["replayed"], hit.cached) == ("cached", True, True)
    assert (miss.text, miss.cached, "replayed" in miss.meta) == ("live", False, False)
    assert provider.opened == 1 and asked == ["hi", "hi"]


def test_prefetch_reads_to_the_first_text_and_hands_it_out_again() -> None:
    # ("c", not "b": masking holds back a last word that could begin a key, e.g. "b" of "Bearer")
    provider = Scripted([Delta(), *words("a", "c")])
    response = Response(provider, REQUEST).prefetch()
    assert response.text == "a" and not response.done
    assert [d.text for d in response] == ["", "a", "c", ""]
    assert response.text == "ac" and response.ok


def test_prefetch_raises_a_failure_before_any_text() -> None:
    response = Response(Scripted([Delta(), AuthError("no")]), REQUEST)
    with pytest.raises(AuthError):
        response.prefetch()
    assert response.done and isinstance(response.error, AuthError)


def test_no_stream_uses_the_providers_whole_answer() -> None:
    class Whole(Scripted):
        def fetch(self, request: ChatRequest) -> Iterator[Delta]:
            yield Delta(text="whole", finish_reason="stop")

    response = Whole(words("streamed")).respond(REQUEST, stream=False).reply()
    assert response.text == "whole" and not response.streamed
    assert Whole(words("streamed")).complete(REQUEST).text == "whole"
