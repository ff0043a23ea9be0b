"""Notebook-level behaviour: bytes kept, atomic writes, per-notebook failures, outputs policy."""

from __future__ import annotations

import copy
import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nbllm.convert.notebook as notebook_io
from nbllm.convert import convert_paths
from tests.convert_fixtures.helpers import FIXTURES, lines, notebook_json, write_notebook

CLIENT = ["from openai import OpenAI\n", "client = OpenAI()"]
CONVERTED = ["import os\n", "from openai import OpenAI\n",
             'client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=os.environ["QIANFAN_API_KEY"])']


def _with_source(nb: dict[str, Any], index: int, source: Any) -> dict[str, Any]:
    out = copy.deepcopy(nb)
    out["cells"][index]["source"] = source
    return out


def _rich_notebook() -> dict[str, Any]:
    """Markdown in Chinese, outputs, attachments, odd key order, a missing and a duplicate id."""
    nb = notebook_json(["print('你好')", CLIENT, "x = 1"], orig_nbformat=4)
    nb["cells"].insert(0, {"attachments": {"a.png": {"image/png": "iVBORw0KGgo="}}, "cell_type": "markdown",
                           "id": "c0", "metadata": {}, "source": ["# 标题\n", "![a](attachment:a.png)"]})
    nb["cells"][1]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["你好\n"]}]
    nb["cells"][1]["execution_count"] = 1
    nb["cells"][2]["outputs"] = [{"data": {"text/plain": ["1.0e-7"]}, "execution_count": 3, "metadata": {},
                                  "output_type": "execute_result"}]
    nb["cells"][2]["execution_count"] = 3
    nb["cells"][2] = {"source": nb["cells"][2].pop("source"), **nb["cells"][2]}  # source first: own key order
    del nb["cells"][3]["id"]
    return nb


@pytest.mark.parametrize("indent", [1, 2])
@pytest.mark.parametrize("ensure_ascii", [False, True])
@pytest.mark.parametrize("newline", [True, False])
def test_changed_notebook_keeps_its_own_serialisation(tmp_path: Path, indent: int, ensure_ascii: bool,
                                                      newline: bool) -> None:
    """Case 30: only the rewritten source differs; indent, escapes, key order, newline, ids, outputs stay."""
    path = tmp_path / "nb.ipynb"
    nb = _rich_notebook()
    write_notebook(path, nb, indent=indent, ensure_ascii=ensure_ascii, newline=newline)
    batch = convert_paths([path], "ernie")
    assert [r.status for r in batch.results] == ["changed"]
    expected = json.dumps(_with_source(nb, 2, CONVERTED), indent=indent, ensure_ascii=ensure_ascii)
    assert path.read_text(encoding="utf-8") == expected + ("\n" if newline else "")


def test_string_sources_stay_strings(tmp_path: Path) -> None:
    """A source stored as one string is written back as one string."""
    path = tmp_path / "nb.ipynb"
    nb = notebook_json(["".join(CLIENT)])
    write_notebook(path, nb)
    convert_paths([path], "ernie")
    assert json.loads(path.read_text())["cells"][0]["source"] == "".join(CONVERTED)


def test_nbformat_written_notebook_changes_only_in_converted_cells(tmp_path: Path) -> None:
    """A notebook saved by nbformat (sorted keys, indent 1) differs only inside rewritten sources."""
    src = Path(__file__).parents[1] / "notebooks" / "legacy" / "02_client_v1_helpers.ipynb"
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes())
    result = convert_paths([path], "qwen").results[0]
    before, after = json.loads(src.read_text()), json.loads(path.read_text())
    changed = {d.cell - 1 for d in result.diffs}
    for i, (a, b) in enumerate(zip(before["cells"], after["cells"], strict=True)):
        assert (a == b) == (i not in changed)
        assert {k: v for k, v in a.items() if k != "source"} == {k: v for k, v in b.items() if k != "source"}
    expected = copy.deepcopy(after)
    assert path.read_text() == json.dumps(expected, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def test_unchanged_notebook_is_never_written(tmp_path: Path) -> None:
    """Case 1: no OpenAI use -> same bytes and same mtime (no write at all)."""
    path = tmp_path / "plain.ipynb"
    data = write_notebook(path, notebook_json(["%matplotlib inline\nimport pandas as pd", "pd.DataFrame()"]),
                          indent=2)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    batch = convert_paths([path], "ernie")
    assert batch.results[0].status == "unchanged"
    assert path.read_bytes() == data and path.stat().st_mtime == 1_000_000_000


def test_second_conversion_changes_nothing(tmp_path: Path) -> None:
    """Case 34: converting a converted notebook leaves it byte-identical."""
    src = Path(__file__).parents[1] / "notebooks" / "legacy"
    for name in ("01_chat_completion_openai028.ipynb", "03_langchain_rag.ipynb", "06_tools_and_limits.ipynb"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    first = convert_paths([tmp_path], "ernie")
    assert [r.status for r in first.results] == ["changed"] * 3
    snapshot = {p: p.read_bytes() for p in tmp_path.iterdir()}
    second = convert_paths([tmp_path], "ernie")
    assert [r.status for r in second.results] == ["unchanged"] * 3
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == snapshot


def test_outputs_are_kept_by_default_and_cleared_on_request(tmp_path: Path) -> None:
    """Case 36: stale outputs of rewritten cells stay unless --clear-outputs; other cells keep theirs."""
    nb = _rich_notebook()
    nb["cells"][2]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["old answer\n"]}]
    keep, clear = tmp_path / "keep.ipynb", tmp_path / "clear.ipynb"
    write_notebook(keep, nb)
    write_notebook(clear, nb)
    convert_paths([keep], "ernie")
    convert_paths([clear], "ernie", clear_outputs=True)
    kept, cleared = json.loads(keep.read_text()), json.loads(clear.read_text())
    assert kept["cells"][2]["outputs"] == nb["cells"][2]["outputs"] and kept["cells"][2]["execution_count"] == 3
    assert cleared["cells"][2]["outputs"] == [] and cleared["cells"][2]["execution_count"] is None
    assert cleared["cells"][1]["outputs"] == nb["cells"][1]["outputs"]


@pytest.mark.parametrize(("content", "reason"), [
    ('{"cells": [', "not valid JSON"),
    ('{"hello": "world"}', "not a Jupyter notebook"),
    ('{"nbformat": 3, "nbformat_minor": 0, "cells": [], "metadata": {}}', "nbformat 3"),
    ("\xff\xfe", "not valid JSON"),
])
def test_bad_files_fail_alone_and_stay_untouched(tmp_path: Path, content: str, reason: str) -> None:
    """Corrupt JSON, non-notebooks and nbformat<4 fail with a clear reason; the batch goes on."""
    bad, good = tmp_path / "a_bad.ipynb", tmp_path / "b_good.ipynb"
    bad.write_text(content, encoding="utf-8")
    before = bad.read_bytes()
    write_notebook(good, notebook_json([CLIENT]))
    batch = convert_paths([tmp_path], "ernie")
    assert [r.status for r in batch.results] == ["failed", "changed"]
    assert reason in (batch.results[0].reason or "") and "untouched" in (batch.results[0].reason or "")
    assert bad.read_bytes() == before


def test_read_only_notebook_is_reported_not_replaced(tmp_path: Path) -> None:
    """os.replace would overwrite a read-only file; nbllm refuses and reports it."""
    path = tmp_path / "ro.ipynb"
    data = write_notebook(path, notebook_json([CLIENT]))
    path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    result = convert_paths([path], "ernie").results[0]
    assert result.status == "failed" and "read-only" in (result.reason or "")
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IRUSR | stat.S_IRGRP


def test_vanished_notebook_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    """A file that disappears before it is read fails alone; the others are converted."""
    from nbllm.convert.api import resolve_target
    from nbllm.convert.runner import Options, convert_file, run_batch

    good = tmp_path / "good.ipynb"
    write_notebook(good, notebook_json([CLIENT]))
    results = run_batch([(tmp_path / "gone.ipynb", tmp_path), (good, tmp_path)], Options(resolve_target("ernie")))
    assert [r.status for r in results] == ["failed", "changed"]
    assert "vanished" in (results[0].reason or "")
    assert convert_file(tmp_path / "gone.py", tmp_path, Options(resolve_target("ernie"))).status == "failed"


def test_full_disk_leaves_the_original_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write (ENOSPC) is a per-notebook failure; the old file is intact, the temp file removed."""
    (tmp_path / "work").mkdir()
    path = tmp_path / "work" / "nb.ipynb"
    data = write_notebook(path, notebook_json([CLIENT]))

    def full(fh: Any, data: bytes) -> None:
        fh.write(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(notebook_io, "_write_bytes", full)
    result = convert_paths([path], "ernie").results[0]
    assert result.status == "failed" and "No space left on device" in (result.reason or "")
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["nb.ipynb"]


def test_killed_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    """A process killed while writing leaves the original notebook intact (temp file + os.replace)."""
    path = tmp_path / "nb.ipynb"
    data = write_notebook(path, notebook_json([CLIENT, "print(client)"]))
    script = f"""
import os, signal, sys
import nbllm.convert.notebook as io
def half(fh, data):
    fh.write(data[: len(data) // 2]); fh.flush(); os.kill(os.getpid(), signal.SIGKILL)
io._write_bytes = half
from nbllm.convert import convert_paths
convert_paths([{str(path)!r}], "ernie")
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert path.read_bytes() == data


def test_backup_and_output_dir(tmp_path: Path) -> None:
    """--backup keeps NAME.ipynb.bak; --output-dir writes copies under DIR with relative paths."""
    (tmp_path / "src" / "sub").mkdir(parents=True)
    a, b = tmp_path / "src" / "a.ipynb", tmp_path / "src" / "sub" / "b.ipynb"
    data = write_notebook(a, notebook_json([CLIENT]))
    write_notebook(b, notebook_json([CLIENT]))
    out = tmp_path / "out"
    batch = convert_paths([tmp_path / "src"], "ernie", output_dir=out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.ipynb")) == ["a.ipynb", "sub/b.ipynb"]
    assert a.read_bytes() == data and batch.results[0].written == str(out / "a.ipynb")
    convert_paths([a], "ernie", backup=True)
    assert (tmp_path / "src" / "a.ipynb.bak").read_bytes() == data
    assert json.loads(a.read_text())["cells"][0]["source"] == CONVERTED


def test_dry_run_writes_nothing_but_reports_diffs(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    data = write_notebook(path, notebook_json([CLIENT]))
    result = convert_paths([path], "ernie", dry_run=True).results[0]
    assert result.status == "changed" and result.written is None and path.read_bytes() == data
    assert [(d.cell, d.after) for d in result.diffs] == [(1, "".join(CONVERTED))]


def test_non_python_notebooks_and_cells_are_skipped_with_a_reason(tmp_path: Path) -> None:
    """Case 25: a C# notebook is skipped; a polyglot cell in another language is left and reported."""
    cs = notebook_json(['var client = new OpenAIClient("key");'])
    cs["metadata"]["kernelspec"] = {"display_name": ".NET (C#)", "language": "C#", "name": ".net-csharp"}
    write_notebook(tmp_path / "a.ipynb", cs)
    mixed = notebook_json(["from openai import OpenAI\nclient = OpenAI()", "SELECT * FROM openai_calls"])
    mixed["cells"][1]["metadata"] = {"vscode": {"languageId": "sql"}}
    write_notebook(tmp_path / "b.ipynb", mixed)
    a, b = convert_paths([tmp_path], "ernie").results
    assert (a.status, a.reason) == ("skipped", "c# notebook (not Python)")
    assert b.status == "changed" and [(w.kind, w.cell) for w in b.warnings] == [("skipped-cell", 2)]
    assert json.loads((tmp_path / "b.ipynb").read_text())["cells"][1]["source"] == "SELECT * FROM openai_calls"


def test_unparseable_cell_is_reported_in_the_result(tmp_path: Path) -> None:
    """Case 29: the broken cell is named in the warnings; the other cells are converted."""
    path = tmp_path / "nb.ipynb"
    write_notebook(path, notebook_json([CLIENT, "client.chat.completions.create(model='gpt-4'"]))
    result = convert_paths([path], "ernie").results[0]
    assert result.status == "changed"
    assert [(w.kind, w.cell) for w in result.warnings] == [("skipped-cell", 2)]
    assert "does not parse" in result.warnings[0].message


def test_sibling_module_calling_openai_is_named(tmp_path: Path) -> None:
    """Case 37: a notebook importing helpers.py, which calls OpenAI, gets a warning naming it."""
    (tmp_path / "helpers.py").write_text((FIXTURES / "helper_module.py").read_text())
    write_notebook(tmp_path / "nb.ipynb", notebook_json(["from helpers import ask\nprint(ask('hi'))"]))
    batch = convert_paths([tmp_path / "nb.ipynb"], "ernie")
    [warning] = batch.results[0].warnings
    assert warning.kind == "sibling-module" and "helpers" in warning.message and warning.cell == 1


def test_python_files_are_converted_too(tmp_path: Path) -> None:
    """Plain .py helper modules get the same codemods, written atomically."""
    path = tmp_path / "helpers.py"
    path.write_text((FIXTURES / "helper_module.py").read_text())
    result = convert_paths([tmp_path], "kimi").results[0]
    assert result.status == "changed"
    text = path.read_text()
    assert 'base_url="https://api.moonshot.cn/v1"' in text and 'os.environ["MOONSHOT_API_KEY"]' in text
    assert 'model: str = "kimi-k2-0905-preview"' in text and all(i.cell is None for i in result.items)


def test_checkpoints_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".ipynb_checkpoints").mkdir()
    write_notebook(tmp_path / ".ipynb_checkpoints" / "nb-checkpoint.ipynb", notebook_json([CLIENT]))
    write_notebook(tmp_path / "nb.ipynb", notebook_json(lines("x = 1")))
    assert [Path(r.path).name for r in convert_paths([tmp_path], "ernie").results] == ["nb.ipynb"]


def test_crlf_notebook_keeps_crlf(tmp_path: Path) -> None:
    """A notebook saved with Windows line endings gets CRLF inside the rewritten source list too."""
    path = tmp_path / "win.ipynb"
    nb = notebook_json([CLIENT, "x = 1"])
    path.write_bytes((json.dumps(nb, indent=1) + "\n").replace("\n", "\r\n").encode())
    assert convert_paths([path], "ernie").results[0].status == "changed"
    expected = (json.dumps(_with_source(nb, 0, CONVERTED), indent=1) + "\n").replace("\n", "\r\n")
    assert path.read_bytes() == expected.encode()


def test_writefile_cell_with_openai_is_reported(tmp_path: Path) -> None:
    """A %%writefile cell is not Python to convert, but writing OpenAI code from it is worth a warning."""
    path = tmp_path / "nb.ipynb"
    write_notebook(path, notebook_json([CLIENT, "%%writefile helper.py\nimport openai\nopenai.api_key = 'x'\n"]))
    result = convert_paths([path], "ernie").results[0]
    assert sorted((w.kind, w.cell) for w in result.warnings) == [("skipped-cell", 2), ("writefile", 2)]
    assert json.loads(path.read_text())["cells"][1]["source"].startswith("%%writefile helper.py\nimport openai")
