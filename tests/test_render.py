"""The stream renderer as a unit: an injected clock, a recording publisher, plain generators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from nbllm.magics.render import RichView, TerminalView, bundle, extract_code, footer, is_rich, show

from nbllm.errors import AuthError, StreamInterrupted
from nbllm.messages import Delta, Usage
from nbllm.response import Response


class Clock:
    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def response(deltas: Iterator[Delta], clock: Any = None) -> Response:
    """A response over test deltas (provider "p", model "m"), timed by the given clock."""
    return Response.from_deltas(deltas, provider="p", model="m", **({"clock": clock} if clock else {}))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, data: dict[str, Any], metadata: dict[str, Any], *, transient: Any = None,
                 update: bool = False) -> None:
        self.calls.append({"data": data, "transient": transient, "update": update})


def test_updates_are_bounded_by_time_whatever_the_delta_rate() -> None:
    clock, publish = Clock(0.0005), Recorder()
    view = RichView(publish, clock=clock)
    start = clock()
    answer = show(response(iter([Delta(text=f"t{i} ") for i in range(5000)]), clock), view)
    elapsed = clock.now - start
    assert view.updates <= elapsed / 0.1 + 2
    assert view.updates >= elapsed / 0.1 - 1  # and it does keep updating while the answer streams
    answer_calls = [c for c in publish.calls if c["transient"]]
    assert len(answer_calls) == view.updates
    assert answer_calls[0]["data"]["text/markdown"] == "t0 " and answer_calls[0]["update"] is False
    assert all(c["update"] for c in answer_calls[1:])
    assert answer_calls[-1]["data"]["text/markdown"] == answer.text == "".join(f"t{i} " for i in range(5000))


def test_reasoning_has_its_own_display_and_is_collapsed_at_the_end() -> None:
    clock, publish = Clock(0.001), Recorder()
    view = RichView(publish, clock=clock)
    deltas = [Delta(reasoning="think "), Delta(reasoning="more"), Delta(text="answer")]
    answer = show(response(iter(deltas), clock), view)
    ids = {c["transient"]["display_id"] for c in publish.calls if c["transient"]}
    assert len(ids) == 2
    reasoning = [c for c in publish.calls if c["transient"] and c["transient"]["display_id"] == view.reasoning.display_id]
    assert reasoning[0]["data"]["text/html"].startswith("<details open>")
    assert reasoning[-1]["data"]["text/html"].startswith("<details><summary>Reasoning</summary>")
    assert "think more" in reasoning[-1]["data"]["text/html"]
    assert answer.text == "answer" and answer.reasoning == "think more"


@pytest.mark.parametrize(("fmt", "text", "expected"), [
    ("markdown", "# hi", {"text/markdown": "# hi", "text/plain": "# hi"}),
    ("text", "# hi", {"text/plain": "# hi"}),
    ("code", "x\n```python\na = 1\n```\ny", {"text/markdown": "```python\na = 1\n```", "text/plain": "a = 1"}),
    ("json", '```json\n{"a": 1}\n```', {"application/json": {"a": 1}, "text/plain": '{\n  "a": 1\n}'}),
    ("json", "not json", {"text/plain": "not json"}),
    ("html", "<b>x</b>", {"text/html": "<b>x</b>", "text/plain": "<b>x</b>"}),
    ("math", "E = mc^2", {"text/latex": "$$E = mc^2$$", "text/plain": "E = mc^2"}),
    ("math", "$x$", {"text/latex": "$x$", "text/plain": "$x$"}),
])
def test_final_bundles(fmt: str, text: str, expected: dict[str, Any]) -> None:
    assert bundle(text, fmt, final=True) == expected


@pytest.mark.parametrize("fmt", ["text", "json", "html", "math"])
def test_partial_answers_are_plain_text_until_the_end(fmt: str) -> None:
    assert bundle('{"a": ', fmt, final=False) == {"text/plain": '{"a": '}


def test_extract_code() -> None:
    assert extract_code("```py\na\n```\ntext\n```\nb\n```") == "a\n\nb"
    assert extract_code("plain code\n") == "plain code"
    assert extract_code("```python\nunclosed") == "unclosed"


def test_footer() -> None:
    full = Response.from_deltas([Delta(text="hi", usage=Usage(1, 7, 8))], provider="ernie", model="m",
                                clock=iter([0.0, 0.25, 1.5]).__next__).reply()
    assert footer(full, "after x failed") == "ernie · m · first token 0.25 s · total 1.50 s · 7 tokens · after x failed"
    empty = response(iter([]), iter([0.0, 0.1]).__next__).reply()
    assert footer(empty) == "p · m · total 0.10 s"


def test_terminal_view_writes_deltas_as_they_come() -> None:
    written: list[str] = []
    view = TerminalView(written.append)
    show(response(iter([Delta(reasoning="hmm"), Delta(text="Hi"), Delta(text="!")]), Clock(0.5)), view)
    assert written[:4] == ["\x1b[2mhmm", "\x1b[0m\n\n", "Hi", "!"]
    assert written[4].startswith("\n\np · m · first token ")


def _stream(events: list[Delta | BaseException], closed: list[bool]) -> Iterator[Delta]:
    try:
        for event in events:
            if isinstance(event, BaseException):
                raise event
            yield event
    finally:
        closed.append(True)


def test_an_interrupt_closes_the_stream_and_keeps_the_partial_text() -> None:
    closed: list[bool] = []
    written: list[str] = []

    class InterruptingView(TerminalView):
        def feed(self, delta: Delta) -> None:
            super().feed(delta)
            if delta.text == "two ":
                raise KeyboardInterrupt

    answer = response(_stream([Delta(text="one "), Delta(text="two "), Delta(text="three")], closed), Clock(0.1))
    with pytest.raises(KeyboardInterrupt):
        show(answer, InterruptingView(written.append))
    assert closed == [True]
    assert answer.text == "one two " and answer.done and not answer.ok
    assert written[-1].endswith("interrupted: partial answer\n")


def test_a_dropped_stream_keeps_its_partial_text() -> None:
    closed: list[bool] = []
    written: list[str] = []
    answer = response(_stream([Delta(text="par"), Delta(text="tial"), StreamInterrupted("cut")], closed), Clock(0.1))
    with pytest.raises(StreamInterrupted) as info:
        show(answer, TerminalView(written.append))
    assert info.value.partial_text == "partial" == answer.text and answer.error is info.value
    assert closed == [True] and written[-1].endswith("stream dropped: partial answer\n")


def test_an_error_before_any_text_shows_nothing() -> None:
    written: list[str] = []
    with pytest.raises(AuthError):
        show(response(_stream([Delta(), AuthError("no")], []), Clock(0.1)), TerminalView(written.append))
    assert written == []


def test_is_rich_follows_the_frontend() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    saved = list(shell.display_formatter.active_types)
    try:
        assert is_rich(shell)
        shell.display_formatter.active_types = ["text/plain"]
        assert not is_rich(shell)
    finally:
        shell.display_formatter.active_types = saved


class _Published:
    """A publisher that adds up the characters sent to the answer display, and keeps the last bundle."""

    def __init__(self) -> None:
        self.chars = 0
        self.updates = 0
        self.first: dict[str, Any] = {}
        self.last: dict[str, Any] = {}

    def __call__(self, data: dict[str, Any], metadata: dict[str, Any], *, transient: Any = None,
                 update: bool = False) -> None:
        if transient:
            self.first = self.first or data
            self.last = data
            self.chars += len(data["text/markdown"])
            self.updates += 1


def _at_model_pace(n: int, per_s: float) -> tuple[_Published, Response, float]:
    """n 4-character deltas arriving at per_s a second on an injected clock the stream moves on."""
    now = [0.0]

    def deltas() -> Iterator[Delta]:
        for i in range(n):
            now[0] = (i + 1) / per_s
            yield Delta(text=f"{i % 1000:03d} ")

    publish = _Published()
    view = RichView(publish, clock=lambda: now[0])
    answer = show(response(deltas(), lambda: now[0]), view)
    return publish, answer, n / per_s


def test_characters_sent_grow_linearly_with_a_long_answer_at_a_models_pace() -> None:
    small, _, _ = _at_model_pace(10_000, 100.0)
    big, answer, duration = _at_model_pace(100_000, 100.0)
    n_chars = len(answer.text)
    assert n_chars == 400_000
    # re-sending the whole text ~10 times a second sent ~2e9 characters here (100x the 10k answer)
    assert big.chars < 600 * n_chars
    assert big.chars / small.chars < 20
    assert big.updates <= duration / 0.1 + 2  # still at most ~10 updates a second, far fewer when long
    assert big.updates >= duration / 2.0 - 1  # and still updating at least every len/200,000 s = 2 s
    assert big.first["text/markdown"] == "000 "  # the first text is shown at once
    assert big.last == {"text/markdown": answer.text, "text/plain": answer.text}  # final render unchanged
