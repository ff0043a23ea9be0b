"""The %llm line commands, the extension's loading, and traitlets configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbllm.session import default_session
from tests.fakes.openai_server import FakeOpenAIServer, qianfan_error
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)


def test_bare_llm_shows_provider_model_and_options(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("%llm set temperature=0.3")
    out = ipy.run("%llm").stdout.splitlines()
    assert out[0] == "provider: ernie (Baidu ERNIE (Qianfan v2)), key set"
    assert out[1] == "model:    ernie-4.0-turbo-8k (default)"
    assert out[2] == "options:  temperature=0.3"
    assert out[4] == "display:  stream=on, format=markdown"


def test_providers_and_its_list_alias(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    for command in ("%llm providers", "%llm list"):
        rows = {line.split()[0] if not line.startswith(" ") else line.split()[0]: line
                for line in ipy.run(command).shown().splitlines()[1:]}
        assert rows["*"].split()[1] == "ernie" and " ready " in rows["*"]
        assert " missing DASHSCOPE_API_KEY " in rows["qwen"] and rows["qwen"].rstrip().endswith("qwen-plus")
        assert " no key needed " in rows["ollama"]


def test_models_from_the_provider_and_from_the_catalogue(ipy: Shell, use_fake) -> None:  # noqa: ANN001
    with FakeOpenAIServer(models=["deepseek-chat", "deepseek-reasoner"]) as server:
        ipy.secrets.append(use_fake("deepseek", server))
        out = ipy.run("%llm models deepseek").stdout.splitlines()
    assert out == ["DeepSeek (deepseek) models:", "* deepseek-chat", "  deepseek-reasoner"]
    out = ipy.run("%llm models kimi").stdout.splitlines()
    assert out[0].endswith("(from nbllm's catalogue: no key set to ask the provider):")
    assert out[1] == "* moonshot-v1-8k"


def test_use_switches_the_following_cells(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    assert ipy.run("%llm use ernie:ernie-speed-128k").stdout == "Using ernie:ernie-speed-128k for the following cells.\n"
    ipy.run("%%llm\nq")
    assert ernie.chat_requests[-1].json["model"] == "ernie-speed-128k"
    cell = ipy.run("%llm use erine")
    assert type(cell.error).__name__ == "UnknownProviderError" and "Did you mean 'ernie'" in cell.stdout


def test_set_adds_and_removes_defaults_and_sets_magic_options(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("%llm set temperature=0.3 max_tokens=64 'stop=[\"END\"]'")
    ipy.run("%%llm\nq")
    body = ernie.chat_requests[-1].json
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.3, 64, ["END"])
    ipy.run("%llm set temperature= format=text")
    ipy.run("%%llm -t 0.9\nq")
    assert ernie.chat_requests[-1].json["temperature"] == 0.9  # the cell's option wins
    ipy.run("%%llm\nq")
    assert "temperature" not in ernie.chat_requests[-1].json
    assert ipy.magics.format == "text"
    for bad in ("%llm set temperature", "%llm set max_history=lots"):
        assert type(ipy.run(bad).error) is UsageError


def test_key_is_asked_hidden_kept_for_the_session_and_never_shown(
    ipy: Shell, openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBLLM_ERNIE_BASE_URL", openai_server.base_url)
    secret = "sk-typedtypedtypedtyped99"
    ipy.secrets.append(secret)
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or secret)
    cell = ipy.run("%llm key ernie")
    assert prompts == ["API key for Baidu ERNIE (Qianfan v2) (ernie), kept for this session only: "]
    assert cell.stdout == "Key for ernie set for this session; it is not saved anywhere.\n"
    assert ipy.run("%%llm\nq").error is None
    assert openai_server.chat_requests[-1].headers["authorization"] == f"Bearer {secret}"
    assert secret not in json.dumps(ipy.ns.get("In", []))  # nothing of it in the notebook's history


def test_history_and_reset(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    assert ipy.run("%llm history").stdout == "No conversation yet; the next cell starts one.\n"
    ipy.run("%%llm\nhello")
    assert ipy.run("%llm history").stdout == "[user] hello\n\n[assistant] echo: hello\n\n"
    ipy.run("%llm reset")
    assert default_session().history == []


def test_check_reports_each_provider(ipy: Shell, ernie: FakeOpenAIServer, use_fake) -> None:  # noqa: ANN001
    with FakeOpenAIServer() as other:
        ipy.secrets.append(use_fake("qwen", other))
        other.enqueue(qianfan_error(401, "invalid_api_key", "bad key"))
        cell = ipy.run("%llm check")
        lines = cell.shown().splitlines()
    assert lines[0].split() == ["ID", "MODEL", "RESULT", "FIRST", "TOKEN", "TOTAL", "ANSWER", "/", "ERROR"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"ernie", "qwen"}
    assert rows["ernie"].split()[2] == "ok" and rows["ernie"].rstrip().endswith("echo: Reply with one word: po…")
    assert rows["qwen"].split()[2] == "AuthError" and "answered HTTP 401" in rows["qwen"]
    assert ernie.chat_requests[-1].json["max_tokens"] == 16
    html = cell.displays[-1]["data"]["text/html"]  # a notebook shows the same table as HTML
    assert html.startswith("<table>") and ">AuthError</td>" in html and ">ernie</td>" in html


def test_switcher_displays_the_widget_bound_to_the_session(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    cell = ipy.run("%llm switcher")
    assert cell.error is None
    assert "application/vnd.jupyter.widget-view+json" in cell.displays[0]["data"]


def test_convert_runs_the_converter_and_fails_honestly(ipy: Shell, tmp_path: Path) -> None:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [],
                     "source": ["from openai import OpenAI\n", "client = OpenAI()\n"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    cell = ipy.run(f"%llm convert {path} --to ernie")
    assert cell.error is None
    assert "qianfan.baidubce.com" in path.read_text(encoding="utf-8")
    failed = ipy.run(f"%llm convert {tmp_path / 'missing.ipynb'} --to ernie")  # a usage mistake
    assert type(failed.error) is UsageError and "no notebook was read or written" in failed.stderr
    assert "no such file or folder" in failed.stderr
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    failed = ipy.run(f"%llm convert {broken} --to ernie")  # a notebook that fails
    assert type(failed.error).__name__ == "ConvertError"
    assert "ConvertError: nbllm convert stopped with exit status 1" in failed.stdout


def test_help_and_unknown_commands(ipy: Shell) -> None:
    out = ipy.run("%llm help").stdout
    for command in ("providers", "models", "use", "set", "key", "history", "reset", "check", "switcher",
                    "error", "convert"):
        assert command in out
    cell = ipy.run("%llm frobnicate")
    assert type(cell.error) is UsageError and "invalid choice: 'frobnicate'" in cell.stderr


def test_cell_magic_help_lists_the_options() -> None:
    from nbllm.magics import LLMMagics

    doc = LLMMagics.llm.__doc__
    for option in ("--provider", "--model", "--system", "--temperature", "--max-tokens", "--top-p", "--timeout",
                   "--param", "--format", "--insert", "--out", "--no-stream", "--new", "--no-history", "--with",
                   "--cells"):
        assert option in doc


def test_traitlets_config_sets_the_defaults(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    shell = InteractiveShell.instance()
    shell.config.LLMMagics.default_provider = "ernie:ernie-lite-8k"
    shell.config.LLMMagics.max_history = 2
    shell.config.LLMMagics.format = "text"
    try:
        shell.run_line_magic("unload_ext", "nbllm")
        shell.run_line_magic("load_ext", "nbllm")
        ipy.run("%%llm\none")
        ipy.run("%%llm\ntwo")
        cell = ipy.run("%%llm\nthree")
    finally:
        del shell.config["LLMMagics"]
    body = ernie.chat_requests[-1].json
    assert body["model"] == "ernie-lite-8k"
    assert [m["content"] for m in body["messages"]] == ["two", "echo: two", "three"]
    assert cell.final_answer() == {"text/plain": "echo: three"}
    assert default_session().max_history == 2


def test_unload_removes_the_magic(ipy: Shell) -> None:
    ipy.shell.run_line_magic("unload_ext", "nbllm")
    assert "llm" not in ipy.shell.magics_manager.magics["cell"]
    ipy.shell.run_line_magic("load_ext", "nbllm")
    assert "llm" in ipy.shell.magics_manager.magics["cell"]


def test_loading_the_extension_stays_cheap() -> None:
    code = (
        "import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'nbllm')\n"
        "print(sorted(m for m in ('httpx', 'ipywidgets', 'libcst', 'nbformat', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
