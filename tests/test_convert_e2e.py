"""End to end: convert OpenAI notebooks, execute them with a real kernel against a loopback server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nbllm.convert import convert_paths
from tests.convert_fixtures.helpers import notebook_json, write_notebook
from tests.fakes.openai_server import FakeOpenAIServer

KEY = "fake-e2e-key-0123456789"


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeOpenAIServer:
    """A custom provider in the config file whose base_url is a loopback OpenAI-compatible server."""
    with FakeOpenAIServer(api_key=KEY) as server:
        Path(os.environ["NBLLM_CONFIG"]).write_text(
            f'[providers.gateway]\nbase_url = "{server.base_url}"\nkey_env = "GATEWAY_API_KEY"\n'
            'models = ["fake-chat"]\n', encoding="utf-8")
        monkeypatch.setenv("GATEWAY_API_KEY", KEY)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        yield server


def execute(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(path.parent)}}).execute()
    return ["".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_converted_v1_notebook_runs_against_the_provider(tmp_path: Path, gateway: FakeOpenAIServer) -> None:
    path = tmp_path / "chat.ipynb"
    write_notebook(path, notebook_json([
        "from openai import OpenAI\nclient = OpenAI()",
        'r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "ping one"}])\n'
        "print(r.choices[0].message.content)",
        'stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,\n'
        '                                        messages=[{"role": "user", "content": "ping two"}])\n'
        'print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))',
    ]))
    result = convert_paths([path], "gateway").results[0]
    assert result.status == "changed"
    assert execute(path) == ["echo: ping one\n", "echo: ping two\n"]
    chats = [r for r in gateway.requests if r.path.endswith("/chat/completions")]
    assert [r.json["model"] for r in chats] == ["fake-chat", "fake-chat"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in chats)
    assert KEY not in path.read_text()


def test_migrated_v0_notebook_runs_with_the_v1_sdk(tmp_path: Path, gateway: FakeOpenAIServer) -> None:
    path = tmp_path / "legacy.ipynb"
    write_notebook(path, notebook_json([
        "import os\nimport openai\nopenai.api_key = os.getenv('OPENAI_API_KEY')",
        "def get_completion(prompt, model='gpt-3.5-turbo'):\n"
        "    response = openai.ChatCompletion.create(model=model, messages=[{'role': 'user', 'content': prompt}])\n"
        "    return response['choices'][0]['message']['content']",
        "print(get_completion('hello legacy'))",
    ]))
    assert convert_paths([path], "gateway").results[0].status == "changed"
    assert execute(path) == ["echo: hello legacy\n"]
    assert json.loads(path.read_text())["cells"][0]["source"].splitlines()[-1].startswith("client = openai.OpenAI(")
