"""``nbllm convert``: every option and exit code, through the real argument parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nbllm.cli import main
from nbllm.convert.cli import run_argv
from nbllm.convert.report import diff_text
from tests.convert_fixtures.helpers import notebook_json, write_notebook

ROOT = Path(__file__).parents[1]
CLIENT = "from openai import OpenAI\nclient = OpenAI()\nr = client.chat.completions.create(model='gpt-4o', messages=[])"
SECRET = "sk-" + "Zq9x" * 8


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "a.ipynb", notebook_json([CLIENT, "print(r.choices[0].message.content)"]))
    write_notebook(folder / "b.ipynb", notebook_json(["import pandas as pd"]))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dry_run_diff_prints_cell_labels_and_writes_nothing(nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(nbdir)
    assert run_argv([str(nbdir), "--to", "ernie", "--dry-run", "--diff"]) == 0
    out = capsys.readouterr().out
    assert f"--- a/{nbdir / 'a.ipynb'}#cell-1\n+++ b/{nbdir / 'a.ipynb'}#cell-1\n" in out
    assert "-client = OpenAI()\n" in out and "+r = client.chat.completions.create(model='ernie-4.5-turbo-128k'" in out
    assert "\033[" not in out  # not a terminal: no colour
    assert "would change      1" in out and "unchanged         1" in out
    assert snapshot(nbdir) == before


def test_diff_colours_on_a_terminal(nbdir: Path) -> None:
    from nbllm.convert import convert_paths

    result = convert_paths([nbdir / "a.ipynb"], "ernie", dry_run=True).results[0]
    coloured = diff_text(result, color=True)
    assert "\033[31m-client = OpenAI()\033[0m\n" in coloured and "\033[32m+" in coloured


def test_check_exits_1_on_changes_and_0_when_converted(nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(nbdir)
    assert run_argv([str(nbdir), "--to", "ernie", "--check"]) == 1
    assert snapshot(nbdir) == before
    assert run_argv([str(nbdir), "--to", "ernie"]) == 0
    assert snapshot(nbdir) != before
    assert run_argv([str(nbdir), "--to", "ernie", "--check"]) == 0
    assert "unchanged         2" in capsys.readouterr().out


def test_quiet_check_prints_nothing_when_clean(nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_argv([str(nbdir), "--to", "ernie", "--quiet"])
    capsys.readouterr()
    assert run_argv([str(nbdir), "--to", "ernie", "--check", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_model_override_and_report_file(nbdir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code = run_argv([str(nbdir), "--to", "qwen", "--model", "gpt-4o=qwen3-max", "--report", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    assert data["target"] == "qwen" and data["summary"] == {"changed": 1, "unchanged": 1, "skipped": 0, "failed": 0}
    assert "gpt-4o -> qwen3-max (--model)" in data["model_map"]
    [a] = [f for f in data["files"] if f["path"].endswith("a.ipynb")]
    assert {"kind": "model", "message": "gpt-4o -> qwen3-max (override)", "cell": 1, "line": 3} in a["changes"]
    assert a["cells_changed"] == [1] and a["written"] == a["path"]
    assert "model='qwen3-max'" in (nbdir / "a.ipynb").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--to", "ernei"], "Did you mean 'ernie'"),
    (["--to", "ollama"], "OpenAI-compatible targets:"),
    (["--to", "ernie", "--model", "gpt-4o"], "--model expects OLD=NEW"),
    (["--to", "ernie", "--jobs", "0"], "--jobs must be at least 1"),
])
def test_usage_errors_exit_2(nbdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    before = snapshot(nbdir)
    assert run_argv([str(nbdir), *argv]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(nbdir) == before


def test_non_openai_target_names_the_valid_ones(nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_argv([str(nbdir), "--to", "ernie-v1"]) == 2
    err = capsys.readouterr().err
    assert "ernie protocol" in err and "ernie, " in err and "qwen" in err and "ollama" not in err.split(":")[-1]


def test_missing_path_and_missing_to_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_argv([str(tmp_path / "nope.ipynb"), "--to", "ernie"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert run_argv([str(tmp_path)]) == 2
    assert "--to" in capsys.readouterr().err


def test_failed_notebook_exits_1_and_the_rest_is_converted(nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (nbdir / "broken.ipynb").write_text("{not json", encoding="utf-8")
    assert run_argv([str(nbdir), "--to", "ernie"]) == 1
    out = capsys.readouterr().out
    assert "failed    " in out and "broken.ipynb: " in out and "failed            1" in out
    assert "base_url=" in (nbdir / "a.ipynb").read_text()


def test_custom_provider_from_config_is_a_valid_target(nbdir: Path) -> None:
    config = Path(os.environ["NBLLM_CONFIG"])
    config.write_text('[providers.gateway]\nbase_url = "http://10.1.2.3:8000/v1"\nkey_env = "GATEWAY_KEY"\n'
                      'models = ["qwen2.5-72b-instruct"]\n', encoding="utf-8")
    assert run_argv([str(nbdir), "--to", "gateway"]) == 0
    text = json.loads((nbdir / "a.ipynb").read_text())["cells"][0]["source"]
    assert "".join(text) == ('import os\nfrom openai import OpenAI\nclient = OpenAI(base_url="http://10.1.2.3:8000/v1",'
                             ' api_key=os.environ["GATEWAY_KEY"])\nr = client.chat.completions.create('
                             "model='qwen2.5-72b-instruct', messages=[])")


def test_jobs_gives_the_same_results(tmp_path: Path) -> None:
    src = ROOT / "notebooks" / "legacy"
    reports = []
    for jobs in (1, 2):
        work = tmp_path / f"j{jobs}"
        work.mkdir()
        for nb in src.glob("*.ipynb"):
            (work / nb.name).write_bytes(nb.read_bytes())
        report = tmp_path / f"r{jobs}.json"
        assert run_argv([str(work), "--to", "glm", "--jobs", str(jobs), "--report", str(report)]) == 0
        data = json.loads(report.read_text())
        for f in data["files"]:
            f["path"] = Path(f["path"]).name
            f["written"] = f["written"] and Path(f["written"]).name
        reports.append((data, snapshot(work)))
    assert reports[0] == reports[1]


def test_keep_v0_backup_output_dir_and_clear_outputs(tmp_path: Path) -> None:
    nb = notebook_json(["import openai\nr = openai.ChatCompletion.create(model='gpt-4', messages=[])"])
    nb["cells"][0]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["old\n"]}]
    path = tmp_path / "src" / "v0.ipynb"
    path.parent.mkdir()
    original = write_notebook(path, nb)
    out = tmp_path / "out"
    assert run_argv([str(path.parent), "--to", "ernie", "--keep-v0", "--output-dir", str(out), "--clear-outputs"]) == 0
    converted = json.loads((out / "v0.ipynb").read_text())["cells"][0]
    assert "openai.ChatCompletion.create(model='ernie-4.5-turbo-128k'" in "".join(converted["source"])
    assert "openai.api_base = " in "".join(converted["source"]) and converted["outputs"] == []
    assert path.read_bytes() == original
    assert run_argv([str(path), "--to", "ernie", "--backup"]) == 0
    assert path.with_name("v0.ipynb.bak").read_bytes() == original
    assert "client.chat.completions.create" in path.read_text()


def test_keys_never_reach_the_terminal_or_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k.ipynb"
    write_notebook(path, notebook_json([f"from openai import OpenAI\nclient = OpenAI(api_key='{SECRET}')",
                                        f"%env OPENAI_API_KEY={SECRET}"]))
    report = tmp_path / "r.json"
    assert run_argv([str(path), "--to", "ernie", "--diff", "--report", str(report)]) == 0
    captured = capsys.readouterr()
    assert "sk-***" in captured.out
    for text in (captured.out, captured.err, report.read_text(), path.read_text()):
        assert SECRET not in text and SECRET[3:12] not in text


def test_nbllm_cli_and_module_entry_points(nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(nbdir), "--to", "ernie", "--check"]) == 1
    assert "would change      1" in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "nbllm.convert", str(nbdir), "--to", "ernie", "--dry-run"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "would change      1" in proc.stdout


def test_pre_commit_hook_definition() -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "nbllm-convert-check"
    assert hook["entry"].startswith("nbllm convert --check") and hook["language"] == "python"
    assert set(hook["types_or"]) == {"jupyter", "python"}


def test_progress_bar_only_on_a_terminal() -> None:
    """tqdm's bar on a terminal, nothing on a pipe."""
    import io

    from nbllm.convert.report import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(stream=stream, minimum=2)
        bar(1, 4, "a.ipynb")
        bar(4, 4, "d.ipynb")
    assert "/4 [" in tty.getvalue() and "file/s" in tty.getvalue()  # tqdm's bar
    assert tty.getvalue().endswith("\r")  # cleared at the end (leave=False)
    assert pipe.getvalue() == ""
