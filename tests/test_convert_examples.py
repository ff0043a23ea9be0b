"""The example notebooks in notebooks/legacy, the public surface and the libcst-free fast path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbllm.convert
from nbllm.convert.cli import run_argv
from tests.convert_fixtures.helpers import convert_cells, dedent, kinds

ROOT = Path(__file__).parents[1]
LEGACY = ROOT / "notebooks" / "legacy"


def test_public_surface() -> None:
    assert sorted(nbllm.convert.__all__) == ["BatchResult", "CellDiff", "FileResult", "Item", "TargetError",
                                             "convert_paths", "resolve_target"]


def test_example_notebooks_are_clean() -> None:
    """Shipped examples have no outputs, no execution counts and no key-shaped strings."""
    names = sorted(p.name for p in LEGACY.glob("*.ipynb"))
    assert len(names) == 6
    for name in names:
        text = (LEGACY / name).read_text(encoding="utf-8")
        assert "sk-" not in text
        for cell in json.loads(text)["cells"]:
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None


def test_readme_command_shows_the_expected_rewrites(capsys: pytest.CaptureFixture[str]) -> None:
    """`nbllm convert notebooks/legacy --to ernie --dry-run --diff`: the README's main example."""
    before = {p: p.read_bytes() for p in LEGACY.glob("*.ipynb")}
    assert run_argv([str(LEGACY), "--to", "ernie", "--dry-run", "--diff"]) == 0
    out = capsys.readouterr().out
    expected = [
        '+%pip install -q "openai>=1" tiktoken',
        '+client = openai.OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=os.getenv("QIANFAN_API_KEY"))',
        "+    response = client.chat.completions.create(",
        "+    return response.choices[0].message.content",
        '+    print((chunk.choices[0].delta.content or ""), end="")',
        "+except openai.RateLimitError:",
        '+    os.environ["QIANFAN_API_KEY"] = getpass("Enter your Baidu ERNIE (Qianfan v2) API key: ")',
        '+client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=os.environ["QIANFAN_API_KEY"])',
        '+GPT_MODEL = "ernie-4.5-turbo-128k"',
        '+encoding = tiktoken.encoding_for_model("gpt-4o")',
        '+    model="ernie-x1-turbo-32k",',
        "+    vector = resp.data[0].embedding",
        '+EMBEDDING_MODEL = "embedding-v1"',
        "check_embedding_ctx_length=False",
        "warning [responses-api] cell 5 line 1",
        "warning [no-equivalent] cell 6 line 1: images has no equivalent at ernie",
        "warning [skipped-cell] cell 7: cell left alone: %%bash cell (not Python)",
        "warning [embedding-size] cell 4 line 3",
        "warning [dotenv] cell 3 line 3",
        "would change      5",
        "unchanged         1",
    ]
    missing = [line for line in expected if line not in out]
    assert missing == []
    assert "05_pandas_no_openai.ipynb#cell" not in out
    assert "gpt-4-langchain-docs" not in out and '"model": "ada"' not in out
    assert {p: p.read_bytes() for p in LEGACY.glob("*.ipynb")} == before


def test_v0_resources_without_equivalent_and_engine_list() -> None:
    """Case 26/38: old Image calls move to v1 on OpenAI, marked; Engine.list -> client.models.list."""
    out, items = convert_cells("""
        import openai
        openai.Image.create(prompt="cat")
        engines = openai.Engine.list()
        r = openai.ChatCompletion.create(model="gpt-4", messages=[])
    """)
    assert 'openai.OpenAI().images.generate(prompt="cat")  # nbllm: still calls OpenAI' in out[0]
    assert "engines = client.models.list()" in out[0]
    assert "openai-only" in kinds(items)


def test_structured_output_parse_is_flagged() -> None:
    """Case 32: .parse with a schema is kept and reported."""
    code = """
        from openai import OpenAI
        client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=K)
        client.beta.chat.completions.parse(model="m", messages=[], response_format=Answer)
    """
    out, items = convert_cells(code)
    assert out == [dedent(code)]
    assert "structured-output" in kinds(items)


@pytest.mark.parametrize("code", [
    "import nbllm.convert",
    "from nbllm.convert import convert_paths\n"
    "r = convert_paths([{path!r}], 'ernie')\nassert r.results[0].status == 'unchanged', r",
])
def test_fast_path_never_imports_libcst(tmp_path: Path, code: str) -> None:
    """Importing the converter, or converting a notebook with no OpenAI text, leaves libcst unloaded."""
    path = ROOT / "notebooks" / "legacy" / "05_pandas_no_openai.ipynb"
    script = code.format(path=str(path)) + "\nimport sys\nassert 'libcst' not in sys.modules, 'libcst imported'\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_converter_package_is_packaged() -> None:
    """pyproject lists packages explicitly: nbllm.convert.codemods must be in it or the wheel lacks it."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nbllm" / "convert").rglob("__init__.py")}
    assert found - listed == set()
