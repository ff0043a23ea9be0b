"""``nbllm run``: the legacy v1 notebooks executed unchanged (nbclient, a real kernel) against a loopback ERNIE.

The kernel inherits an environment in which the internet is a closed port (HTTP(S)_PROXY to
127.0.0.1:9, loopback exempt) and pip has no index, no find-links and no config file (the legacy
notebooks run ``pip install -U``: it must never change the test environment), so a cell that needs
the network fails the same way on every machine instead of reaching it.
"""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from nbllm.cli import main
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer

pytestmark = pytest.mark.timeout(240)

LEGACY = Path(__file__).resolve().parent.parent / "notebooks" / "legacy"
OPENAI_KEY = "sk-openaiKEYmustNOTleave0000000002"
ERNIE_KEY = "bce-v3-run-key-41d2"


@pytest.fixture
def ernie(use_fake: UseFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=ERNIE_KEY) as server:
        use_fake("ernie", server, key=ERNIE_KEY)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.setenv(var, "http://127.0.0.1:9")
        nowhere = tmp_path / "no-wheels"
        nowhere.mkdir()
        monkeypatch.setenv("PIP_NO_INDEX", "1")
        monkeypatch.setenv("PIP_FIND_LINKS", str(nowhere))
        monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
        yield server
        for req in server.requests:
            assert OPENAI_KEY not in str(req.headers) and OPENAI_KEY.encode() not in req.body


def copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(LEGACY / name, tmp_path / name))


def code_sources(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def models(server: FakeOpenAIServer) -> list[tuple[str, str]]:
    return [(r.path, r.json["model"]) for r in server.requests if isinstance(r.json, dict)]


def test_embeddings_notebook_runs_when_the_sizes_match(ernie: FakeOpenAIServer, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    ernie.embedding_size = 1536
    notebook = copy(tmp_path, "04_embeddings_search.ipynb")
    before = notebook.read_bytes()
    assert main(["run", str(notebook), "--to", "ernie"]) == 0
    out = capsys.readouterr().out
    copy_path = tmp_path / "04_embeddings_search.ernie.ipynb"
    assert f"Ran 4 code cells of {notebook} against ernie" in out
    assert "Models mapped: text-embedding-3-small -> embedding-v1." in out and str(copy_path) in out
    assert notebook.read_bytes() == before
    executed = nbformat.read(copy_path, as_version=4)
    assert code_sources(copy_path) == code_sources(notebook)
    assert [c.execution_count for c in executed.cells if c.cell_type == "code"] == [1, 2, 3, 4]
    found = ast.literal_eval(executed.cells[-1].outputs[0].data["text/plain"])  # search(): the 2 nearest texts
    assert len(found) == 2 and set(found) < {"cats purr", "dogs bark", "notebooks run code"}
    assert models(ernie) == [("/v1/embeddings", "embedding-v1")] * 2


def test_a_failing_cell_is_named_and_the_copy_kept(ernie: FakeOpenAIServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    notebook = copy(tmp_path, "04_embeddings_search.ipynb")  # the fake's vectors have 8 dimensions
    assert main(["run", str(notebook), "--to", "ernie", "--output", str(tmp_path / "out" / "run.ipynb")]) == 1
    err = capsys.readouterr().err
    assert f"nbllm run: cell 4 (In [3]) of {notebook} failed: AssertionError: unexpected embedding size." in err
    assert "2 code cells ran against ernie before it (models mapped: text-embedding-3-small -> embedding-v1)" in err
    executed = nbformat.read(tmp_path / "out" / "run.ipynb", as_version=4)
    assert executed.cells[3].outputs[-1].ename == "AssertionError" and executed.cells[4].outputs == []
    assert not (tmp_path / "04_embeddings_search.ernie.ipynb").exists()


def test_tools_notebook_stops_at_the_responses_api(ernie: FakeOpenAIServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Hangzhou"}'}}
    ernie.enqueue(ErrorReply(200, {"id": "as-1", "object": "chat.completion", "created": 1, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                                       "role": "assistant", "content": None, "tool_calls": [call]}}]}),
                  Answer(text='{"a": 1, "b": 2}'))
    notebook = copy(tmp_path, "06_tools_and_limits.ipynb")
    assert main(["run", str(notebook), "--to", "ernie", "--model", "gpt-4o=ernie-4.0-turbo-8k"]) == 1
    err = capsys.readouterr().err
    assert "cell 5 (In [4])" in err and "NotFoundError: Baidu ERNIE (Qianfan v2) (ernie) answered HTTP 404" in err
    executed = nbformat.read(tmp_path / "06_tools_and_limits.ernie.ipynb", as_version=4)
    assert "get_weather" in executed.cells[2].outputs[-1].text
    assert executed.cells[3].outputs[-1].text == "{'a': 1, 'b': 2}\n"
    assert models(ernie) == [("/v1/chat/completions", "ernie-4.5-turbo-128k"),
                             ("/v1/chat/completions", "ernie-4.0-turbo-8k"), ("/v1/responses", "ernie-4.0-turbo-8k")]
    assert code_sources(tmp_path / "06_tools_and_limits.ernie.ipynb") == code_sources(notebook)


def test_client_helpers_notebook_runs_until_it_needs_the_internet(ernie: FakeOpenAIServer, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    notebook = copy(tmp_path, "02_client_v1_helpers.ipynb")  # no OpenAI key: nbllm's placeholder skips getpass
    assert main(["run", str(notebook), "--to", "ernie"]) == 1
    assert "cell 8 (In [" in capsys.readouterr().err  # tiktoken downloads its tables: the network is closed
    executed = nbformat.read(tmp_path / "02_client_v1_helpers.ernie.ipynb", as_version=4)
    assert executed.cells[5].outputs[-1].text.startswith("echo: What is a Jupyter kernel?\necho: Name three")
    assert models(ernie) == [("/v1/chat/completions", m) for m in
                             ("ernie-4.5-turbo-128k", "ernie-speed-128k", "ernie-4.5-turbo-128k")]
    assert ernie.requests[-1].json["stream"] is True


def test_output_may_name_the_input_only_on_purpose(ernie: FakeOpenAIServer, tmp_path: Path) -> None:
    ernie.embedding_size = 1536
    notebook = copy(tmp_path, "04_embeddings_search.ipynb")
    assert main(["run", str(notebook), "--to", "ernie", "--output", str(notebook)]) == 0
    assert nbformat.read(notebook, as_version=4).cells[-1].outputs  # executed in place, as asked
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ipynb") == ["04_embeddings_search.ipynb"]


def test_bad_target_or_path_starts_no_kernel(ernie: FakeOpenAIServer, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    notebook = copy(tmp_path, "04_embeddings_search.ipynb")
    assert main(["run", str(notebook), "--to", "erine"]) == 1
    assert "Unknown provider 'erine'. Did you mean 'ernie'" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.ipynb"), "--to", "ernie"]) == 1
    assert "No such notebook" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("{not json", encoding="utf-8")
    assert main(["run", str(tmp_path / "broken.ipynb"), "--to", "ernie"]) == 1
    assert "could not be read as a notebook" in capsys.readouterr().err
    assert main(["run", str(notebook), "--to", "ernie", "--model", "gpt-4o"]) == 2  # a usage mistake, as in convert
    assert "argument --model: expects OLD=NEW" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ipynb") == [
        "04_embeddings_search.ipynb", "broken.ipynb"]
    assert ernie.requests == []


def test_a_hanging_cell_hits_the_timeout_in_a_kernel_not_installed_here(ernie: FakeOpenAIServer, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("import time\ntime.sleep(60)")])
    nb.metadata["kernelspec"] = {"name": "conda-env-nowhere-py", "display_name": "Py (nowhere)", "language": "python"}
    nbformat.write(nb, tmp_path / "slow.ipynb")
    assert main(["run", str(tmp_path / "slow.ipynb"), "--to", "ernie", "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "kernel 'conda-env-nowhere-py' is not installed here; running with this Python (python3)." in err
    assert f"cell 2 (In [2]) of {tmp_path / 'slow.ipynb'} failed: no result within 2 s (--timeout)" in err
    assert nbformat.read(tmp_path / "slow.ernie.ipynb", as_version=4).cells[0].execution_count == 1


@pytest.mark.parametrize(("value", "shown"), [
    ("gpt-4o", "'gpt-4o'"), ("=ernie-speed-128k", "'=ernie-speed-128k'"), ("gpt-4o=", "'gpt-4o='"),
    (" = ", "' = '"), ("gpt-4o\nernie", "'gpt-4o\\nernie'"),
    ("sk-proj-1234567890abcdefghijKLMN", "'sk-***'"),  # a key pasted by mistake is never echoed
])
def test_a_malformed_model_override_is_one_paragraph_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               value: str, shown: str) -> None:
    notebook = copy(tmp_path, "04_embeddings_search.ipynb")
    assert main(["run", str(notebook), "--to", "ernie", "--model", value]) == 2
    out, err = capsys.readouterr()
    usage, _, message = err.partition("\nnbllm run: error: ")
    assert out == "" and usage.startswith("usage: nbllm run ") and "Traceback" not in err
    assert message == f"argument --model: expects OLD=NEW (for example gpt-4o=ernie-4.5-turbo-128k), got {shown}.\n"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".ipynb"] == ["04_embeddings_search.ipynb"]
