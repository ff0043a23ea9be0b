"""The README's commands and snippets, run offline against loopback servers, so the README cannot rot.

Every code block in README.md is preceded by an HTML comment saying how it is checked
(CONTRIBUTING.md documents the convention):

    <!-- readme-test: shell [fresh] [exit=N] [expect="..."]... -->   each line runs in bash
    <!-- readme-test: output -->                 each line of this text block is printed by the shell block before it
    <!-- readme-test: ipython [expect="..."]... -->  one cell in a real IPython shell shared by all ipython blocks
    <!-- readme-test: config -->                 a config.toml that nbllm must load
    <!-- readme-test: toml -->                   TOML that must parse
    <!-- readme-test: skip reason="..." -->      not runnable offline (installs, the test suite itself, your machine's settings)

Shell commands run in a copy of notebooks/ with every provider routed to a loopback server; an
install before ``&&`` is dropped (CI installs the project the README's way already), and
``fresh`` runs a block with no provider configured at all, as on a new machine. README.zh-CN.md
must carry exactly the same blocks and markers, and both provider tables must match the catalogue.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import pytest

from nbllm.config import default_target, load_specs
from nbllm.providers.catalog import BUILTIN, ProviderSpec
from tests.conftest import UseFake
from tests.fakes.batch_server import FakeBatchServer
from tests.fakes.ollama_server import FakeOllamaServer
from tests.magics_shell import Shell, open_shell

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
READMES = (ROOT / "README.md", ROOT / "README.zh-CN.md")
KINDS = {"shell", "output", "ipython", "config", "toml", "skip"}
CHECKED_LANGS = {"bash", "sh", "shell", "python", "toml"}
INSTALL = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:pip|apt-get)\s+install\b")

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<kind>[\w-]+)(?P<attrs>.*?)-->\s*$")
_ATTR = re.compile(r'(\w+)(?:="([^"]*)")?')


@dataclass
class Block:
    """One fenced code block and the marker above it."""

    readme: str
    line: int
    lang: str
    code: str
    kind: str | None
    attrs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.readme}:{self.line}"

    def attr(self, name: str, default: str = "") -> str:
        return self.attrs.get(name, [default])[-1]


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        before = [line for line in text[: m.start()].splitlines() if line.strip()]
        marker = _MARKER.search(before[-1]) if before else None
        attrs: dict[str, list[str]] = {}
        for name, value in _ATTR.findall(marker.group("attrs") if marker else ""):
            attrs.setdefault(name, []).append(value)
        found.append(Block(path.name, text.count("\n", 0, m.start()) + 1, m.group("lang"), m.group("code"),
                           marker.group("kind") if marker else None, attrs))
    return found


# -- structure ------------------------------------------------------------------------------------
@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_every_code_block_says_how_it_is_checked(readme: Path) -> None:
    found = blocks(readme)
    assert len(found) >= 10
    for block in found:
        if block.lang in CHECKED_LANGS:
            assert block.kind in KINDS, f"{block.where}: a {block.lang} block needs a <!-- readme-test: ... --> marker"
        if block.kind == "skip":
            assert block.attr("reason"), f"{block.where}: say why the block cannot run offline"


def test_chinese_readme_has_the_same_blocks_as_the_english_one() -> None:
    english, chinese = (blocks(p) for p in READMES)
    assert [(b.kind, b.attrs, b.lang, b.code) for b in chinese] == [(b.kind, b.attrs, b.lang, b.code) for b in english]


def _table(readme: Path) -> dict[str, list[str]]:
    """The provider table: id -> cells."""
    rows = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0].strip("`")] = cells
    return rows


def _names(spec: ProviderSpec) -> set[str]:
    return {*spec.key_env, *spec.secret_env, *spec.headers_from_env.values()}


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_provider_table_matches_the_catalogue(readme: Path) -> None:
    rows = _table(readme)
    assert list(rows) == [spec.id for spec in BUILTIN]
    for spec in BUILTIN:
        _, _, keys, url, model = rows[spec.id]
        assert set(re.findall(r"`([A-Z][A-Z0-9_]+)`", keys)) == _names(spec), spec.id
        assert model == f"`{spec.default_model}`", spec.id
        if spec.base_url:
            assert f"`{spec.base_url}`" in url, spec.id
        for env in filter(None, [spec.base_url_env]):
            assert f"`{env}`" in url, spec.id


# -- running the blocks ---------------------------------------------------------------------------
@dataclass
class Runner:
    """Runs the README's blocks in order; ipython blocks share one shell like notebook cells."""

    workdir: Path
    fresh_env: dict[str, str]
    routed_env: dict[str, str]
    shell: Shell
    secrets: list[str]
    last_output: str = ""

    def run(self, block: Block) -> None:
        handler = {"shell": self.shell_block, "output": self.output_block, "ipython": self.ipython_block,
                   "config": self.config_block, "toml": self.toml_block}.get(block.kind or "")
        if handler is not None:
            handler(block)

    def shell_block(self, block: Block) -> None:
        env = self.fresh_env if "fresh" in block.attrs else self.routed_env
        outputs = []
        for command in (line.strip() for line in block.code.splitlines()):
            if not command or command.startswith("#"):
                continue
            command = runnable(command)
            done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.workdir, env=env,
                                  capture_output=True, text=True, timeout=180)
            output = done.stdout + done.stderr
            assert done.returncode == int(block.attr("exit", "0")), f"{block.where}: `{command}` said:\n{output}"
            outputs.append(output)
        self.check(block, "".join(outputs))

    def output_block(self, block: Block) -> None:
        printed = {line.rstrip() for line in self.last_output.splitlines()}
        for line in filter(str.strip, block.code.splitlines()):
            assert line.rstrip() in printed, f"{block.where}: {line!r} is not printed by the command above it"

    def ipython_block(self, block: Block) -> None:
        cell = self.shell.run(block.code)
        assert cell.error is None, f"{block.where}: {cell.error!r}\n{cell.stdout}{cell.stderr}"
        shown = [d["data"].get(mime, "") for d in cell.displays for mime in ("text/plain", "text/markdown")]
        self.check(block, cell.stdout + cell.stderr + "\n".join(shown))

    def config_block(self, block: Block) -> None:
        """Loaded as on a fresh machine: no NBLLM_<ID>_BASE_URL overriding the file."""
        config = tomllib.loads(block.code)
        with patch.dict(os.environ, self.fresh_env, clear=True):
            specs = load_specs(config)
            default = default_target(config)
        for pid, table in config.get("providers", {}).items():
            assert specs[pid].base_url == table["base_url"], block.where
            assert specs[pid].openai_compatible, block.where
        assert default == config.get("default", "ernie"), block.where

    def toml_block(self, block: Block) -> None:
        tomllib.loads(block.code)

    def check(self, block: Block, output: str) -> None:
        for secret in self.secrets:
            assert secret not in output, f"{block.where}: a key reached the output"
        for text in block.attrs.get("expect", []):
            assert text in output, f"{block.where}: {text!r} not in:\n{output}"
        self.last_output = output


def runnable(command: str) -> str:
    """The command without a leading install (``pip install -e . && nbllm ...`` -> ``nbllm ...``)."""
    parts = command.split(" && ")
    while len(parts) > 1 and INSTALL.match(parts[0]):
        parts.pop(0)
    return " && ".join(parts)


@pytest.fixture
def runner(tmp_path: Path, capsys: pytest.CaptureFixture[str], use_fake: UseFake,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    workdir = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", workdir / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    config = tmp_path / "nbllm-readme-config.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("NBLLM_CONFIG", str(config))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    fresh = dict(os.environ)
    with FakeBatchServer() as server, FakeOllamaServer() as ollama:  # the OpenAI fake, plus embeddings
        secrets = [use_fake(spec.id, server) for spec in BUILTIN if spec.dialect == "openai" and spec.key_env]
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        shells = open_shell(capsys)
        shell = next(shells)
        shell.secrets.extend(secrets)
        yield Runner(workdir, fresh, dict(os.environ), shell, secrets)
        shells.close()


def test_readme_blocks_run(runner: Runner) -> None:
    ran = [block for block in blocks(READMES[0]) if block.kind not in (None, "skip")]
    for block in ran:
        runner.run(block)
    kinds = [block.kind for block in ran]
    assert kinds.count("shell") >= 4 and kinds.count("ipython") >= 6 and "config" in kinds
    assert (runner.workdir / "converted").is_dir() and (runner.workdir / "report.json").is_file()


def test_the_first_fresh_machine_command_is_the_dry_run_conversion() -> None:
    first = next(b for b in blocks(READMES[0]) if b.kind == "shell")
    assert "fresh" in first.attrs
    assert runnable(first.code.strip()) == "nbllm convert notebooks/legacy --to ernie --dry-run --diff"
