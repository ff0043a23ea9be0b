"""A real OpenAI-compatible server nobody here wrote: llama-cpp-python's, on loopback, with the tiny GGUF.

The weights are random, so the answers are gibberish: the tests check structure (streamed
pieces, finish reason, token counts, the key kept secret), never content.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbllm
from nbllm.errors import AuthError
from nbllm.session import Session
from tests.fakes.loopback import free_port
from tests.tiny_gguf import shared_tiny_gguf

pytestmark = pytest.mark.llamacpp

API_KEY = "llamacpp-test-key-7f3a9c2e5b1d"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving the tiny GGUF; yields its /v1 base URL.

    Without llama-cpp-python[server] (part of the test extra) this fails with the server's own
    message rather than skipping, so CI cannot pass without it; deselect with -m "not llamacpp".
    """
    model = shared_tiny_gguf(tmp_path_factory.getbasetemp())
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--api_key", API_KEY],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        _wait_until_ready(proc, base, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_ready(proc: subprocess.Popen[bytes], base: str, log: Path, limit: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"llama_cpp.server did not answer within {limit} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def llamacpp(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NBLLM_LLAMACPP_BASE_URL", llama_server)
    monkeypatch.setenv("LLAMACPP_API_KEY", API_KEY)
    return llama_server


def test_stream_through_the_python_api(llamacpp: str) -> None:
    pieces = list(nbllm.stream("tell me a story", provider="llamacpp", max_tokens=16, seed=3))
    assert len(pieces) >= 4
    text = "".join(pieces)
    assert text.strip() and API_KEY not in text


def test_streamed_reply_ends_with_the_length_limit(llamacpp: str) -> None:
    reply = nbllm.chat("hello", provider="llamacpp", max_tokens=8, temperature=0.0)
    assert reply.text.strip()
    assert reply.finish_reason == "length"
    assert reply.provider == "llamacpp"


def test_whole_answer_carries_token_counts(llamacpp: str) -> None:
    reply = nbllm.chat("hello", provider="llamacpp", max_tokens=6, stream=False)
    assert reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 6
    assert reply.usage.prompt_tokens is not None and reply.usage.prompt_tokens > 3
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 6


def test_models_lists_the_served_alias(llamacpp: str) -> None:
    provider, _ = Session("llamacpp").resolve()
    assert "tiny" in provider.models()


def test_wrong_key_is_an_auth_error_that_hides_the_key(llamacpp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "llamacpp-wrong-key-0a1b2c3d4e"
    monkeypatch.setenv("LLAMACPP_API_KEY", wrong)
    with pytest.raises(AuthError) as info:
        nbllm.chat("hello", provider="llamacpp", max_tokens=2)
    assert "HTTP 401" in info.value.message
    assert wrong not in str(info.value) and API_KEY not in str(info.value)


def test_cli_chat_streams_the_answer(llamacpp: str, tmp_path: Path) -> None:
    env = {**os.environ, "NBLLM_LLAMACPP_BASE_URL": llamacpp, "LLAMACPP_API_KEY": API_KEY,
           "NBLLM_CONFIG": str(tmp_path / "none.toml")}
    done = subprocess.run(
        [sys.executable, "-m", "nbllm", "chat", "-p", "llamacpp", "--max-tokens", "8", "--stats", "hello"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "llamacpp" in done.stderr
    assert API_KEY not in done.stdout + done.stderr


def test_cell_magic_streams_the_answer(llamacpp: str, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "nbllm")
        result = shell.run_cell("%%llm -p llamacpp --max-tokens 8 -o answer\nwrite a haiku")
        assert result.success, result.error_in_exec
        answer = shell.user_ns["answer"]
        assert isinstance(answer, str) and answer.strip()
        shown = capsys.readouterr().out
        assert answer.strip() in shown
        assert "llamacpp" in shown
        assert API_KEY not in shown
    finally:
        shell.run_line_magic("unload_ext", "nbllm")
        InteractiveShell.clear_instance()


def test_converted_notebook_runs_against_the_server(llamacpp: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenAI notebook, converted with `nbllm convert --to llamacpp`, runs in a real kernel."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import os\nfrom openai import OpenAI\nclient = OpenAI(api_key=os.environ['OPENAI_API_KEY'])"),
        nbformat.v4.new_code_cell(
            'resp = client.chat.completions.create(model="gpt-4o-mini", max_tokens=8,\n'
            '                                      messages=[{"role": "user", "content": "hello"}])\n'
            "print(resp.choices[0].message.content, resp.choices[0].finish_reason, resp.usage.completion_tokens)"),
        nbformat.v4.new_code_cell(
            'stream = client.chat.completions.create(model="gpt-4o", max_tokens=8, stream=True,\n'
            '                                        messages=[{"role": "user", "content": "hi"}])\n'
            'pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]\n'
            "print(len(pieces))"),
    ]
    nbformat.write(nb, tmp_path / "openai-demo.ipynb")
    env = {**os.environ, "NBLLM_CONFIG": str(tmp_path / "none.toml")}
    done = subprocess.run([sys.executable, "-m", "nbllm", "convert", "openai-demo.ipynb", "--to", "llamacpp",
                           "--output-dir", "out", "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    converted = nbformat.read(tmp_path / "out" / "openai-demo.ipynb", as_version=4)
    assert f'base_url="{llamacpp}"' in converted.cells[0].source
    assert "os.environ['LLAMACPP_API_KEY']" in converted.cells[0].source
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    NotebookClient(converted, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    answer = "".join(o.get("text", "") for o in converted.cells[1].outputs)
    words = answer.split()
    assert words[-2:] == ["length", "8"] and len(words) > 2
    assert int("".join(o.get("text", "") for o in converted.cells[2].outputs)) >= 4
    assert API_KEY not in json.dumps(converted)
