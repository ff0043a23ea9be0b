"""Keys never leak: a key a header cannot carry is refused before any request (naming the variable
and the position), no frame of the traceback holds it, URL credentials and short keys are masked."""

from __future__ import annotations

from typing import Any

import pytest

import nbllm
from nbllm.cli import main
from nbllm.errors import AuthError, ConfigError, ConnectError
from tests.conftest import UseFake
from tests.fakes.openai_server import ErrorReply, FakeOpenAIServer
from tests.magics_shell import Shell

BAD_KEYS = [
    ("sk-abc\u200bdef0123456789", "character 7 of 20 is U+200B (ZERO WIDTH SPACE)"),
    ("\ufeffsk-abcdef0123456789", "character 1 of 20 is a byte-order mark (U+FEFF)"),
    ("sk-abcdéf0123456789", "character 8 of 19 is U+00E9 (LATIN SMALL LETTER E WITH ACUTE)"),
    ("sk-abcdef\n0123456789", "character 10 of 20 is a line break (U+000A). Remove the line break"),
]


def _frames_hold(exc: BaseException, secret: str) -> list[str]:
    """nbllm frames of the traceback whose local variables hold the secret (what %xmode Verbose prints)."""
    found = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if "/tests/" not in code.co_filename:  # the test's own frame holds the key it set
            for name, value in tb.tb_frame.f_locals.items():
                try:
                    shown = value if isinstance(value, str) else f"{value!r} {value!s}"
                except Exception:
                    continue
                if secret in shown:
                    found.append(f"{code.co_name}:{name}")
        tb = tb.tb_next
    return found


@pytest.mark.parametrize(("key", "where"), BAD_KEYS)
def test_python_api_refuses_the_key_before_any_request(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                      key: str, where: str) -> None:
    use_fake("qwen", openai_server, key=key)
    with pytest.raises(ConfigError) as info:
        nbllm.chat("hi", provider="qwen")
    message = info.value.message
    assert "the environment variable DASHSCOPE_API_KEY" in message and where in message
    assert key.strip() not in message and "sk-abc" not in message
    assert openai_server.requests == []
    assert _frames_hold(info.value, key.strip()) == []


@pytest.mark.parametrize(("key", "where"), BAD_KEYS[:2])
def test_cli_names_the_variable_and_the_position(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                 capsys: pytest.CaptureFixture[str], key: str, where: str) -> None:
    use_fake("qwen", openai_server, key=key)
    assert main(["chat", "-p", "qwen", "hi"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err and "UnicodeEncodeError" not in err
    assert "DASHSCOPE_API_KEY" in err and where in err and "sk-abc" not in err
    # the provider list still works and says the key cannot be sent
    assert main(["providers"]) == 0
    assert "key cannot be sent" in capsys.readouterr().out


def test_verbose_traceback_in_the_magics_shows_no_key(ipy: Shell, openai_server: FakeOpenAIServer,
                                                      use_fake: UseFake) -> None:
    key = "sk-abc\u200bdef0123456789"
    use_fake("qwen", openai_server, key=key)
    ipy.secrets += [key, "def0123456789"]
    ipy.run("%xmode Verbose")
    try:
        cell = ipy.run("%%llm qwen\nhi")
    finally:
        ipy.run("%xmode Context")
    assert type(cell.error).__name__ == "ConfigError" and "DASHSCOPE_API_KEY" in cell.stdout
    assert cell.stdout.count("\n") == 1
    assert _frames_hold(cell.error, key) == [] and _frames_hold(cell.error, "def0123456789") == []
    assert openai_server.requests == []


def test_a_session_key_that_cannot_be_sent_is_refused_at_use(openai_server: FakeOpenAIServer,
                                                              use_fake: UseFake) -> None:
    use_fake("qwen", openai_server, key="")
    key = "sk-live\u00a00123456789abc"
    nbllm.set_key("qwen", key)
    with pytest.raises(ConfigError, match="The key given for qwen with nbllm.set_key or %llm key cannot") as info:
        nbllm.chat("hi", provider="qwen")
    assert "U+00A0 (NO-BREAK SPACE)" in info.value.message and "sk-live" not in info.value.message
    assert info.value.message.endswith("Set it again, or put it in DASHSCOPE_API_KEY instead.")
    assert _frames_hold(info.value, key) == []
    assert openai_server.requests == []


@pytest.mark.parametrize("key", ["", "   ", "\n", None, 42])
def test_set_key_refuses_blank_keys(key: Any) -> None:
    with pytest.raises(ConfigError, match="non-empty string"):
        nbllm.set_key("qwen", key)


def test_set_key_refuses_an_unknown_provider() -> None:
    with pytest.raises(ConfigError, match="Unknown provider 'qwne'.*'qwen'"):
        nbllm.set_key("qwne", "sk-live-0123456789abcdef")


def test_a_key_handed_to_a_provider_directly_is_checked(openai_server: FakeOpenAIServer) -> None:
    from nbllm.config import get_spec
    from nbllm.messages import ChatRequest
    from nbllm.providers.openai_compat import OpenAICompatProvider

    spec = get_spec("qwen").with_changes(base_url=openai_server.base_url)
    provider = OpenAICompatProvider(spec, "sk-\u4e2d0123456789abcdef")
    with pytest.raises(ConfigError, match="character 4 of 20"):
        list(provider.stream(ChatRequest(messages=[{"role": "user", "content": "x"}], model="m")))
    assert openai_server.requests == []


def test_a_header_from_the_environment_is_checked(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake("ernie", openai_server)
    monkeypatch.setenv("QIANFAN_APP_ID", "app-\u00e9")
    with pytest.raises(ConfigError, match="QIANFAN_APP_ID .the appid header. cannot be sent.*character 5"):
        nbllm.chat("hi", provider="ernie")


# -- URL credentials and short keys -------------------------------------------------------------
def test_base_url_credentials_are_masked_in_providers_and_errors(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.loopback import free_port

    url = f"http://alice:pa55-word-x@127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("NBLLM_QWEN_BASE_URL", url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-live-0123456789abcdef")
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "pa55-word-x" not in out and "alice" not in out and "http://***@127.0.0.1" in out
    assert main(["chat", "-p", "qwen", "--timeout", "2", "hi"]) == 1
    err = capsys.readouterr().err
    assert "ConnectError" not in err and "pa55-word-x" not in err and "http://***@127.0.0.1" in err
    with pytest.raises(ConnectError) as info:
        nbllm.chat("hi", provider="qwen")
    assert "pa55-word-x" not in str(info.value)


@pytest.mark.parametrize("key", ["k", "ab", "k3y", "k3y4", "q7w8e"])
def test_short_keys_echoed_by_a_server_are_never_shown(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                      capsys: pytest.CaptureFixture[str], key: str) -> None:
    use_fake("qwen", openai_server, key=key)
    for _ in range(2):
        openai_server.enqueue(ErrorReply(401, {"error": {"message": f"Incorrect API key provided: {key}. Bye."}}))
    assert main(["chat", "-p", "qwen", "hi"]) == 1
    err = capsys.readouterr().err
    assert "Incorrect API key provided: ***. Bye." in err
    with pytest.raises(AuthError) as info:
        nbllm.chat("hi", provider="qwen")
    assert f" {key}." not in info.value.message and key[:2] + "*" not in info.value.message



def test_llm_key_with_a_line_break_is_refused_at_the_next_call(ipy: Shell, openai_server: FakeOpenAIServer,
                                                               use_fake: UseFake,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake("qwen", openai_server, key="")
    pasted = "sk-pastedpasted\r\n0123456789"
    ipy.secrets += [pasted, "0123456789"]
    monkeypatch.setattr("getpass.getpass", lambda prompt: pasted)
    assert ipy.run("%llm key qwen").error is None
    cell = ipy.run("%%llm qwen\nhi")
    assert type(cell.error).__name__ == "ConfigError" and cell.stdout.count("\n") == 1
    assert "character 16 of 27 is a line break (U+000D). Remove the line break" in cell.stdout
    assert _frames_hold(cell.error, pasted) == [] and openai_server.requests == []
