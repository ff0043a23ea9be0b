"""Malformed answers are errors, and fallback and check still work.

Whatever a server sends (JSON of the wrong shape, bytes that are no event stream, a body that is
not the gzip it claims, a redirect, a 5 MB error message, ``Retry-After: nan``), the CLI, the
magics and the Python API end with an answer or one paragraph naming the provider.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator

import pytest

import nbllm
from nbllm.cli import main
from nbllm.errors import BadRequestError, ProtocolError
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, FakeOpenAIServer
from tests.fakes.scripted_server import Script, ScriptedServer, chunk, sse, sse_script
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)

KEY = "sk-malformed-0123456789abcdef"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """qwen answered by a scripted server."""
    with ScriptedServer() as server:
        monkeypatch.setenv("NBLLM_QWEN_BASE_URL", server.base_url)
        monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
        yield server


def json_body(body: object, status: int = 200, **headers: str) -> Script:
    return Script(status=status, content_type="application/json", framing="length", headers=headers,
                  steps=[body if isinstance(body, bytes) else json.dumps(body).encode()])


STREAMS = {
    "delta is a string": sse_script({"choices": [{"delta": "abc"}]}, "[DONE]"),
    "choices is a number": sse_script({"choices": 5}, "[DONE]"),
    "choices is an object": sse_script({"choices": {"a": 1}}, "[DONE]"),
    "choices is a string": sse_script({"choices": "abc"}, "[DONE]"),
    "usage is a list": sse_script({"choices": [], "usage": [1, 2]}, "[DONE]"),
    "data is not JSON": sse_script("{'single': quotes}", "[DONE]"),
    "random bytes": Script(steps=[bytes(range(256)) * 4]),
    "an empty body": Script(steps=[]),
    "a JSON answer with a string message": json_body({"choices": [{"message": "hello"}]}),
    "a JSON answer with string choices": json_body({"choices": "abc"}),
    "gzip that is not gzip": Script(headers={"Content-Encoding": "gzip"}, steps=[b"data: not gzip\n\n"]),
}


@pytest.mark.parametrize("script", STREAMS.values(), ids=list(STREAMS))
def test_cli_reports_a_malformed_stream_as_one_protocol_paragraph(scripted: ScriptedServer,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  script: Script) -> None:
    scripted.enqueue(script)
    assert main(["chat", "-p", "qwen", "hi"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nbllm: Alibaba Qwen (DashScope) (qwen) sent ")
    assert any(words in err for words in ("nbllm cannot read", "could not be decoded", "not a JSON object"))
    assert KEY not in err


@pytest.mark.parametrize("script", [STREAMS["choices is a string"], STREAMS["delta is a string"]],
                         ids=["empty", "shape"])
def test_magics_and_api_report_malformed_streams(ipy: Shell, scripted: ScriptedServer, script: Script) -> None:
    scripted.enqueue(script, script)
    cell = ipy.run("%%llm qwen\nhi")
    assert type(cell.error).__name__ == "ProtocolError"
    assert cell.stdout.count("\n") == 1 and "nbllm cannot read" in cell.stdout
    with pytest.raises(ProtocolError, match="nbllm cannot read"):
        nbllm.chat("hi", provider="qwen")


@pytest.mark.parametrize("body", [{"choices": [{"message": "hello"}]}, {"choices": "abc"}, {"choices": 7},
                                  [1, 2, 3], {"choices": [{"message": {"content": None}}]}])
def test_non_streamed_answers_of_the_wrong_shape(ipy: Shell, scripted: ScriptedServer, body: object) -> None:
    scripted.enqueue(json_body(body), json_body(body))
    with pytest.raises(ProtocolError):
        nbllm.chat("hi", provider="qwen", stream=False)
    cell = ipy.run("%%llm qwen --no-stream\nhi")
    assert type(cell.error).__name__ == "ProtocolError" and cell.stdout.count("\n") == 1


def test_a_gzip_body_that_is_gzip_still_works(scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]) -> None:
    body = gzip.compress(sse(chunk("zipped", "stop"), "[DONE]"))
    scripted.enqueue(Script(headers={"Content-Encoding": "gzip"}, steps=[body]))
    assert main(["chat", "-p", "qwen", "hi"]) == 0
    assert capsys.readouterr().out == "zipped\n"


def test_a_redirect_is_refused_and_the_key_stays_home(scripted: ScriptedServer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedServer() as elsewhere:
        scripted.enqueue(Script(status=302, framing="length", headers={"Location": elsewhere.base_url + "/x"}))
        assert main(["chat", "-p", "qwen", "hi"]) == 1
        err = capsys.readouterr().err
        assert elsewhere.requests == []
    assert "answered HTTP 302, a redirect to http://127.0.0.1" in err and "does not follow redirects" in err
    assert err.count("\n") == 1


def test_retry_after_nan_is_retried_with_a_finite_wait(scripted: ScriptedServer) -> None:
    from nbllm.config import get_spec
    from nbllm.messages import ChatRequest
    from nbllm.providers.openai_compat import OpenAICompatProvider

    scripted.enqueue(json_body({"error": {"message": "slow down"}}, 429, **{"Retry-After": "nan"}),
                     sse_script(chunk("after the wait", "stop"), "[DONE]"))
    sleeps: list[float] = []
    provider = OpenAICompatProvider(get_spec("qwen"), KEY, sleep=sleeps.append)
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")
    assert provider.respond(request).reply().text == "after the wait"
    assert len(sleeps) == 1 and 0 < sleeps[0] < 10


@pytest.mark.parametrize("retry_after", ["nan", "inf", "-inf", "1e400", "soon"])
def test_retry_after_that_is_no_number_of_seconds_is_ignored(retry_after: str) -> None:
    from nbllm.providers.errormap import parse_retry_after

    assert parse_retry_after({"retry-after": retry_after}) is None


@pytest.mark.parametrize("size", [50_000, 5_000_000])
def test_a_huge_server_message_is_capped(scripted: ScriptedServer, capsys: pytest.CaptureFixture[str],
                                         size: int) -> None:
    huge = {"error": {"message": "x" * size, "code": "invalid_request"}}
    scripted.enqueue(json_body(huge, 400))
    assert main(["chat", "-p", "qwen", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 1500
    if size < 64 * 1024:  # read whole, parsed: the message is quoted with what was left out
        assert f"… [{size - 500} more characters]" in err


def test_invalid_model_advice_names_the_model(scripted: ScriptedServer) -> None:
    scripted.enqueue(json_body({"error": {"code": "invalid_model", "message": "model is not exist"}}, 400))
    with pytest.raises(BadRequestError) as info:
        nbllm.chat("hi", provider="qwen", model="qwen-maxx")
    assert "The model 'qwen-maxx' is not one Alibaba Qwen (DashScope) serves" in info.value.message
    assert "nbllm models qwen" in info.value.message


# -- fallback and check -------------------------------------------------------------------------
@pytest.mark.parametrize("first", [STREAMS["choices is a string"], STREAMS["random bytes"],
                                   json_body({"error": {"message": "bad key"}}, 401)], ids=["empty", "bytes", "401"])
def test_cli_falls_back_on_any_error_before_text(scripted: ScriptedServer, openai_server: FakeOpenAIServer,
                                                 use_fake: UseFake, capsys: pytest.CaptureFixture[str],
                                                 first: Script) -> None:
    use_fake("deepseek", openai_server)
    scripted.enqueue(first)
    assert main(["chat", "-p", "qwen||deepseek", "hi"]) == 0
    out, err = capsys.readouterr()
    assert out == "echo: hi\n"
    assert err.startswith("nbllm: qwen failed before any text (") and err.count("\n") == 1


def test_cli_fallback_names_every_failure(scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue(STREAMS["choices is a number"])
    assert main(["chat", "-p", "qwen || glm", "hi"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "ZHIPUAI_API_KEY" in err[-1] and "Tried before it, also failing: qwen (ProtocolError)." in err[-1]


def test_magics_fall_back_on_a_malformed_answer(ipy: Shell, scripted: ScriptedServer, ernie: FakeOpenAIServer) -> None:
    scripted.enqueue(STREAMS["delta is a string"])
    cell = ipy.run("%%llm qwen||ernie -o answer\nhi")
    assert cell.error is None and ipy.ns["answer"] == "echo: hi"


def test_check_keeps_one_row_per_provider(scripted: ScriptedServer, openai_server: FakeOpenAIServer,
                                          use_fake: UseFake, capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("deepseek", openai_server)
    scripted.enqueue(STREAMS["choices is an object"])
    assert main(["check", "qwen", "deepseek", "qwen"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3  # the header and one row each
    assert out[1].startswith("qwen") and "ProtocolError" in out[1]
    assert out[2].startswith("deepseek") and " ok " in out[2]


def test_check_in_the_magics_keeps_its_rows(ipy: Shell, scripted: ScriptedServer, ernie: FakeOpenAIServer) -> None:
    scripted.enqueue(STREAMS["random bytes"])
    cell = ipy.run("%llm check qwen ernie")
    assert cell.error is None
    shown = "\n".join(d["data"].get("text/plain", "") for d in cell.displays) + cell.stdout
    rows = [line for line in shown.splitlines() if line.startswith(("qwen", "ernie"))]
    assert len(rows) == 2 and "ProtocolError" in rows[0] and " ok " in rows[1]


def test_a_normal_answer_is_unchanged(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("qwen", openai_server)
    openai_server.enqueue(Answer(["fine ", "answer"]))
    assert nbllm.chat("hi", provider="qwen").text == "fine answer"
    assert os.environ["NBLLM_QWEN_BASE_URL"] == openai_server.base_url
