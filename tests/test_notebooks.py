"""The example notebooks, executed end to end in a real kernel (nbclient) against loopback servers.

Each test copies notebooks/ to its tmp dir, routes the providers a notebook uses to fake servers
(``NBLLM_<ID>_BASE_URL`` and the key variables, or the config file for custom providers), runs
every cell and then checks what the cells showed and what the servers received. The saved
notebooks themselves must carry no outputs and nothing shaped like a key.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nbllm.secrets import redact
from tests.conftest import UseFake
from tests.fakes.loopback import RecordedRequest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.opennmt_server import FakeOpenNMTServer

pytestmark = pytest.mark.timeout(240)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXAMPLES = ("quickstart.ipynb", "switch-providers.ipynb", "convert-openai-notebooks.ipynb",
            "translate-with-opennmt.ipynb", "run-openai-notebooks-unchanged.ipynb", "reproducible-notebooks.ipynb")


# -- running a notebook ---------------------------------------------------------------------------
@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of notebooks/ to run in; the kernel's IPython profile and temp files stay in tmp_path."""
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return work


def execute(work: Path, name: str) -> nbformat.NotebookNode:
    """Run every cell in a fresh python3 kernel whose working directory is the notebook's folder."""
    nb = nbformat.read(work / name, as_version=4)
    NotebookClient(nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    return nb


def cell(nb: nbformat.NotebookNode, start: str) -> nbformat.NotebookNode:
    """The one code cell whose source starts with ``start``."""
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start)]
    assert len(found) == 1, f"{len(found)} cells start with {start!r}"
    return found[0]


def shown(c: nbformat.NotebookNode) -> list[str]:
    """What a cell showed, output by output: printed text, or the Markdown/plain text of a display."""
    texts = []
    for out in c.outputs:
        if out.output_type == "stream":
            texts.append(out.text)
        elif out.output_type == "error":
            texts.append(f"{out.ename}: {out.evalue}")
        else:
            texts.append(out.data.get("text/markdown") or out.data.get("text/plain", ""))
    return texts


def printed(c: nbformat.NotebookNode) -> str:
    return "".join(out.text for out in c.outputs if out.output_type == "stream")


def table_rows(markup: str) -> list[list[str]]:
    """The body rows of an HTML table (what a notebook shows for compare, providers and check)."""
    rows = re.findall(r"<tr>(.*?)</tr>", markup, re.S)[1:]
    return [[html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)] for row in rows]


def asked(server: FakeOpenAIServer, text: str) -> list[RecordedRequest]:
    """The chat requests whose last message contains ``text``."""
    return [r for r in server.chat_requests if text in r.json["messages"][-1]["content"]]


def assert_no_keys(nb: nbformat.NotebookNode, keys: list[str]) -> None:
    dumped = json.dumps(nb, ensure_ascii=False)
    for key in keys:
        assert key not in dumped


@pytest.fixture
def servers() -> Iterator[dict[str, FakeOpenAIServer]]:
    """One loopback OpenAI-compatible server per provider, so each can be checked on its own."""
    started: dict[str, FakeOpenAIServer] = {}
    try:
        for pid in ("ernie", "qwen", "deepseek", "hunyuan"):
            started[pid] = FakeOpenAIServer().start()
        yield started
    finally:
        for server in started.values():
            server.stop()


# -- the saved notebooks --------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXAMPLES)
def test_saved_example_has_clean_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 4
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


def test_no_saved_notebook_holds_anything_shaped_like_a_key() -> None:
    paths = sorted(NOTEBOOKS.rglob("*.ipynb"))
    assert len(paths) >= len(EXAMPLES) + 1  # the examples and the legacy sample
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert redact(text) == text, f"{path.name} holds key-shaped text"
        assert not re.search(r"sk-[A-Za-z0-9]{16,}", text)


# -- quickstart -----------------------------------------------------------------------------------
def test_quickstart(workdir: Path, servers: dict[str, FakeOpenAIServer], use_fake: UseFake) -> None:
    keys = [use_fake(pid, servers[pid]) for pid in ("ernie", "qwen", "deepseek")]
    ernie, qwen, deepseek = servers["ernie"], servers["qwen"], servers["deepseek"]
    nb = execute(workdir, "quickstart.ipynb")

    providers = shown(cell(nb, "%llm providers"))[0]
    rows = {line.split()[1 if line.startswith("*") else 0]: line for line in providers.splitlines()[1:]}
    assert rows["ernie"].startswith("*") and rows["ernie"].endswith("ernie-4.0-turbo-8k")
    assert "missing" not in rows["ernie"] and "missing" not in rows["qwen"]
    assert "missing" in rows["glm"] and "missing" in rows["hunyuan"]  # no key set for them
    assert printed(cell(nb, "%llm use ernie")) == "Using ernie for the following cells.\n"

    first = shown(cell(nb, "%%llm\nIn one sentence"))
    assert first[0] == "echo: In one sentence, what is a Jupyter kernel?"
    assert first[1].startswith("ernie · ernie-4.0-turbo-8k · first token ")

    (with_table,) = asked(ernie, "Which city in this table")
    assert "1  Shanghai          24.9" in with_table.json["messages"][-1]["content"]
    assert printed(cell(nb, "print(biggest)")).startswith("echo: Which city in this table has the most people?")

    (follow_up,) = asked(ernie, "And which one has the fewest?")
    roles = [m["role"] for m in follow_up.json["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert follow_up.json["messages"][1]["content"] == "echo: In one sentence, what is a Jupyter kernel?"
    assert "[user] And which one has the fewest?" in printed(cell(nb, "%llm history"))

    (one_off,) = asked(qwen, "Name one famous dish from Sichuan.")
    assert one_off.json["model"] == "qwen-plus" and one_off.json["temperature"] == 0.2
    assert one_off.json["messages"][0] == {"role": "system", "content": "Answer in Simplified Chinese."}
    assert len(one_off.json["messages"]) == 2  # --no-history

    compared = cell(nb, "%%llm -p ernie,qwen,deepseek")
    sections = shown(compared)[0]
    rows = table_rows(compared.outputs[-1].data["text/html"])
    assert [(r[0], r[1], r[5]) for r in rows] == [
        ("ernie", "ernie-4.0-turbo-8k", ""), ("qwen", "qwen-plus", ""), ("deepseek", "deepseek-chat", "")]
    assert sections.count("echo: Explain recursion to a ten-year-old in two sentences.") == 3
    for server in (ernie, qwen, deepseek):
        assert len(asked(server, "Explain recursion")) == 1

    api = printed(cell(nb, "import nbllm"))
    assert re.fullmatch(r"echo: Write a haiku about notebooks\.\ndeepseek:deepseek-chat, \d+ tokens\n", api)
    assert printed(cell(nb, "for piece in nbllm.stream")) == "echo: Count from one to five.\n"
    assert asked(qwen, "Count from one to five.")[0].json["model"] == "qwen-turbo"
    assert asked(deepseek, "Write a haiku")[0].headers["authorization"] == f"Bearer {keys[2]}"
    assert_no_keys(nb, keys)


# -- translation ----------------------------------------------------------------------------------
def test_translate_with_opennmt(workdir: Path, servers: dict[str, FakeOpenAIServer], use_fake: UseFake,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    key = use_fake("hunyuan", servers["hunyuan"])
    hunyuan = servers["hunyuan"]
    with FakeOpenNMTServer() as nmt:
        monkeypatch.setenv("NBLLM_OPENNMT_BASE_URL", nmt.base_url)
        nb = execute(workdir, "translate-with-opennmt.ipynb")
        sources = nmt.sources()

    assert printed(cell(nb, "%llm models opennmt")).splitlines()[1:] == ["* 100", "  101"]
    lines = shown(cell(nb, "%%llm opennmt:100"))
    assert lines[0] == "hallo welt\n\ngut morgen\ndie katze schläft"
    assert lines[1].startswith("opennmt · 100 · first token ")

    frame = cell(nb, "import pandas as pd").outputs[0].data["text/plain"].splitlines()
    assert [line.split()[-2:] for line in frame[1:]] == [
        ["hallo", "welt"], ["gut", "morgen"], ["bin", "hier"], ["katze", "schläft"]]
    assert sources == ["Hello world", "Good morning", "The cat sleeps",
                       "Hello world", "Good morning", "I am here", "The cat sleeps", "I am here"]

    (chat,) = asked(hunyuan, "Hello world\nGood morning")
    assert chat.json["model"] == "hy-mt2-pro"
    assert chat.json["messages"][0]["content"].startswith("Translate the user's text into German.")
    assert shown(cell(nb, "%%llm hunyuan:hy-mt2-pro"))[0] == "echo: Hello world\nGood morning"

    compared = cell(nb, "%%llm -p opennmt:100,hunyuan:hy-mt2-pro")
    sections = shown(compared)[0]
    assert [(r[0], r[1], r[5]) for r in table_rows(compared.outputs[-1].data["text/html"])] == [
        ("opennmt", "100", ""), ("hunyuan", "hy-mt2-pro", "")]
    assert "ich bin hier" in sections and "echo: I am here" in sections
    assert_no_keys(nb, [key])


# -- conversion -----------------------------------------------------------------------------------
def test_convert_openai_notebooks(workdir: Path, servers: dict[str, FakeOpenAIServer], use_fake: UseFake) -> None:
    key = use_fake("ernie", servers["ernie"])
    ernie = servers["ernie"]
    legacy = {p.name: p.read_bytes() for p in (workdir / "legacy").iterdir()}
    nb = execute(workdir, "convert-openai-notebooks.ipynb")

    preview = printed(cell(nb, "%llm convert legacy"))
    assert "--- a/legacy/01_chat_completion_openai028.ipynb#cell-5\n" in preview
    assert "-    response = openai.ChatCompletion.create(\n+    response = client.chat.completions.create(\n" in preview
    assert (f'+client = openai.OpenAI(base_url="{ernie.base_url}", api_key=os.getenv("QIANFAN_API_KEY"))\n'
            in preview)
    assert re.search(r"would change\s+5\n\s+unchanged\s+1\n", preview)
    assert {p.name: p.read_bytes() for p in (workdir / "legacy").iterdir()} == legacy  # --dry-run wrote nothing

    converted = printed(cell(nb, "%llm convert {work} --to ernie --diff"))
    assert f'+client = OpenAI(base_url="{ernie.base_url}", api_key=os.environ["QIANFAN_API_KEY"])\n' in converted
    assert '-    model="gpt-4o",\n+    model="ernie-4.5-turbo-128k",\n' in converted
    assert re.search(r"changed\s+2\n", converted)

    assert printed(cell(nb, "%run {work}/old_style.py")) == "echo: Say hello to the converted code.\n"
    assert printed(cell(nb, "%run {work}/new_style.py")) == "echo: Stream a short greeting.\n"
    (old,) = asked(ernie, "Say hello to the converted code.")
    (new,) = asked(ernie, "Stream a short greeting.")
    assert (old.json["model"], old.json.get("stream", False)) == ("ernie-speed-128k", False)
    assert (new.json["model"], new.json["stream"]) == ("ernie-4.5-turbo-128k", True)
    assert old.headers["authorization"] == new.headers["authorization"] == f"Bearer {key}"

    again = printed(cell(nb, "%llm convert {work} --to ernie --check"))
    assert re.search(r"would change\s+0\n\s+unchanged\s+2\n", again)
    assert_no_keys(nb, [key])


# -- switching providers --------------------------------------------------------------------------
def _local_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Give the kernel the tiny GGUF when llama-cpp-python is installed; report whether it is."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return False
    from tests.tiny_gguf import shared_tiny_gguf

    monkeypatch.setenv("NBLLM_LOCAL_MODEL", str(shared_tiny_gguf(tmp_path)))
    return True


def test_switch_providers(workdir: Path, tmp_path: Path, use_fake: UseFake, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.ollama_server import FakeOllamaServer

    with FakeOpenAIServer() as cloud, FakeOpenAIServer(api_key="gateway-key-5d1e0c7a9b") as gateway, \
            FakeOpenAIServer(require_auth=False) as llamacpp, FakeOllamaServer() as ollama:
        key = use_fake("deepseek", cloud)
        monkeypatch.setenv("NBLLM_DEFAULT", "deepseek")
        config = tmp_path / "config.toml"
        config.write_text(f'[providers.gateway]\nbase_url = "{gateway.base_url}"\nkey_env = "GATEWAY_KEY"\n'
                          'models = ["qwen2.5-72b-instruct"]\n', encoding="utf-8")
        monkeypatch.setenv("NBLLM_CONFIG", str(config))
        monkeypatch.setenv("GATEWAY_KEY", gateway.api_key)
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        monkeypatch.setenv("NBLLM_LLAMACPP_BASE_URL", llamacpp.base_url)
        has_local = _local_model(tmp_path, monkeypatch)
        nb = execute(workdir, "switch-providers.ipynb")

    # The cells tests/test_browser.py drives keep their places: %%llm at 4, the target at 6, an empty cell at 7.
    assert nb.cells[4].source.startswith("%%llm\n") and nb.cells[7].source == ""
    assert nb.cells[2].outputs[0].data["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert shown(nb.cells[4])[0] == "echo: In one sentence, why would a notebook switch LLM providers?"
    assert printed(nb.cells[6]) == "deepseek\n"

    assert printed(cell(nb, "before = default_session().target")) == \
        "Using deepseek:deepseek-reasoner for the following cells.\n"
    (bare,) = [c for c in nb.cells if c.source == "%llm"]
    status = printed(bare)
    assert re.search(r"^provider: deepseek \(DeepSeek\)", status, re.M)
    assert re.search(r"^model:\s+deepseek-reasoner$", status, re.M)
    assert printed(cell(nb, "%llm use {before}")) == "Using deepseek for the following cells.\n"

    assert printed(cell(nb, "from nbllm.config import config_path")) == f"{config}\n"
    assert re.search(r"^\s+gateway\s+gateway\s", shown(cell(nb, "%llm providers"))[0], re.M)
    answer = shown(cell(nb, "%%llm gateway"))
    assert answer[0] == "echo: Which model are you?"
    assert answer[1].startswith("gateway · qwen2.5-72b-instruct · ")
    assert gateway.chat_requests[-1].headers["authorization"] == "Bearer gateway-key-5d1e0c7a9b"

    checks = shown(cell(nb, "%llm check ollama llamacpp"))[0].splitlines()
    assert [line.split()[:3] for line in checks[1:]] == [["ollama", "qwen2.5:7b", "ok"], ["llamacpp", "default", "ok"]]
    assert "qwen2.5:7b" in printed(cell(nb, "%llm models ollama")).split()
    assert shown(cell(nb, "%%llm ollama:qwen2.5:7b"))[0] == "echo: Say hello from a local model."
    assert ollama.chat_requests[-1].json["model"] == "qwen2.5:7b"
    assert shown(cell(nb, "%%llm llamacpp"))[0] == "echo: Say hello from llama.cpp."

    local = printed(cell(nb, "import nbllm"))
    if has_local:  # the tiny model never stops early, so it uses every token it may
        assert local.endswith("\n[24 tokens]\n") and len(local.split()) > 3
    else:
        assert "NBLLM_LOCAL_MODEL=/path/to/model.gguf" in local
    assert_no_keys(nb, [key, gateway.api_key])


# -- running OpenAI notebooks unchanged ------------------------------------------------------------
def stream_text(c: nbformat.NotebookNode, name: str) -> str:
    return "".join(out.text for out in c.outputs if out.output_type == "stream" and out.name == name)


def test_run_openai_notebooks_unchanged(workdir: Path, servers: dict[str, FakeOpenAIServer], use_fake: UseFake,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    openai_key = "sk-openaiKEYmustNOTleave0000000003"
    with FakeOpenAIServer() as ernie, FakeOpenAIServer(api_key=openai_key) as relay:
        keys = [use_fake("ernie", ernie), use_fake("qwen", servers["qwen"])]
        monkeypatch.setenv("OPENAI_API_KEY", openai_key)
        monkeypatch.setenv("OPENAI_BASE_URL", relay.base_url)  # "OpenAI" here: where traffic goes after off
        nb = nbformat.read(workdir / "run-openai-notebooks-unchanged.ipynb", as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(
            'after = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "off"}])\n'
            "print(after.choices[0].message.content)"))
        nbformat.write(nb, workdir / "with-a-cell-after-off.ipynb")
        nb = execute(workdir, "with-a-cell-after-off.ipynb")

    assert "now goes to Baidu ERNIE (Qianfan v2) (ernie)" in printed(cell(nb, "%llm redirect ernie"))
    first = cell(nb, "reply = client.chat.completions.create(\n    model=\"gpt-4o\"")
    assert stream_text(first, "stdout") == "echo: In one sentence, what is a Jupyter kernel?\n"
    assert stream_text(first, "stderr") == "nbllm redirect: gpt-4o -> ernie-4.5-turbo-128k (strong tier)\n"
    assert stream_text(cell(nb, "stream = OpenAI()"), "stdout") == "echo: Count from one to five.\n"
    assert stream_text(cell(nb, "vectors = client.embeddings"), "stdout") == "2 vectors\n"
    assert stream_text(cell(nb, "tools = ["), "stdout") == "echo: Weather in Hangzhou?\n"
    assert stream_text(cell(nb, "from openai import AsyncOpenAI"), "stdout") == "echo: Is 221 prime?\n"
    assert stream_text(cell(nb, "from langchain_openai"), "stdout") == "echo: Name one famous dish from Sichuan.\n"
    assert [(r.path, r.json["model"]) for r in ernie.requests] == [
        ("/v1/chat/completions", "ernie-4.5-turbo-128k"), ("/v1/chat/completions", "ernie-speed-128k"),
        ("/v1/embeddings", "embedding-v1"), ("/v1/chat/completions", "ernie-4.5-turbo-128k"),
        ("/v1/chat/completions", "ernie-x1-turbo-32k"), ("/v1/chat/completions", "ernie-speed-128k")]
    assert ernie.requests[3].json["tools"][0]["function"]["name"] == "get_weather"
    assert {r.headers["authorization"] for r in ernie.requests} == {f"Bearer {keys[0]}"}
    (status,) = [c for c in nb.cells if c.source == "%llm redirect"]
    assert "Models mapped so far: gpt-4o -> ernie-4.5-turbo-128k, gpt-4o-mini -> ernie-speed-128k, " \
        "text-embedding-3-small -> embedding-v1, gpt-4.1 -> ernie-4.5-turbo-128k, o3-mini -> ernie-x1-turbo-32k." \
        in printed(status)
    assert stream_text(cell(nb, "import nbllm"), "stdout") == "qwen-max echo: Which model are you?\n"
    assert [r.json["model"] for r in servers["qwen"].chat_requests] == ["qwen-max"]
    assert "Redirect to ernie ended" in printed(cell(nb, "%llm redirect off"))
    assert stream_text(nb.cells[-1], "stdout") == "echo: off\n"
    (back,) = relay.requests
    assert back.headers["authorization"] == f"Bearer {openai_key}" and back.json["model"] == "gpt-4o"
    for req in [*ernie.requests, *servers["qwen"].requests]:
        assert openai_key not in str(req.headers)
    assert_no_keys(nb, [*keys, openai_key])


# -- reproducible notebooks: record, then replay from the saved outputs alone ---------------------
USES = "Name three things people use Jupyter notebooks for."


def answers(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """Every %%llm answer output: (cell source, the answer it shows), in order."""
    return [(c.source, out.data.get("text/markdown") or out.data.get("text/plain"))
            for c in nb.cells if c.cell_type == "code" for out in c.outputs if "nbllm" in out.get("metadata", {})]


def provenance_of(c: nbformat.NotebookNode) -> dict:
    (meta,) = [out.metadata["nbllm"] for out in c.outputs if "nbllm" in out.get("metadata", {})]
    return meta


def nbllm_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbllm", *argv], capture_output=True, text=True, timeout=120)


def test_reproducible_notebooks_record_then_replay(workdir: Path, tmp_path: Path, servers: dict[str, FakeOpenAIServer],
                                                   use_fake: UseFake, monkeypatch: pytest.MonkeyPatch) -> None:
    qwen = servers["qwen"]
    key = use_fake("qwen", qwen)
    recorded = execute(workdir, "reproducible-notebooks.ipynb")

    first, again = [c for c in recorded.cells if c.source.startswith("%%llm qwen --no-history")]
    assert shown(first)[0] == shown(again)[0] == f"echo: {USES}"
    assert "cached" not in shown(first)[-1] and shown(again)[-1].endswith(" · cached")
    assert len(asked(qwen, USES)) == 1  # the repeat and nbllm.chat(cache="replay") never reached the server
    live, cached = provenance_of(first), provenance_of(again)
    assert (live["provider"], live["model"], live["cached"], cached["cached"]) == ("qwen", "qwen-plus", False, True)
    assert live["fingerprint"] == cached["fingerprint"] and isinstance(live["log_id"], int)
    assert cached["log_id"] == live["log_id"] + 1 and live["version"] and "text" not in live
    (why,) = asked(qwen, "Why?")
    assert [m["role"] for m in why.json["messages"]] == ["user", "assistant", "user"]  # a conversation
    assert printed(cell(recorded, "import nbllm")) == f"echo: {USES}\n"
    (log,) = shown(cell(recorded, "%llm log 5"))
    assert log.splitlines()[0].split()[:4] == ["ID", "TIME", "SOURCE", "PROVIDER:MODEL"] and "cached" in log
    (usage,) = shown(cell(recorded, "%llm usage"))
    assert re.search(r"^this session\s+qwen\s+qwen-plus\s+3\s", usage, re.M)  # 3 live calls
    assert_no_keys(recorded, [key])

    saved = tmp_path / "recorded.ipynb"
    nbformat.write(recorded, saved)
    monkeypatch.setenv("NBLLM_LOG", str(tmp_path / "fresh-machine" / "logs.db"))
    done = nbllm_cli("cache", "import", str(saved))
    assert done.returncode == 0 and done.stdout.endswith(": 3 answer(s) imported, 1 already in the log\n")  # the repeat

    qwen.stop()  # no server, no key: replay must answer every cell from the imported log
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    monkeypatch.setenv("NBLLM_CACHE", "replay")
    replayed = execute(workdir, "reproducible-notebooks.ipynb")
    assert answers(replayed) == answers(recorded) and len(answers(replayed)) == 4
    assert all(provenance_of(c)["cached"] for c in replayed.cells if c.source.startswith("%%llm"))


def test_replay_miss_fails_the_cell_clearly(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("NBLLM_CACHE", "replay")
    with pytest.raises(CellExecutionError) as failed:
        execute(workdir, "reproducible-notebooks.ipynb")
    message = str(failed.value)
    assert "ReplayMissError" in message and f"asking {USES[:40]!r}"[:-1] in message
    assert "%%llm cell" in message and "NBLLM_CACHE=on" in message and "nbllm cache import NOTEBOOK" in message
