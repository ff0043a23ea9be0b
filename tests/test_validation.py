"""Config and options are validated where they enter: one paragraph that says what and where, never
a traceback, never a bad value stored to break later cells, never a default that locks users out."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import nbllm
from nbllm.cli import main
from nbllm.errors import ConfigError
from tests.conftest import UseFake
from tests.fakes.openai_server import FakeOpenAIServer
from tests.magics_shell import Cell, Shell

REPO = Path(__file__).resolve().parents[1]


def one_paragraph(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), text
    assert "Traceback" not in text
    return text


def write_config(text: str) -> Path:
    path = Path(os.environ["NBLLM_CONFIG"])
    path.write_text(text, encoding="utf-8")
    return path


def cell_paragraph(cell: Cell, name: str) -> str:
    assert type(cell.error).__name__ == name, (cell.error, cell.stdout, cell.stderr)
    shown = cell.stdout + cell.stderr
    return one_paragraph(shown)


# -- the config file ----------------------------------------------------------------------------
WRONG_TYPES: list[tuple[str, str, str]] = [
    ("base_url = 5", "base_url must be a string, not an integer (5)", "qwen"),
    ("label = ['a']", "label must be a string, not a list", "qwen"),
    ("key_env = 7", "key_env must be a list of strings (or one string), not an integer", "qwen"),
    ("key_env = ['OK', 3]", "key_env must be a list of strings", "qwen"),
    ("secret_env = {a = 1}", "secret_env must be a list of strings (or one string), not a table", "qwen"),
    ("models = 5", "models must be a list of strings (or one string), not an integer", "qwen"),
    ("default_model = 1.5", "default_model must be a string, not a number (1.5)", "qwen"),
    ("key_required = 'yes'", "key_required must be true or false, not a string ('yes')", "qwen"),
    ("lists_models = 1", "lists_models must be true or false, not an integer", "qwen"),
    ("extra_headers = 'x'", "extra_headers must be a table of strings, not a string", "qwen"),
    ("extra_headers = {x = 1}", "extra_headers must be a table of strings, not a table", "qwen"),
    ("headers_from_env = [1]", "headers_from_env must be a table of strings, not a list", "qwen"),
    ("extra_body = 'x'", "extra_body must be a table, not a string", "qwen"),
    ("dialect = 3", "dialect must be a string, not an integer", "qwen"),
    ("dialect = 'grpc'", "dialect 'grpc' is not one nbllm knows", "qwen"),
    ("base_url_env = false", "base_url_env must be a string, not a boolean", "qwen"),
    ("id = 'other'", "unknown field(s) id", "qwen"),
    ("base_url = 'http://[::1'", "is not usable: it cannot be parsed (Invalid IPv6 URL)", "qwen"),
    ("base_url = \"http://127.0.0.1:8000/v1\\n\"", "it holds a line break (U+000A) at the end", "qwen"),
    ("base_url = 'http://local host/v1'", "it holds U+0020 (SPACE) at character 13", "qwen"),
    ("base_url = 'localhost:8000/v1'", "it must start with http:// or https://", "qwen"),
    ("base_url = 'http://127.0.0.1:99999/v1'", "it cannot be parsed (Port out of range", "qwen"),
    ("extra_headers = {x = \"a\\u200bb\"}", "extra_headers.x in", "qwen"),
]


@pytest.mark.parametrize(("line", "says", "pid"), WRONG_TYPES)
def test_a_wrong_config_field_is_one_paragraph_naming_file_provider_and_field(
        capsys: pytest.CaptureFixture[str], line: str, says: str, pid: str) -> None:
    path = write_config(f"[providers.{pid}]\n{line}\n")
    assert main(["providers"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    one_paragraph(err)
    assert str(path) in err and f"[providers.{pid}]" in err and says in err


def test_wrong_config_field_in_the_magics(ipy: Shell) -> None:
    path = write_config("[providers.qwen]\nmodels = 5\n")
    paragraph = cell_paragraph(ipy.run("%llm providers"), "ConfigError")
    assert str(path) in paragraph and "[providers.qwen] models must be a list" in paragraph


@pytest.mark.parametrize(("text", "says"), [
    ("providers = 5", "providers must be a table of [providers.<id>] tables, not an integer"),
    ("providers = {qwen = 5}", "providers.qwen must be a table ([providers.qwen]), not an integer"),
])
def test_a_wrong_providers_table(capsys: pytest.CaptureFixture[str], text: str, says: str) -> None:
    write_config(text + "\n")
    assert main(["providers"]) == 1
    assert says in one_paragraph(capsys.readouterr().err)


def test_one_model_as_a_string_is_one_model_not_its_letters(openai_server: FakeOpenAIServer,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    write_config(f"[providers.mine]\nbase_url = '{openai_server.base_url}'\nmodels = 'my-model'\n"
                 "key_env = 'MINE_KEY'\n")
    os.environ["MINE_KEY"] = "mine-key-0123456789"
    try:
        assert main(["chat", "-p", "mine", "hi"]) == 0
        assert main(["models", "mine"]) == 0
    finally:
        del os.environ["MINE_KEY"]
    assert openai_server.chat_requests[0].json["model"] == "my-model"
    assert capsys.readouterr().out.splitlines()[-1] != "m"


def test_a_bad_base_url_in_the_environment_names_the_variable(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_QWEN_BASE_URL", "http://[::1")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-live-0123456789abcdef")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing else (the exchange log) trips over the URL
        assert main(["chat", "-p", "qwen", "hi"]) == 1
    err = one_paragraph(capsys.readouterr().err)
    assert "NBLLM_QWEN_BASE_URL" in err and "Invalid IPv6 URL" in err
    assert main(["providers"]) == 0  # the other providers stay usable
    assert main(["check", "qwen"]) == 1
    assert "ConfigError" in capsys.readouterr().out


# -- numbers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "says"), [
    (["--timeout", "nan"], "argument --timeout: must be a finite number, not nan"),
    (["--timeout", "inf"], "must be a finite number, not inf"),
    (["--timeout", "-1"], "must be more than 0 (seconds), not -1.0"),
    (["--timeout", "0"], "must be more than 0"),
    (["--timeout", "abc"], "must be a finite number, not 'abc'"),
    (["-t", "nan"], "argument -t/--temperature: must be a finite number"),
    (["--max-tokens", "0"], "argument --max-tokens: must be a whole number of 1 or more"),
    (["--max-tokens", "1.5"], "must be a whole number of 1 or more, not '1.5'"),
])
def test_cli_refuses_bad_numbers(capsys: pytest.CaptureFixture[str], args: list[str], says: str) -> None:
    assert main(["chat", "-p", "ernie", *args, "hi"]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["check", "ernie"], ["models", "qwen"]])
def test_cli_refuses_bad_timeouts_everywhere(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    assert main([*command, "--timeout", "nan"]) == 2
    assert "must be a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("options", ["--timeout nan", "--timeout -3", "--top-p inf", "-t nan", "--max-tokens 0"])
def test_magics_refuse_bad_numbers(ipy: Shell, ernie: FakeOpenAIServer, options: str) -> None:
    cell = ipy.run(f"%%llm {options}\nhi")
    assert type(cell.error).__name__ == "UsageError" and "must be" in cell.stdout + cell.stderr
    assert ernie.chat_requests == []


@pytest.mark.parametrize("line", ["%%llm --param timeout=abc\nhi", "%%llm --param temperature=NaN\nhi",
                                  "%%llm --param max_tokens=-5\nhi"])
def test_magics_param_refused_when_given(ipy: Shell, ernie: FakeOpenAIServer, line: str) -> None:
    paragraph = cell_paragraph(ipy.run(line), "ConfigError")
    assert "--param" in paragraph and "Nothing was sent" in paragraph
    assert ernie.chat_requests == []
    assert ipy.run("%%llm\nhi").error is None


def test_llm_set_refuses_a_bad_timeout_and_later_cells_keep_working(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    paragraph = cell_paragraph(ipy.run("%llm set timeout=abc"), "ConfigError")
    assert "timeout must be a finite number, not 'abc'" in paragraph
    assert ipy.run("%%llm\nhi").error is None
    assert "timeout" not in ipy.magics.session().params
    assert ipy.run("%llm set timeout=30").error is None
    assert ipy.magics.session().params == {"timeout": 30}


@pytest.mark.parametrize(("params", "says"), [
    ({"timeout": "abc"}, "timeout must be a finite number, not 'abc'"),
    ({"timeout": math.nan}, "timeout must be a finite number, not nan"),
    ({"timeout": -1}, "timeout must be more than 0"),
    ({"timeout": True}, "timeout must be a finite number, not True"),
    ({"temperature": math.inf}, "temperature must be a finite number, not inf"),
    ({"top_p": "0.5"}, "top_p must be a finite number, not '0.5'"),
    ({"max_tokens": 2.5}, "max_tokens must be a whole number of 1 or more"),
])
def test_python_api_refuses_bad_numbers(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                        params: dict[str, Any], says: str) -> None:
    use_fake("ernie", openai_server)
    with pytest.raises(ConfigError, match="Bad option") as info:
        nbllm.chat("hi", provider="ernie", **params)
    assert says in info.value.message
    with pytest.raises(ConfigError):
        list(nbllm.stream("hi", provider="ernie", **params))
    assert openai_server.chat_requests == []


def test_session_options_are_checked_when_set() -> None:
    from nbllm.session import Session

    session = Session("ernie")
    with pytest.raises(ConfigError, match="the session options: timeout must be"):
        session.params = {"timeout": "soon"}
    assert session.params == {}


# -- the magic line -----------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["%%llm -s 'Be brief\nhi", "%%llm -s Be\\\nhi", '%llm use "ernie', "%llm set a=\\"])
def test_quoting_mistakes_are_a_usage_error(ipy: Shell, code: str) -> None:
    cell = ipy.run(code)
    assert type(cell.error).__name__ == "UsageError"
    text = one_paragraph(cell.stdout + cell.stderr)
    assert "Could not read the %llm line" in text


@pytest.mark.parametrize("code", ["%%llm -h\nignored", "%%llm ernie --help\nx"])
def test_cell_help(ipy: Shell, code: str) -> None:
    cell = ipy.run(code)
    assert cell.error is None
    assert "--timeout" in cell.stdout and "--with" in cell.stdout and "provider" in cell.stdout


def test_providers_written_with_spaces(ipy: Shell, ernie: FakeOpenAIServer, use_fake: UseFake) -> None:
    with FakeOpenAIServer() as other:
        ipy.secrets.append(use_fake("qwen", other))
        assert ipy.run("%%llm ernie, qwen -o both\nhi").error is None
        assert set(ipy.ns["both"]) == {"ernie", "qwen"}
        assert ipy.run("%%llm ernie || qwen -o one\nhi").error is None
        assert ipy.ns["one"] == "echo: hi"
    cell = ipy.run("%%llm ernie qwen, kimi\nhi")
    assert type(cell.error).__name__ == "UsageError" and "'ernie qwen, kimi'" in cell.stdout + cell.stderr


# -- nbllm chat input ---------------------------------------------------------------------------
def _run_cli(args: list[bytes], stdin: bytes, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "nbllm", *args], input=stdin, capture_output=True, env=env,
                          cwd=REPO, timeout=60)


def test_non_utf8_stdin_and_argv(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("ernie", openai_server)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = _run_cli([b"chat", b"-p", b"ernie"], "你好 ".encode("gbk"), env)
    assert done.returncode == 2 and done.stdout == b""
    err = done.stderr.decode()
    assert "the prompt on stdin is not UTF-8 text: byte 0xc4 at offset 0" in err and "Traceback" not in err
    done = _run_cli([b"chat", b"-p", b"ernie", b"caf\xe9"], b"", {**env, "LC_ALL": "C.UTF-8"})
    assert done.returncode == 2 and "the prompt argument is not UTF-8 text: byte 0xe9 at character 4" in \
        done.stderr.decode()
    assert openai_server.chat_requests == []
    done = _run_cli([b"chat", b"-p", b"ernie"], "\ufeff你好".encode(), env)
    assert done.returncode == 0 and done.stdout.decode() == "echo: 你好\n"


# -- bad defaults -------------------------------------------------------------------------------
@pytest.mark.parametrize(("how", "named"), [("env", "NBLLM_DEFAULT"), ("config", "default in the nbllm config file"),
                                            ("config-type", "default in the nbllm config file")])
def test_a_bad_default_never_locks_out_other_commands(ipy: Shell, ernie: FakeOpenAIServer,
                                                      monkeypatch: pytest.MonkeyPatch, how: str, named: str) -> None:
    if how == "env":
        monkeypatch.setenv("NBLLM_DEFAULT", "garbage")
    else:
        write_config('default = "nosuch"\n' if how == "config" else "default = 5\n")
    paragraph = cell_paragraph(ipy.run("%%llm\nhi"), "ConfigError")
    assert named in paragraph and "%llm use" in paragraph
    assert ipy.run("%llm providers").error is None
    assert ipy.run("%%llm ernie\nhi").error is None
    assert ipy.run("%llm use ernie").error is None
    assert ipy.run("%%llm\nhi").error is None


def test_a_bad_default_in_the_cli_and_the_api(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake("ernie", openai_server)
    monkeypatch.setenv("NBLLM_DEFAULT", "garbage")
    assert main(["chat", "-p", "ernie", "hi"]) == 0
    assert main(["chat", "hi"]) == 1
    err = one_paragraph(capsys.readouterr().err)
    assert "NBLLM_DEFAULT" in err and "'garbage'" in err
    assert nbllm.chat("hi", provider="ernie").text == "echo: hi"
    with pytest.raises(ConfigError, match="NBLLM_DEFAULT"):
        nbllm.chat("hi")


def test_a_bad_magics_default_provider_setting(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.magics.default_provider = "nosuch"
    paragraph = cell_paragraph(ipy.run("%%llm\nhi"), "ConfigError")
    assert "LLMMagics.default_provider" in paragraph
    assert ipy.run("%%llm ernie\nhi").error is None


# -- notebook variables -------------------------------------------------------------------------
class Broken:
    @property
    def shape(self) -> Any:
        raise RuntimeError("shape is broken")

    @property
    def dtype(self) -> Any:
        raise RuntimeError("dtype is broken")

    def __repr__(self) -> str:
        raise ValueError("repr is broken")


def test_a_variable_with_broken_attributes_falls_back_to_its_type(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.ns["x"] = Broken()
    assert ipy.run("%%llm --with x\nwhat is {x}?").error is None
    sent = ernie.chat_requests[-1].json["messages"][-1]["content"]
    assert "Variable `x` (Broken):" in sent and "what is <Broken object>?" in sent




def test_values_json_cannot_carry_are_refused(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    paragraph = cell_paragraph(ipy.run("%%llm --param top_k=NaN\nhi"), "ConfigError")
    assert "top_k holds a number JSON cannot carry (NaN or infinity): nan" in paragraph
    with pytest.raises(ConfigError, match="extra_body holds a number JSON cannot carry"):
        nbllm.chat("hi", provider="ernie", extra_body={"penalty": [1.0, math.inf]})
    assert ernie.chat_requests == []


def test_a_config_value_json_cannot_carry_is_a_config_error(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("qwen", openai_server)
    write_config("[providers.qwen]\nextra_body = {since = 1979-05-27T07:32:00Z}\n")
    assert main(["chat", "-p", "qwen", "hi"]) == 1
    err = one_paragraph(capsys.readouterr().err)
    assert "could not be built (TypeError: Object of type datetime is not JSON serializable)" in err
    assert "no dates" in err and openai_server.chat_requests == []
