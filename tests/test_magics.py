"""%%llm in a real IPython shell against the loopback OpenAI-compatible server."""

from __future__ import annotations

import time

import pytest
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.error import UsageError

from nbllm.errors import StreamInterrupted
from tests.fakes.openai_server import Answer, FakeOpenAIServer, qianfan_error
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)


def test_streaming_updates_one_display_in_place_within_the_rate_bound(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    pieces = [f"w{i} " for i in range(5000)]
    ernie.enqueue(Answer(pieces))
    start = time.perf_counter()
    cell = ipy.run("%%llm\nwrite a lot")
    elapsed = time.perf_counter() - start
    assert cell.error is None
    updates = cell.answer_updates()
    assert [u["update"] for u in updates] == [False] + [True] * (len(updates) - 1)
    assert updates[0]["data"]["text/markdown"] == "w0 "  # the first delta is shown at once
    assert cell.final_answer()["text/markdown"] == "".join(pieces)
    assert 2 <= len(updates) <= elapsed / 0.1 + 2
    assert cell.footer().startswith("ernie · ernie-4.0-turbo-8k · first token ")
    assert cell.footer().endswith(" · 5000 tokens")


def test_out_stores_exactly_the_answer_and_reasoning_is_shown_apart(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer(["The ", "answer."], reasoning=["Let me ", "think."]))
    cell = ipy.run("%%llm -o ans\nquestion")
    assert cell.error is None
    assert ipy.ns["ans"] == "The answer."
    assert cell.final_answer() == {"text/markdown": "The answer.", "text/plain": "The answer."}
    reasoning = [d for d in cell.displays if "[reasoning]" in d["data"].get("text/plain", "")]
    assert reasoning[-1]["data"]["text/plain"] == "[reasoning]\nLet me think."
    assert reasoning[-1]["data"]["text/html"].startswith("<details><summary>Reasoning</summary>")
    assert all("think" not in u["data"]["text/plain"] for u in cell.answer_updates())


def _messages(server: FakeOpenAIServer) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in server.chat_requests[-1].json["messages"]]


def test_history_is_sent_on_the_second_cell_and_cleared_by_new_and_reset(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("%%llm\nfirst")
    ipy.run("%%llm\nsecond")
    assert _messages(ernie) == [("user", "first"), ("assistant", "echo: first"), ("user", "second")]
    ipy.run("%%llm --new\nthird")
    assert _messages(ernie) == [("user", "third")]
    ipy.run("%%llm\nfourth")
    assert _messages(ernie) == [("user", "third"), ("assistant", "echo: third"), ("user", "fourth")]
    ipy.run("%llm reset")
    ipy.run("%%llm\nfifth")
    assert _messages(ernie) == [("user", "fifth")]


def test_no_history_is_one_off_and_failures_leave_history_alone(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("%%llm\nkept")
    ipy.run("%%llm --no-history\naside")
    assert _messages(ernie) == [("user", "aside")]
    ernie.enqueue(qianfan_error(400, "invalid_model", "model not found"))
    failed = ipy.run("%%llm --new\nfails")
    assert failed.error is not None
    ipy.run("%%llm\nnext")
    assert _messages(ernie) == [("user", "kept"), ("assistant", "echo: kept"), ("user", "next")]


def test_options_target_and_system_prompt_reach_the_request(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    cell = ipy.run('%%llm ernie:ernie-speed-128k -s "Be brief." -t 0.2 --max-tokens 50 --top-p 0.9 '
                   "--param seed=7 --param user=alice\nhello")
    assert cell.error is None
    body = ernie.chat_requests[-1].json
    assert body["model"] == "ernie-speed-128k"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.2, 50, 0.9)
    assert (body["seed"], body["user"]) == (7, "alice")
    ipy.run("%%llm -p ernie/ernie-lite-8k\nagain")
    assert ernie.chat_requests[-1].json["model"] == "ernie-lite-8k"


def test_no_stream_asks_for_the_whole_answer(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer("All at once."))
    cell = ipy.run("%%llm --no-stream -o whole\nq")
    assert cell.error is None
    assert ernie.chat_requests[-1].json.get("stream") in (None, False)
    assert ipy.ns["whole"] == "All at once."
    assert cell.final_answer()["text/markdown"] == "All at once."


def test_code_format_renders_a_block_and_insert_fills_the_next_cell(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer("Here you go:\n```python\nprint(1)\n```\nDone."))
    cell = ipy.run("%%llm -f code --insert\nprint one")
    assert cell.error is None
    assert cell.final_answer()["text/markdown"] == "```python\nprint(1)\n```"
    assert ipy.shell.rl_next_input == "print(1)"


def test_json_format_renders_json(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer('{"a": [1, 2]}'))
    cell = ipy.run("%%llm -f json\ngive json")
    assert cell.final_answer()["application/json"] == {"a": [1, 2]}


def test_terminal_ipython_prints_deltas_to_stdout(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.shell.display_formatter.active_types = ["text/plain"]
    ernie.enqueue(Answer(["Plain ", "text ", "answer."], reasoning=["hmm"]))
    cell = ipy.run("%%llm\nq")
    assert cell.error is None
    assert cell.displays == []
    assert "\x1b[2mhmm\x1b[0m\n\nPlain text answer.\n\nernie · ernie-4.0-turbo-8k" in cell.stdout


@pytest.mark.parametrize("line", [
    "%%llm --temperature hot\nq",
    "%%llm --bogus\nq",
    "%%llm\n   ",
    "%%llm -f yaml\nq",
    "%%llm ernie -p qwen\nq",
    "%%llm -p ernie,qwen||kimi\nq",
    "%%llm -p ernie, \nq",
    "%%llm -p ernie,qwen -m x\nq",
    "%%llm --insert\nq",
    "%%llm -f code --insert -p ernie,qwen\nq",
    "%%llm -o 1abc\nq",
])
def test_usage_mistakes_raise_exactly_usage_error(ipy: Shell, ernie: FakeOpenAIServer, line: str) -> None:
    cell = ipy.run(line)
    assert type(cell.error) is UsageError
    assert cell.stderr.startswith("UsageError: ") and cell.stderr.count("\n") == 1
    assert ernie.chat_requests == []


def test_a_dropped_stream_keeps_the_partial_text_and_fails_the_cell(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("%%llm\nbefore")
    ernie.enqueue(Answer(["one ", "two ", "three ", "four"], cut_after=2, finish_reason=None))
    cell = ipy.run("%%llm -o partial\nq")
    assert isinstance(cell.error, StreamInterrupted)
    assert cell.error.partial_text == "one two "
    assert cell.final_answer()["text/markdown"] == "one two "
    assert "stream dropped: partial answer" in cell.footer()
    assert cell.stdout.startswith("StreamInterrupted: ") and "Traceback" not in cell.stdout
    assert "partial" not in ipy.ns  # nothing stored, history unchanged
    ipy.run("%%llm\nafter")
    assert [m for m, _ in _messages(ernie)] == ["user", "assistant", "user"]


class _InterruptOnSecondUpdate(CapturingDisplayPublisher):
    """A display publisher that raises KeyboardInterrupt once, as a kernel interrupt would."""

    fired = False

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False) -> None:  # noqa: ANN001
        super().publish(data, metadata, transient=transient, update=update)
        if update and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def test_interrupt_closes_the_stream_and_keeps_the_partial_text(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    pieces = [f"p{i} " for i in range(200)]
    ernie.enqueue(Answer(pieces, chunk_delay=0.02))
    ipy.publisher_class = _InterruptOnSecondUpdate  # type: ignore[assignment]
    cell = ipy.run("%%llm -o never\nlong answer")
    assert isinstance(cell.error, KeyboardInterrupt)
    final = cell.final_answer()["text/markdown"]
    assert final.startswith("p0 p1 ") and final != "".join(pieces)
    assert "interrupted: partial answer" in cell.footer()
    assert "never" not in ipy.ns
    from nbllm.session import default_session

    provider, _ = default_session().resolve("ernie")
    # the half-read response was closed: httpx keeps no connection open to the server
    assert provider.client._transport._pool.connections == []


def test_a_key_echoed_by_the_server_never_reaches_the_output(ipy: Shell, use_fake) -> None:  # noqa: ANN001
    with FakeOpenAIServer(api_key="the-right-key-0000") as server:
        wrong = use_fake("ernie", server, key="sk-wrongwrongwrong1234567")
        ipy.secrets.append(wrong)
        cell = ipy.run("%%llm\nq")
    assert type(cell.error).__name__ == "AuthError"
    assert "Incorrect API key provided" in cell.stdout
