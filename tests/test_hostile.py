"""Hostile input, generated: config values of every wrong type, random keys and (with the fake server)
random answers go through the CLI and the magics. Each run ends with an answer or one paragraph, never
a traceback, never a raw key, and the prompt reaches the server exactly as typed.

Example counts stay small: each example starts real loopback servers and runs the real CLI or shell.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbllm.cli import main
from nbllm.errors import NbllmError
from nbllm.providers.catalog import ProviderSpec
from nbllm.secrets import SHORT, TINY
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer
from tests.fakes.scripted_server import Script, ScriptedServer
from tests.magics_shell import Shell

PROMPT = "sort by sorted(xs, key=len); d = dict(token=3, secret=s)"
SLOW = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "25")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- TOML ---------------------------------------------------------------------------------------
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalars = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), _text,
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.from_regex(r"[a-z_]{1,6}", fullmatch=True), inner, max_size=3),
), max_leaves=6)


def toml_value(value: Any) -> str:
    """A TOML literal for a generated value (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


SPEC_FIELDS = sorted(f.name for f in fields(ProviderSpec) if f.name != "id")


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def assert_paragraph_or_answer(code: int, out: str, err: str, *, answer: str | None = None) -> None:
    assert "Traceback" not in out + err
    if code == 0:
        if answer is not None:
            assert out == answer + "\n"
        return
    assert code in (1, 2), (code, out, err)
    if code == 1:
        assert err.startswith("nbllm: ") and err.count("\n") == 1, err


def assert_no_key(key: str, *texts: str) -> None:
    key = key.strip()
    if len(key) < TINY:
        return  # a one- or two-character "key" is a placeholder: it cannot be kept out of text
    for text in texts:
        if len(key) >= SHORT:
            assert key not in text
        else:
            assert not re.search(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])", text), (key, text)


# -- config values of every wrong type ---------------------------------------------------------
@SLOW
@given(field=st.sampled_from(SPEC_FIELDS), value=_values)
def test_any_config_value_gives_an_answer_or_one_paragraph(capsys: pytest.CaptureFixture[str], field: str,
                                                            value: Any) -> None:
    with FakeOpenAIServer() as server:
        lines = ["[providers.qwen]", f"{field} = {toml_value(value)}"]
        if field != "base_url":
            lines.append(f"base_url = {json.dumps(server.base_url)}")
        Path(os.environ["NBLLM_CONFIG"]).write_text("\n".join(lines) + "\n", encoding="utf-8")
        with env(DASHSCOPE_API_KEY="sk-hostile-0123456789abcdef"):
            capsys.readouterr()
            code = main(["providers"])
            out, err = capsys.readouterr()
            assert_paragraph_or_answer(code, out, err)
            if code == 1:
                assert "[providers.qwen]" in err and field in err
            code = main(["chat", "-p", "qwen", "--timeout", "5", PROMPT])
            out, err = capsys.readouterr()
        assert_paragraph_or_answer(code, out, err)
        assert_no_key("sk-hostile-0123456789abcdef", out, err)
        for request in server.chat_requests:
            if isinstance(request.json, dict):
                assert request.json["messages"][-1]["content"] == PROMPT


# -- random keys --------------------------------------------------------------------------------
_keys = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
            max_size=30),
    st.from_regex(r"sk-[A-Za-z0-9]{20,30}", fullmatch=True),
    st.text(alphabet=st.sampled_from("ab12-_ \u200b\ufeff\n\té"), min_size=1, max_size=8),
)


@SLOW
@given(key=_keys, echo=st.booleans())
def test_any_key_through_the_cli(capsys: pytest.CaptureFixture[str], key: str, echo: bool) -> None:
    with FakeOpenAIServer() as server:
        if echo:
            server.enqueue(ErrorReply(401, {"error": {"message": f"Incorrect API key provided: {key}"}}))
        else:
            server.enqueue(Answer([f"you said {key[:len(key) // 2]}", f"{key[len(key) // 2:]} ok"]))
        with env(NBLLM_QWEN_BASE_URL=server.base_url, DASHSCOPE_API_KEY=key):
            capsys.readouterr()
            code = main(["chat", "-p", "qwen", PROMPT])
            out, err = capsys.readouterr()
            assert_paragraph_or_answer(code, out, err)
            assert_no_key(key, out, err)
            if server.chat_requests:
                assert server.chat_requests[0].json["messages"][-1]["content"] == PROMPT


@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "25")) // 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_keys)
def test_any_key_through_the_magics(ipy: Shell, key: str) -> None:
    with FakeOpenAIServer() as server:
        server.enqueue(ErrorReply(401, {"error": {"message": f"Incorrect API key provided: {key}"}}))
        with env(NBLLM_QWEN_BASE_URL=server.base_url, DASHSCOPE_API_KEY=key):
            cell = ipy.run(f"%%llm qwen\n{PROMPT}")
    shown = cell.stdout + cell.stderr
    assert cell.error is not None and "Traceback" not in shown and shown.count("\n") == 1
    assert_no_key(key, cell.everything())
    if server.chat_requests:
        assert server.chat_requests[0].json["messages"][-1]["content"] == PROMPT


# -- random server payloads ---------------------------------------------------------------------
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["choices", "delta", "message", "content", "error",
                                                             "usage", "finish_reason", "code", "x"]),
                                            inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def _payloads(draw: st.DrawFn) -> Script:
    """A reply of any shape: SSE events (complete, truncated or cut), a JSON body, or raw bytes."""
    kind = draw(st.sampled_from(["events", "truncated", "json", "bytes"]))
    status = draw(st.sampled_from([200, 200, 200, 400, 401, 302, 503]))
    headers = {"Retry-After": draw(st.sampled_from(["0", "nan", "-1", "soon"]))} if status == 503 else {}
    if status == 302:
        headers["Location"] = draw(st.sampled_from(["", "http://127.0.0.1:1/x", "/relative"]))
    if kind == "json":
        return Script(status=status, content_type="application/json", framing="length", headers=headers,
                      steps=[json.dumps(draw(_json)).encode()])
    if kind == "bytes":
        return Script(status=status, headers=headers, steps=[draw(st.binary(max_size=300))],
                      end=draw(st.sampled_from(["end", "cut"])))
    events = draw(st.lists(_json, min_size=1, max_size=4))
    body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
    if kind == "events":
        body += b"data: [DONE]\n\n" if draw(st.booleans()) else b""
        return Script(status=status, headers=headers, steps=[body])
    return Script(status=status, headers=headers, steps=[body[: draw(st.integers(0, len(body)))]], end="cut")


@SLOW
@given(script=_payloads())
def test_any_server_payload_through_the_cli(capsys: pytest.CaptureFixture[str], script: Script) -> None:
    key = "sk-payload-0123456789abcdef"
    with ScriptedServer() as server:
        server.enqueue(script, script, script)  # retried statuses get the same reply
        with env(NBLLM_QWEN_BASE_URL=server.base_url, DASHSCOPE_API_KEY=key):
            capsys.readouterr()
            code = main(["chat", "-p", "qwen", "--timeout", "5", PROMPT])
            out, err = capsys.readouterr()
    assert_paragraph_or_answer(code, out, err)
    assert code in (0, 1)
    assert_no_key(key, out, err)
    assert server.requests and server.requests[0].json["messages"][-1]["content"] == PROMPT


@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "25")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=_payloads())
def test_any_server_payload_through_the_magics(ipy: Shell, script: Script) -> None:
    with ScriptedServer() as server:
        server.enqueue(script, script, script)
        with env(NBLLM_QWEN_BASE_URL=server.base_url, DASHSCOPE_API_KEY="sk-payload-0123456789abcdef"):
            cell = ipy.run(f"%%llm qwen --timeout 5 -o answer\n{PROMPT}")
    shown = cell.stdout + cell.stderr
    assert "Traceback" not in shown
    if cell.error is not None:
        assert isinstance(cell.error, NbllmError), cell.error
        assert shown.endswith(f"{type(cell.error).__name__}: {cell.error.message}\n")
    else:
        assert isinstance(ipy.ns["answer"], str)
