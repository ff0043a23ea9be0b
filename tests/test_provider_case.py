"""Provider ids are found in any case: ``--to ERNIE``, ``%llm use Qwen``, ``provider="DeepSeek"``,
``[providers.Kimi]``. Every front end goes through ``nbllm.config.get_spec``; errors list the
canonical ids, and a config naming one provider twice in different cases is refused."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

import nbllm
from nbllm.cli import main
from nbllm.config import get_spec, load_config, load_specs, split_target
from nbllm.errors import ConfigError, UnknownProviderError
from nbllm.log.queries import prices
from tests.conftest import UseFake
from tests.fakes.openai_server import FakeOpenAIServer
from tests.magics_shell import Shell


def write_config(text: str) -> Path:
    path = Path(os.environ["NBLLM_CONFIG"])
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["ERNIE", "Qwen", "DeepSeek", "kImI", "Ernie-V1"])
def test_built_in_ids_in_any_case(name: str) -> None:
    assert get_spec(name).id == name.lower()
    assert split_target(f"{name}:some-model") == (name, "some-model")
    assert get_spec(split_target(f"{name}:some-model")[0]).id == name.lower()


def test_unknown_ids_still_list_the_canonical_ones() -> None:
    with pytest.raises(UnknownProviderError) as info:
        get_spec("DeepSeak")
    message = str(info.value)
    assert "Did you mean 'deepseek'" in message and "Known providers: " in message
    listed = message.split("Known providers: ")[1].split(". ")[0].split(", ")
    assert listed == sorted(load_specs()) and "deepseek" in listed


def test_config_table_in_another_case_changes_the_built_in_row() -> None:
    write_config('[providers.Kimi]\ndefault_model = "kimi-k2"\n\n[providers.Kimi.prices]\ninput = 1\noutput = 2\n')
    specs = load_specs()
    assert "Kimi" not in specs and specs["kimi"].default_model == "kimi-k2"
    assert get_spec("KIMI").default_model == "kimi-k2"
    assert set(prices(load_config())) == {"kimi"}  # priced under the id the log's rows carry


def test_a_provider_of_the_configs_own_keeps_its_spelling_and_is_found_in_any_case() -> None:
    write_config('[providers.MyLLM]\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["m"]\n')
    assert get_spec("myllm").id == "MyLLM" and get_spec("MYLLM").id == "MyLLM"
    assert "MyLLM" in load_specs()


@pytest.mark.parametrize("tables", [
    '[providers.kimi]\ndefault_model = "a"\n[providers.Kimi]\ndefault_model = "b"\n',
    '[providers.mine]\nbase_url = "http://127.0.0.1:9/v1"\n[providers.MINE]\nbase_url = "http://127.0.0.1:9/v1"\n',
])
def test_two_tables_differing_only_in_case_are_a_config_error(tables: str) -> None:
    write_config(tables)
    with pytest.raises(ConfigError) as info:
        load_specs()
    first, second = (line.split("]")[0] for line in tables.split("[providers.")[1:])
    assert f"[providers.{first}]" in str(info.value) and f"[providers.{second}]" in str(info.value)
    assert "case" in str(info.value)


def test_python_api_in_any_case(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("deepseek", openai_server)
    reply = nbllm.chat("hello", provider="DeepSeek")
    assert reply.text == "echo: hello" and reply.provider == "deepseek"
    assert "".join(nbllm.stream("again", provider="DEEPSEEK:deepseek-chat")) == "echo: again"


def test_cli_chat_and_convert_in_any_case(openai_server: FakeOpenAIServer, use_fake: UseFake, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("ernie", openai_server)
    assert main(["chat", "-p", "ERNIE", "hi there"]) == 0
    assert "echo: hi there" in capsys.readouterr().out
    script = tmp_path / "ask.py"
    script.write_text('from openai import OpenAI\nclient = OpenAI()\nclient.chat.completions.create('
                      'model="gpt-4o", messages=[{"role": "user", "content": "hi"}])\n', encoding="utf-8")
    assert main(["convert", str(script), "--to", "Qwen"]) == 0
    converted = script.read_text(encoding="utf-8")
    assert "dashscope" in converted and "Qwen" not in converted.replace("qwen", "")


def test_magics_in_any_case(ipy: Shell, openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    ipy.secrets.append(use_fake("qwen", openai_server))
    assert ipy.run("%llm use Qwen").stdout == "Using qwen for the following cells.\n"
    cell = ipy.run("%%llm\nhello")
    assert cell.result.success and "echo: hello" in cell.everything()
    assert [r.json["model"] for r in openai_server.chat_requests] == [get_spec("qwen").default_model]


@pytest.mark.timeout(240)
def test_run_in_any_case(openai_server: FakeOpenAIServer, use_fake: UseFake, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake("ernie", openai_server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-caseTESTopenaiKEY000000000001")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    notebook = tmp_path / "ask.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'from openai import OpenAI\nprint(OpenAI().chat.completions.create(model="gpt-4o", '
        'messages=[{"role": "user", "content": "ran"}]).choices[0].message.content)')])
    nbformat.write(nb, notebook)
    assert main(["run", str(notebook), "--to", "ERNIE"]) == 0
    assert "against ernie" in capsys.readouterr().out
    executed = nbformat.read(tmp_path / "ask.ernie.ipynb", as_version=4)
    assert "echo: ran\n" in "".join(out.get("text", "") for out in executed.cells[0].outputs)
