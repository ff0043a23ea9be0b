"""The log's background writer (a batch run's rows): real SQLite files, every queued row written by
a flush, at exit and after Ctrl-C, by two processes at once, never a key, one warning on failure."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nbllm
from nbllm.log import store, writer
from nbllm.log.cache import lookup
from nbllm.secrets import register_secret
from tests.conftest import UseFake
from tests.fakes.batch_server import FakeBatchServer
from tests.test_log_store import exchange, rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data" / "logs.db"
    monkeypatch.setenv("NBLLM_LOG", str(path))
    return path


def prompts(path: Path) -> list[str]:
    return [r["prompt"] for r in rows(path)] if path.exists() else []


def test_a_flush_writes_every_queued_row(db: Path) -> None:
    for i in range(300):  # more than one transaction's worth (MAX_ROWS)
        writer.write_later(exchange(f"row {i}"))
    writer.flush()
    assert sorted(prompts(db)) == sorted(f"row {i}" for i in range(300))


def test_a_lookup_finds_a_row_still_queued(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "BATCH_WAIT_S", 60.0)  # the row stays queued until something flushes
    queued = exchange("asked a moment ago", "its answer")
    writer.write_later(queued)
    found = lookup(queued.fingerprint)  # no flush in between: the lookup waits for the writer
    assert found is not None and found.text == "its answer"


def test_lookups_make_no_file_and_see_later_writes(db: Path) -> None:
    first = exchange("first", "first answer")
    assert lookup(first.fingerprint) is None and not db.exists()  # before any write: a miss, no file made
    assert store.write(first) == 1
    assert lookup(first.fingerprint).text == "first answer"  # type: ignore[union-attr]
    second = exchange("second", "second answer")
    assert lookup(second.fingerprint) is None  # the lookup connection stays open...
    assert store.write(second) == 2
    assert lookup(second.fingerprint).text == "second answer"  # type: ignore[union-attr]  # ...and sees new rows


def test_no_key_reaches_the_file(db: Path) -> None:
    key = "sk-writertest0123456789abcdefXYZ"
    register_secret(key)
    writer.write_later(exchange(f"my key is {key}", f"you said {key}", params={"api_key": key},
                                error_class="AuthError", error_message=f"refused {key}", reasoning=key,
                                model=f"model-{key}", notebook=f"/work/{key}.ipynb"))
    store.close_all()  # flushes the writer first
    files = list(db.parent.iterdir())
    assert files and all(key.encode() not in f.read_bytes() for f in files)
    assert b"sk-***" in db.read_bytes()


def test_a_broken_log_warns_once_for_the_whole_batch(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database, just some bytes" * 100)
    before = db.read_bytes()
    for i in range(600):
        writer.write_later(exchange(f"row {i}"))
    writer.flush()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 2, err  # the first failure, then how many more at the flush
    assert all("not written to the log" in line and "not a database" in line for line in lines)
    counts = [int(line.split(" exchanges were")[0].rsplit(" ", 1)[-1].replace(",", "")) for line in lines]
    assert sum(counts) == 600
    assert db.read_bytes() == before


EXITS = textwrap.dedent("""
    import sys
    from nbllm.log import writer
    from nbllm.log.record import Exchange
    who, n, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    for i in range(n):
        writer.write_later(Exchange("api", "ernie", "m", [{"role": "user", "content": f"{who} {i}"}], "f" * 64,
                                    answer=str(i)))
    if how == "interrupt":
        raise KeyboardInterrupt  # Ctrl-C with rows still queued
""")


def run_writers(db: Path, who: str, n: int, how: str) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NBLLM_LOG": str(db)}
    return [subprocess.Popen([sys.executable, "-c", EXITS, name, str(n), how], env=env, cwd=REPO,
                             stderr=subprocess.PIPE, text=True) for name in who]


@pytest.mark.parametrize("how", ["exit", "interrupt"])
def test_rows_still_queued_are_written_at_exit(db: Path, how: str) -> None:
    (proc,) = run_writers(db, "a", 200, how)
    err = proc.communicate(timeout=120)[1]
    assert (proc.returncode == 0) == (how == "exit"), err  # Ctrl-C: the interpreter ends by SIGINT
    assert "not written" not in err
    assert sorted(prompts(db)) == sorted(f"a {i}" for i in range(200))


def test_two_batch_writer_processes_lose_no_row(db: Path) -> None:
    procs = run_writers(db, "ab", 500, "exit")
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert errors == ["", ""]
    assert sorted(prompts(db)) == sorted(f"{who} {i}" for who in "ab" for i in range(500))


def test_every_row_of_a_map_is_in_the_log_when_it_returns(use_fake: UseFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "BATCH_WAIT_S", 60.0)  # rows stay queued until the run's own flush
    with FakeBatchServer() as server:
        use_fake("ernie", server)
        answers = nbllm.map("Q: {text}", [str(i) for i in range(120)], provider="ernie", rpm=0, progress=False)
        path = Path(os.environ["NBLLM_LOG"])
        conn = sqlite3.connect(path)  # another reader, as `nbllm logs` is: no flush, no close_all
        try:
            logged = [r[0] for r in conn.execute("SELECT prompt FROM exchanges WHERE source = 'api'")]
        finally:
            conn.close()
        assert len(answers) == 120 and sorted(logged) == sorted(f"Q: {i}" for i in range(120))
        got = dict(nbllm.imap("I: {text}", [str(i) for i in range(40)], provider="ernie", rpm=0))
        assert len(got) == 40 and sum(p.startswith("I: ") for p in prompts(path)) == 40


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_worker_writes_its_own_rows(db: Path) -> None:
    writer.write_later(exchange("parent"))  # the parent's writer thread is running now
    writer.flush()
    pid = os.fork()
    if pid == 0:  # the child: as a multiprocessing or Dask worker started by fork
        code = 1
        try:
            writer.write_later(exchange("child"))
            writer.flush()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(prompts(db)) == ["child", "parent"]


def test_a_batch_row_leaves_nothing_behind_in_the_redaction_memo() -> None:
    """Only what is sent again (system prompt, history) is remembered: a batch's prompts and answers
    are new with every row, and remembering them kept up to 512 of them alive."""
    from nbllm.log import record

    system, history = "You label reviews. " * 5, "An earlier question, long enough to remember. " * 3
    prompt, answer = "Label this review: the kettle boils fast. " * 3, "positive, because it boils fast. " * 3
    row = exchange(prompt, answer, messages=[{"role": "system", "content": system},
                                             {"role": "user", "content": history},
                                             {"role": "user", "content": prompt}]).row()
    assert (row["prompt"], row["answer"], row["system"]) == (prompt, answer, system)
    assert system in record._memo and history in record._memo
    assert prompt not in record._memo and answer not in record._memo


def test_a_locked_log_costs_one_wait_then_rows_are_warned_about_at_once(db: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert store.write(exchange("before")) == 1
    store.close_all()
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(writer, "MAX_ROWS", 50)  # several transactions
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(200):
            writer.write_later(exchange(f"row {i}"))
        writer.flush()
        assert store.impatient(db)  # the first transaction met the lock: the next ones did not wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 2 and all("locked" in line for line in lines)
    assert sum(int(line.split(" exchange")[0].rsplit(" ", 1)[-1].replace(",", "").replace("this", "1"))
               for line in lines) == 200
    assert prompts(db) == ["before"]
