"""Every runtime failure of a %%llm cell: one paragraph, a failed cell, no key in any output."""

from __future__ import annotations

import pytest

from tests.fakes.loopback import free_port
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer, qianfan_error
from tests.magics_shell import Cell, Shell

pytestmark = pytest.mark.timeout(120)

FAST_429 = {"retry-after-ms": "0"}


@pytest.fixture
def ernie(ipy: Shell, openai_server: FakeOpenAIServer, use_fake) -> FakeOpenAIServer:  # noqa: ANN001
    ipy.secrets.append(use_fake("ernie", openai_server, key="sk-abcdefghijklmnopqrstuvwx"))
    return openai_server


def assert_one_paragraph(cell: Cell, name: str) -> str:
    assert type(cell.error).__name__ == name
    assert cell.stdout.startswith(f"{name}: ")
    assert cell.stdout.count("\n") == 1 and "Traceback" not in cell.stdout
    return cell.stdout


@pytest.mark.parametrize(("replies", "name", "words"), [
    ([qianfan_error(401, "invalid_api_key", "Incorrect API key provided: sk-abcdefghijklmnopqrstuvwx")],
     "AuthError", "QIANFAN_API_KEY"),
    ([qianfan_error(429, "insufficient_quota", "You exceeded your current quota")], "QuotaError", "quota"),
    ([qianfan_error(429, "rpm_rate_limit_exceeded", "Rate limit reached", headers=FAST_429)] * 3,
     "RateLimitError", "try again"),
    ([qianfan_error(400, "data_inspection_failed", "Input data may contain inappropriate content")],
     "ContentFilterError", "rephrase"),
    ([qianfan_error(400, "invalid_model", "model not found")], "BadRequestError", "model"),
    ([ErrorReply(500, {"error": {"code": "internal_error", "message": "boom"}})] * 3, "ServerError", "boom"),
    ([Answer(["partial "], error_event={"code": "content_filter", "message": "blocked mid-way"})],
     "ContentFilterError", "blocked mid-way"),
])
def test_provider_errors_give_one_paragraph_and_a_failed_cell(
    ipy: Shell, ernie: FakeOpenAIServer, replies: list, name: str, words: str  # noqa: ANN001
) -> None:
    ernie.enqueue(*replies)
    cell = ipy.run("%%llm -o ans\nq")
    paragraph = assert_one_paragraph(cell, name)
    assert words in paragraph
    assert "ans" not in ipy.ns


def test_timeout(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer("late", delay=3.0))
    cell = ipy.run("%%llm --timeout 0.3\nq")
    assert "raise the timeout" in assert_one_paragraph(cell, "RequestTimeout")


def test_connect_error(ipy: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_ERNIE_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("QIANFAN_API_KEY", "sk-connectconnectconnect12")
    ipy.secrets.append("sk-connectconnectconnect12")
    cell = ipy.run("%%llm\nq")
    assert "Could not connect to" in assert_one_paragraph(cell, "ConnectError")


def test_missing_key_names_the_variable_and_the_key_command(ipy: Shell) -> None:
    cell = ipy.run("%%llm qwen\nq")
    paragraph = assert_one_paragraph(cell, "MissingKeyError")
    assert "DASHSCOPE_API_KEY" in paragraph and "%llm key qwen" in paragraph


def test_unknown_provider_suggests_the_closest(ipy: Shell) -> None:
    cell = ipy.run("%%llm erine\nq")
    assert "Did you mean 'ernie'" in assert_one_paragraph(cell, "UnknownProviderError")


def test_missing_variable_is_a_context_error_and_nothing_is_sent(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.ns.pop("no_such_thing", None)
    cell = ipy.run("%%llm\nsummarise {no_such_thing}")
    paragraph = assert_one_paragraph(cell, "ContextError")
    assert "no variable named 'no_such_thing'" in paragraph and "{{no_such_thing}}" in paragraph
    assert ernie.chat_requests == []


def test_a_key_held_in_a_variable_is_redacted_before_it_is_sent(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.ns["my_key"] = "sk-abcdefghijklmnopqrstuvwx"
    cell = ipy.run("%%llm\nwhat is {my_key}?")
    assert cell.error is None
    sent = ernie.chat_requests[-1].json["messages"][-1]["content"]
    assert "sk-abcdefghijklmnopqrstuvwx" not in sent and sent.startswith("what is sk-")
