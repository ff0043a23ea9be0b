"""``nbllm run`` against a hurried, hostile user: files that are not notebooks, odd options,
Ctrl-C mid-cell, a dying kernel, writes that fail. Same loopback ERNIE as tests/test_run.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbllm import run
from nbllm.cli import main
from nbllm.errors import NotebookWriteError
from tests.fakes.openai_server import FakeOpenAIServer
from tests.test_run import ernie  # noqa: F401 - the shared fixture


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder of its own (tmp_path also holds the test's config file)."""
    path = tmp_path / "work"
    path.mkdir()
    return path

pytestmark = pytest.mark.timeout(120)


def test_a_file_that_is_not_json_is_never_quoted(ernie: FakeOpenAIServer, tmp_path: Path,  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DB_PASSWORD=hunter2hunter2\nQIANFAN_AK=abcdefgh12345678\n", encoding="utf-8")
    assert main(["run", str(dotenv), "--to", "ernie"]) == 1
    err = capsys.readouterr().err
    assert f"{dotenv} could not be read as a notebook (it is not JSON)." in err
    assert "hunter2" not in err and "abcdefgh" not in err and "Traceback" not in err


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(ernie: FakeOpenAIServer,  # noqa: F811
                                                                  folder: Path, seconds: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    nbformat.write(nbformat.v4.new_notebook(), folder / "a.ipynb")
    assert main(["run", str(folder / "a.ipynb"), "--to", "ernie", "--timeout", seconds]) == 2
    assert "--timeout" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["a.ipynb"]


def test_a_failed_write_leaves_no_temporary_file(folder: Path) -> None:
    taken = folder / "out.ipynb"
    taken.mkdir()  # -o names a folder
    with pytest.raises(NotebookWriteError, match="could not be written to"):
        run._write(nbformat, nbformat.v4.new_notebook(), taken)
    assert [p.name for p in folder.iterdir()] == ["out.ipynb"] and list(taken.iterdir()) == []


def test_an_interrupted_write_leaves_no_temporary_file(folder: Path) -> None:
    class Interrupted:
        @staticmethod
        def write(nb: Any, handle: Any) -> None:
            handle.write('{"cells": [')
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run._write(Interrupted, nbformat.v4.new_notebook(), folder / "out.ipynb")
    assert list(folder.iterdir()) == []


def test_the_executed_copy_keeps_the_files_mode(tmp_path: Path) -> None:
    same = tmp_path / "in.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), same)
    os.chmod(same, 0o644)
    run._write(nbformat, nbformat.v4.new_notebook(), same)  # --output names the input
    assert same.stat().st_mode & 0o777 == 0o644
    umask = os.umask(0o022)
    try:
        run._write(nbformat, nbformat.v4.new_notebook(), tmp_path / "new.ipynb")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.ipynb").stat().st_mode & 0o777 == 0o644


def test_an_nbformat_3_notebook_without_a_kernelspec_runs(ernie: FakeOpenAIServer, tmp_path: Path,  # noqa: F811
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": "import openai\nr = openai.OpenAI().chat.completions.create(model='gpt-4o', "
         "messages=[{'role': 'user', 'content': 'hi'}])\nprint(r.choices[0].message.content)", "language": "python",
         "outputs": [], "metadata": {}}], "metadata": {}}]}
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(v3), encoding="utf-8")
    assert main(["run", str(path), "--to", "ernie"]) == 0, capsys.readouterr().err
    executed = nbformat.read(tmp_path / "old.ernie.ipynb", as_version=4)
    assert executed.nbformat == 4 and executed.cells[0].outputs[-1].text == "echo: hi\n"
    assert [r.json["model"] for r in ernie.requests] == ["ernie-4.5-turbo-128k"]


def test_a_dying_kernel_is_named_with_its_last_words(ernie: FakeOpenAIServer, tmp_path: Path,  # noqa: F811
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cell = "import os\nos.write(2, b'fatal: out of memory in the kernel\\n')\nos._exit(3)"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), tmp_path / "dies.ipynb")
    assert main(["run", str(tmp_path / "dies.ipynb"), "--to", "ernie"]) == 1
    err = capsys.readouterr().err
    assert "cell 1 " in err and "the kernel died (fatal: out of memory in the kernel)" in err


def test_ctrl_c_mid_cell_exits_130_without_a_traceback_or_a_file(ernie: FakeOpenAIServer,  # noqa: F811
                                                                 folder: Path) -> None:
    started = folder / "started"
    cell = f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(60)"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), folder / "slow.ipynb")
    proc = subprocess.Popen([sys.executable, "-m", "nbllm", "run", str(folder / "slow.ipynb"), "--to", "ernie"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # wait (at most ~60 s) until the cell runs
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "nbllm: interrupted" in err and "Traceback" not in err and out == ""
    assert sorted(p.name for p in folder.iterdir() ) == ["slow.ipynb", "started"]


def test_cells_after_the_failing_one_keep_no_stale_outputs(ernie: FakeOpenAIServer, tmp_path: Path,  # noqa: F811
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    old = nbformat.v4.new_code_cell("print('answer from OpenAI')", execution_count=7,
                                    outputs=[nbformat.v4.new_output("stream", text="nbllm redirect: gpt-4 -> old\n"
                                                                    "the answer OpenAI gave last month\n")])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0"), old])
    nbformat.write(nb, tmp_path / "stale.ipynb")
    assert main(["run", str(tmp_path / "stale.ipynb"), "--to", "ernie"]) == 1
    assert "models mapped: none" in capsys.readouterr().err
    executed = nbformat.read(tmp_path / "stale.ernie.ipynb", as_version=4)
    assert executed.cells[1].outputs == [] and executed.cells[1].execution_count is None
    assert executed.cells[1].source == old.source


def test_no_key_reaches_the_terminal_or_the_saved_copy(ernie: FakeOpenAIServer, tmp_path: Path,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_run import OPENAI_KEY

    wrong = "bce-v3-wrong-run-key-9d8c7b"
    monkeypatch.setenv("QIANFAN_API_KEY", wrong)  # the fake answers 401 and echoes what it got
    cells = ["from nbllm.redirect import active, status\nprint(repr(active()), status())",
             "import openai\nopenai.OpenAI(max_retries=0).chat.completions.create(model='gpt-4o', "
             "messages=[{'role': 'user', 'content': 'hi'}])"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), tmp_path / "k.ipynb")
    assert main(["run", str(tmp_path / "k.ipynb"), "--to", "ernie"]) == 1
    captured = capsys.readouterr()
    saved = (tmp_path / "k.ernie.ipynb").read_text(encoding="utf-8")
    assert "AuthenticationError" in captured.err and "AuthenticationError" in saved
    for key in (wrong, OPENAI_KEY):
        assert key not in captured.out + captured.err and key not in saved
