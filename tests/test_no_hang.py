"""Nothing hangs: --timeout bounds the wait for the first text and every silence after it (keep-alive
comments are no progress), and after the end marker a held connection costs only a short drain.

The scripted servers hold their connections for HOLD seconds, far longer than any timeout used
here; the module's pytest timeout fails a test that waits for them. No test measures speed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nbllm
from nbllm.cli import main
from nbllm.errors import RequestTimeout, StreamInterrupted
from tests.fakes.scripted_server import Script, ScriptedServer, chunk, sse
from tests.magics_shell import Shell

HOLD = 120.0
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        monkeypatch.setenv("NBLLM_QWEN_BASE_URL", server.base_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-nohang-0123456789abcdef")
        yield server


def keepalives_only() -> Script:
    return Script(hold=HOLD, keepalive=0.2)


def text_then_keepalives() -> Script:
    return Script(steps=[sse(chunk("half an ans"))], hold=HOLD, keepalive=0.2)


def empty_deltas_forever() -> Script:
    return Script(steps=[sse(chunk(role="assistant"), chunk("")), 0.2] * 100, hold=HOLD, keepalive=0.2)


def done_then(**hold: float) -> Script:
    return Script(steps=[sse(chunk("complete", "stop"), {"choices": [], "usage": {"total_tokens": 3}}, "[DONE]")],
                  hold=HOLD, **hold)


def test_cli_keepalives_only_end_at_the_timeout(scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue(keepalives_only())
    assert main(["chat", "-p", "qwen", "--timeout", "1", "hi"]) == 1
    err = capsys.readouterr().err
    assert err == ("nbllm: Alibaba Qwen (DashScope) (qwen) sent no text for 1 s (keep-alive comments do not "
                   "count). Try again later, or allow more time with --timeout or timeout=.\n")


def test_empty_deltas_are_no_progress_either(scripted: ScriptedServer) -> None:
    scripted.enqueue(empty_deltas_forever())
    with pytest.raises(RequestTimeout, match="sent no text for 1 s"):
        nbllm.chat("hi", provider="qwen", timeout=1)


def test_a_silence_after_text_keeps_the_partial_answer(scripted: ScriptedServer,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue(text_then_keepalives())
    assert main(["chat", "-p", "qwen", "--timeout", "1", "hi"]) == 1
    out, err = capsys.readouterr()
    assert out == "half an ans\n"
    assert "the stream went silent for 1 s, after 11 characters of text" in err and err.count("\n") == 1
    scripted.enqueue(text_then_keepalives())
    with pytest.raises(StreamInterrupted) as info:
        nbllm.chat("hi", provider="qwen", timeout=1)
    assert info.value.partial_text == "half an ans"


def test_magics_timeout_bounds_keepalive_streams(ipy: Shell, scripted: ScriptedServer) -> None:
    scripted.enqueue(keepalives_only())
    cell = ipy.run("%%llm qwen --timeout 1\nhi")
    assert type(cell.error).__name__ == "RequestTimeout" and "sent no text for 1 s" in cell.stdout


def test_check_times_out_with_a_row(scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue(keepalives_only())
    assert main(["check", "qwen", "--timeout", "1"]) == 1
    row = capsys.readouterr().out.splitlines()[1]
    assert row.startswith("qwen") and "RequestTimeout" in row


def test_models_with_a_trickling_body_fall_back_to_the_catalogue(scripted: ScriptedServer,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue(Script(content_type="application/json", steps=[b'{"data": ['], hold=HOLD, keepalive=0.2))
    assert main(["models", "qwen", "--timeout", "1"]) == 0
    out, err = capsys.readouterr()
    assert "qwen-plus" in out.split() and "the live model list failed" in err and "sent no text for 1 s" in err


@pytest.mark.parametrize("hold", [{}, {"keepalive": 0.1}], ids=["silent", "comments"])
def test_after_done_a_held_connection_does_not_delay_the_answer(scripted: ScriptedServer,
                                                                capsys: pytest.CaptureFixture[str],
                                                                hold: dict[str, float]) -> None:
    scripted.enqueue(done_then(**hold))
    assert main(["chat", "-p", "qwen", "hi"]) == 0  # the default timeout is 120 s: only the drain bounds it
    assert capsys.readouterr().out == "complete\n"
    scripted.enqueue(done_then(**hold))
    reply = nbllm.chat("hi", provider="qwen")
    assert reply.text == "complete" and reply.ok and reply.usage.total_tokens == 3


def test_check_reports_the_answer_not_the_held_connection(scripted: ScriptedServer,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue(done_then(keepalive=0.1))
    assert main(["check", "qwen", "--timeout", "30"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    total = float(row[row.index("ok") + 3])  # ID MODEL ok FIRST s TOTAL s ANSWER
    assert total < 30  # the server held the connection for HOLD s after [DONE]


def test_a_drained_connection_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.openai_server import Answer, FakeOpenAIServer

    with FakeOpenAIServer() as server:
        monkeypatch.setenv("NBLLM_QWEN_BASE_URL", server.base_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-nohang-0123456789abcdef")
        server.enqueue(Answer(["one"]), Answer(["two"]))
        from nbllm.session import Session

        session = Session("qwen")
        try:
            assert session.chat("a").text == "one" and session.chat("b").text == "two"
        finally:
            session.close()
        ports = {r.client_port for r in server.chat_requests}
    assert len(ports) == 1
