"""Files and folders lose nothing: what a folder walk skips, links, backups, --output-dir clashes,
killed runs, FIFOs, exit codes and file names that cannot be printed as they are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbllm.convert import convert_paths
from nbllm.convert.cli import run_argv
from tests.convert_fixtures.helpers import notebook_json, write_notebook

OPENAI_CELL = "from openai import OpenAI\nclient = OpenAI()\n"


def _notebook(path: Path, source: str = OPENAI_CELL) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_notebook(path, notebook_json([source]))


def test_walk_skips_installed_and_generated_code(tmp_path: Path) -> None:
    mine = tmp_path / "work" / "mine.ipynb"
    _notebook(mine)
    skipped = {}
    for folder in ("venv/lib", ".venv", "env/site-packages/pkg", "node_modules/x", "build", "dist",
                   "a/.ipynb_checkpoints"):
        path = tmp_path / "work" / folder / "nb.ipynb"
        skipped[path] = _notebook(path)
    (tmp_path / "work" / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    batch = convert_paths([tmp_path / "work"], "ernie")
    assert [r.path for r in batch.results] == [str(mine)]
    assert all(path.read_bytes() == data for path, data in skipped.items())


def test_symlinked_notebook_stays_a_link_and_its_target_converts_once(tmp_path: Path) -> None:
    target = tmp_path / "real.ipynb"
    _notebook(target)
    link = tmp_path / "link.ipynb"
    link.symlink_to(target)
    batch = convert_paths([tmp_path], "ernie")
    assert len(batch.results) == 1 and batch.results[0].status == "changed"
    assert link.is_symlink() and "qianfan" in target.read_text("utf-8")
    named = tmp_path / "other.ipynb"
    _notebook(named)
    second = tmp_path / "second-link.ipynb"
    second.symlink_to(named)
    assert convert_paths([second], "ernie").results[0].status == "changed"
    assert second.is_symlink() and "qianfan" in named.read_text("utf-8")


def test_backup_keeps_the_first_original(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    original = _notebook(path)
    convert_paths([path], "ernie", backup=True)
    assert (tmp_path / "nb.ipynb.bak").read_bytes() == original
    _notebook(path, OPENAI_CELL + "client2 = OpenAI()\n")
    convert_paths([path], "qwen", backup=True)
    assert (tmp_path / "nb.ipynb.bak").read_bytes() == original


def test_output_dir_clashes_and_files_are_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a" / "nb.ipynb", tmp_path / "b" / "nb.ipynb"
    _notebook(a)
    _notebook(b)
    out = tmp_path / "out"
    assert run_argv([str(a), str(b), "--to", "ernie", "--output-dir", str(out)]) == 2
    assert "would be written to" in capsys.readouterr().err and not out.exists()
    afile = tmp_path / "taken"
    afile.write_text("x", encoding="utf-8")
    assert run_argv([str(a), "--to", "ernie", "--output-dir", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert run_argv([str(a), "--to", "ernie", "--report", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_fifo_named_like_a_notebook_is_skipped(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    [result] = convert_paths([tmp_path], "ernie").results
    assert result.status == "skipped" and "FIFO" in (result.reason or "")


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    _notebook(path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".nb.ipynb.{dead.pid}.abcd1234.nbllm-tmp"
    stale.write_text("half", encoding="utf-8")
    live = tmp_path / f".nb.ipynb.{os.getpid()}.abcd1234.nbllm-tmp"
    live.write_text("in use", encoding="utf-8")
    convert_paths([path], "ernie")
    assert not stale.exists() and live.exists()


def test_exit_codes_quiet_and_runtime_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.ipynb"
    _notebook(good)
    assert run_argv([str(good), "--to", "ernie", "-q"]) == 0
    assert capsys.readouterr().out == ""
    (tmp_path / "bad.ipynb").write_text("{", encoding="utf-8")
    assert run_argv([str(tmp_path), "--to", "ernie", "-q"]) == 1  # a file failed: runtime, not usage
    assert run_argv([str(good), "--to", "no-such-provider"]) == 2
    assert run_argv([str(good), "--to", "ernie", "--model", "gpt-4o"]) == 2


def test_names_with_control_characters_and_bad_bytes_are_printed_escaped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "a\x1b[31mred\n.ipynb"
    _notebook(odd)
    raw = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.ipynb")
    _notebook(Path(raw))
    report = tmp_path / "report.json"
    assert run_argv([str(tmp_path), "--to", "ernie", "--dry-run", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "a\\x1b[31mred\\n.ipynb" in out
    assert len(json.loads(report.read_text("utf-8"))["files"]) == 2


def test_nbformat_3_notebook_gets_an_upgrade_hint(tmp_path: Path) -> None:
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": []}],
                                "metadata": {}}), encoding="utf-8")
    [result] = convert_paths([path], "ernie").results
    assert result.status == "failed" and "nbformat 3" in (result.reason or "")
    assert "jupyter nbconvert --to notebook" in (result.reason or "")


def test_killing_the_parent_stops_its_workers(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    for n in range(400):
        _notebook(tmp_path / f"nb{n:03}.ipynb", OPENAI_CELL * 20)
    proc = subprocess.Popen([sys.executable, "-m", "nbllm", "convert", str(tmp_path), "--to", "ernie",
                             "--jobs", "2", "--dry-run", "-q"], stdout=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    workers: list = []
    while proc.poll() is None and len(workers) < 2:
        workers = parent.children()
        time.sleep(0.05)
    assert len(workers) == 2, "the run ended before its workers were seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
