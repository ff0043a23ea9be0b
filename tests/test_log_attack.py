"""Hostile and hurried use of the exchange log, the cache and replay: real SQLite files, real
processes holding locks, hand-edited notebooks, a real IPython shell.

Each test is one finding of a red-team pass (it failed before its fix) or a case the pass checked
that must keep working. A broken log never costs an answer and never shows a SQLite traceback.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbllm
from nbllm.cli import main
from nbllm.errors import NbllmError
from nbllm.log import cache, store
from nbllm.log.fingerprint import fingerprint
from tests.conftest import UseFake
from tests.fakes.batch_server import FakeBatchServer
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ernie(use_fake: UseFake) -> Iterator[FakeBatchServer]:
    with FakeBatchServer() as srv:
        use_fake("ernie", srv)
        yield srv


def use_log(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    monkeypatch.setenv("NBLLM_LOG", str(path))
    store.close_all()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def newer_log(path: Path) -> Path:
    """A log as a later nbllm might write it: another table shape and schema version 99."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE exchanges (id INTEGER PRIMARY KEY, happened TEXT, body TEXT)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    return path


# -- where the log is ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["zero-byte.db", "ünï cödé folder/my log.db"])
def test_odd_but_valid_log_paths_work(ernie: FakeBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = use_log(monkeypatch, tmp_path / name)
    if name.startswith("zero"):
        path.write_bytes(b"")
    assert nbllm.chat("hello there", provider="ernie").text == "echo: hello there"
    status, out, err = run(capsys, "logs")
    assert status == 0 and "hello there" in out and err == ""


def test_a_folder_as_the_log_warns_and_the_cli_says_so(ernie: FakeBatchServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = use_log(monkeypatch, tmp_path / "a folder")
    path.mkdir()
    assert nbllm.chat("hi", provider="ernie").text == "echo: hi"
    assert "was not written to the log" in capsys.readouterr().err
    status, _, err = run(capsys, "logs")
    assert status == 1 and "could not be read" in err and "Traceback" not in err


# -- a broken log in the notebook ----------------------------------------------------------------
@pytest.mark.parametrize("command", ["%llm log", "%llm usage"])
def test_log_commands_on_a_broken_log_are_one_paragraph(ipy: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        command: str) -> None:
    path = use_log(monkeypatch, tmp_path / "not-a-log.db")
    path.write_text("these are my notes, not a database\n" * 200, encoding="utf-8")
    cell = ipy.run(command)
    assert isinstance(cell.error, NbllmError)
    assert "could not be read (file is not a database)" in str(cell.error) and "Move the file away" in str(cell.error)
    assert "Traceback" not in cell.everything()


def test_a_newer_nbllm_log_says_to_upgrade(ernie: FakeBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = newer_log(use_log(monkeypatch, tmp_path / "newer.db"))
    assert nbllm.chat("hi", provider="ernie").text == "echo: hi"
    assert "looks like a newer nbllm's log" in capsys.readouterr().err
    for argv in (["logs"], ["logs", "usage"]):
        status, _, err = run(capsys, *argv)
        assert status == 1 and "written by a newer nbllm (schema 99" in err and "Upgrade nbllm" in err
    store.close_all()
    conn = sqlite3.connect(path)  # never migrated backwards, repaired or replaced
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
    assert [r[1] for r in conn.execute("PRAGMA table_info(exchanges)")] == ["id", "happened", "body"]
    conn.close()


def test_log_numbers_out_of_range_are_answers_not_tracebacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    use_log(monkeypatch, tmp_path / "logs.db")
    messages = [{"role": "user", "content": "q"}]
    assert store.write(store.Exchange("cli", "ernie", "m", messages, fingerprint("ernie", "m", messages),  # type: ignore[arg-type]
                                      answer="a")) == 1
    status, out, _ = run(capsys, "logs", "--since", "999999999d")
    assert status == 0 and out.splitlines()[1].split()[0] == "1"  # everything is newer than year 1
    status, out, _ = run(capsys, "logs", "-n", str(10**25))
    assert status == 0 and len(out.splitlines()) == 2
    status, _, err = run(capsys, "logs", "show", str(10**25))
    assert status == 1 and f"No exchange {10**25} in the log" in err and "Traceback" not in err


# -- a log another program holds ----------------------------------------------------------------
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("CREATE TABLE IF NOT EXISTS holder_marker (x)")
print("holding", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_a_log_held_by_another_program_costs_one_wait_not_one_per_row(
        ernie: FakeBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = use_log(monkeypatch, tmp_path / "held.db")
    nbllm.chat("create the file", provider="ernie")
    store.close_all()
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.3)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        answers = nbllm.map("{text}", [f"row {i}" for i in range(8)], provider="ernie", concurrency=4, rpm=0,
                            progress=False)
        assert list(answers) == [f"echo: row {i}" for i in range(8)]
        err = capsys.readouterr().err
        assert err.count("database is locked") == 1, err  # one busy wait, then no waiting while it is held
        assert "for the next 30 s exchanges are logged only if the file is free at once" in err
    finally:
        holder.communicate("release\n", timeout=30)
    assert nbllm.chat("after the lock", provider="ernie").meta["log_id"] is not None  # free again: logged at once
    assert capsys.readouterr().err == ""


# -- nbllm cache import of a hand-edited notebook -------------------------------------------------------
def notebook(tmp_path: Path, *metas: Any) -> Path:
    outputs = [{"output_type": "display_data", "data": {"text/plain": "shown"}, "metadata": {"nbllm": m}}
               for m in metas]
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": outputs, "metadata": {}}, "not a cell",
                    {"cell_type": "code", "outputs": "not a list"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "edited.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


GOOD = "a" * 64


@pytest.mark.parametrize("bad", [
    {"fingerprint": "b" * 64, "text": ["a", "list"]},
    {"fingerprint": "c" * 64, "text": {"a": "dict"}},
    {"fingerprint": ["not", "text"], "text": "t"},
    {"fingerprint": "short", "text": "t"},
    {"lanes": [1, None, {"fingerprint": 5, "text": 3}]},
])
def test_cache_import_leaves_out_entries_nbllm_never_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            bad: dict[str, Any]) -> None:
    path = notebook(tmp_path, {"fingerprint": GOOD, "text": "the good one"}, bad)
    status, out, err = run(capsys, "cache", "import", str(path))
    assert status == 1 and "1 answer(s) imported" in out
    assert "1 saved answer(s) left out" in err and "Traceback" not in err
    assert cache.lookup(GOOD).text == "the good one"  # type: ignore[union-attr]
    assert len(json.loads(run(capsys, "logs", "--json")[1])) == 1


def test_cache_import_keeps_a_good_answer_whose_figures_are_garbage(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    entry = {"fingerprint": GOOD, "text": "answer", "usage": "lots", "params": "x", "reasoning": ["r"],
             "timing": {"total_s": "slow", "first_token_s": [1]}, "provider": 7}
    other = {"fingerprint": "d" * 64, "text": "other", "usage": {"prompt_tokens": "many", "total_tokens": 1e400}}
    status, out, err = run(capsys, "cache", "import", str(notebook(tmp_path, entry, other)))
    assert status == 0 and "2 answer(s) imported" in out, err
    status, out, _ = run(capsys, "logs", "--json")
    listed = json.loads(out)  # strict JSON: no Infinity, no strings where numbers go
    assert status == 0 and {r["answer"] for r in listed} == {"answer", "other"}
    assert all(r["total_tokens"] is None and r["total_s"] is None for r in listed)
    assert run(capsys, "logs")[0] == 0 and run(capsys, "logs", "show", "1")[0] == 0


# -- a full disk ------------------------------------------------------------------------------------
FULL_DISK = """
import os, resource, sys
import nbllm
from nbllm.log.store import close_all
nbllm.chat("before the disk filled", provider="ernie")
close_all()
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # a write past this fails: a full disk
for i in range(2):
    reply = nbllm.chat(f"big {i} " + "x" * 150_000, provider="ernie")
    print(len(reply.text), reply.meta.get("log_id"), flush=True)
"""


def test_a_full_disk_warns_says_why_and_keeps_the_log(ernie: FakeBatchServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("resource")
    path = use_log(monkeypatch, tmp_path / "full.db")
    done = subprocess.run([sys.executable, "-c", FULL_DISK], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["150012", "None", "150012", "None"]  # every answer, none logged
    assert done.stderr.count("was not written to the log") == 2 and "the disk may be full" in done.stderr
    status, out, _ = run(capsys, "logs")
    assert status == 0 and "before the disk filled" in out and path.exists()  # the file still reads


# -- the cache key ------------------------------------------------------------------------------------
def test_the_cache_never_answers_a_request_that_differs_in_what_decides_the_answer(ernie: FakeBatchServer) -> None:
    base: dict[str, Any] = {"provider": "ernie", "cache": "on"}
    variants: list[dict[str, Any]] = [
        {}, {"system": "Be brief."}, {"system": "Be verbose."}, {"model": "ernie-4.0-8k"},
        {"temperature": 0.0}, {"temperature": 0.8}, {"max_tokens": 5}, {"stop": ["x"]}, {"stop": "['x']"},
    ]
    for extra in variants:
        nbllm.chat("the same prompt", **{**base, **extra})
    assert len(ernie.chat_requests) == len(variants)  # every variant asked the provider once
    for extra in variants:
        assert nbllm.chat("the same prompt", **{**base, **extra}).cached  # and each repeat is its own hit
    assert len(ernie.chat_requests) == len(variants)


def test_replay_with_an_unreadable_log_says_the_log_is_broken_not_that_it_lacks_the_answer(
        ernie: FakeBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbllm.errors import ReplayMissError

    path = use_log(monkeypatch, tmp_path / "notes.db")
    path.write_text("not a database, someone's notes\n" * 100, encoding="utf-8")
    monkeypatch.setenv("NBLLM_CACHE", "replay")
    with pytest.raises(ReplayMissError, match=r"notes.db, which could not be read \(file is not a database"):
        nbllm.chat("anything", provider="ernie")
    failed = nbllm.map("{text}", ["row"], provider="ernie", progress=False)[0]
    assert failed.reason == "ReplayMissError" and "could not be read" in failed.message
    assert ernie.chat_requests == []


def test_a_relative_log_path_does_not_move_when_the_notebook_changes_folder(
        ernie: FakeBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "project" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    use_log(monkeypatch, Path("run-log.db"))
    nbllm.chat("asked once", provider="ernie")
    monkeypatch.chdir(tmp_path / "project" / "data")  # %cd data
    assert nbllm.chat("asked once", provider="ernie", cache="on").cached
    assert len(ernie.chat_requests) == 1
    assert not (tmp_path / "project" / "data" / "run-log.db").exists()


def test_an_answer_with_a_lone_surrogate_is_still_logged_and_resumes(ernie: FakeBatchServer,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fakes.batch_server import ErrorReply

    body = (b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
            b'"content":"ok \\ud800 end"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,'
            b'"total_tokens":3}}')  # JSON may escape half a surrogate pair; Python decodes it to a lone one
    ernie.enqueue(ErrorReply(200, body, content_type="application/json"))
    first = nbllm.map("{text}", ["odd bytes"], provider="ernie", progress=False, stream=False)
    assert first[0].startswith("ok ") and "not written" not in capsys.readouterr().err
    again = nbllm.map("{text}", ["odd bytes"], provider="ernie", progress=False, stream=False)
    assert again[0] == "ok \ufffd end" and len(ernie.chat_requests) == 1  # from the log


@pytest.mark.parametrize("value, off", [("OFF", True), (" off ", True), ("No", True), ("", False), ("  ", False)])
def test_log_off_words_in_any_case_and_an_empty_value_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               value: str, off: bool) -> None:
    from nbllm.log.paths import default_log_path, log_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("NBLLM_LOG", value)
    assert log_path() == (None if off else default_log_path())
