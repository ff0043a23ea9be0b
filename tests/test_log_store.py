"""The exchange log's database: real SQLite files, forward migrations, two writer processes, and
the failures (locked, read-only, corrupt) that must never cost the user an answer."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbllm.errors import ConfigError
from nbllm.log import store
from nbllm.log.fingerprint import fingerprint
from nbllm.log.paths import default_log_path, log_path
from nbllm.log.record import Exchange, host_of
from nbllm.secrets import register_secret

REPO = Path(__file__).resolve().parents[1]


def exchange(prompt: str = "hi", answer: str = "echo: hi", **kw: object) -> Exchange:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
    values: dict[str, object] = dict(source="api", provider="ernie", model="ernie-4.0-turbo-8k", messages=messages,
                                     fingerprint=fingerprint("ernie", "ernie-4.0-turbo-8k", messages, {}),
                                     answer=answer, host="qianfan.baidubce.com", prompt_tokens=3, completion_tokens=4,
                                     total_tokens=7, first_token_s=0.01, total_s=0.02)
    values.update(kw)
    return Exchange(**values)  # type: ignore[arg-type]


def rows(path: Path, sql: str = "SELECT * FROM exchanges ORDER BY id") -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data" / "logs.db"
    monkeypatch.setenv("NBLLM_LOG", str(path))
    return path


# -- where the log is ---------------------------------------------------------------------------
def test_path_from_env_config_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_LOG", str(tmp_path / "mine.db"))
    assert log_path() == tmp_path / "mine.db"
    monkeypatch.setenv("NBLLM_LOG", "off")
    assert log_path() is None
    monkeypatch.delenv("NBLLM_LOG")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert log_path() == default_log_path() and default_log_path().name == "logs.db"
    if sys.platform.startswith("linux"):
        assert default_log_path() == tmp_path / "xdg" / "nbllm" / "logs.db"
    Path(os.environ["NBLLM_CONFIG"]).write_text("log = false\n", encoding="utf-8")
    assert log_path() is None
    Path(os.environ["NBLLM_CONFIG"]).write_text("log = true\n", encoding="utf-8")  # an edit counts at once
    assert log_path() == default_log_path()
    Path(os.environ["NBLLM_CONFIG"]).write_text("log = 'no'\n", encoding="utf-8")
    for _ in range(2):  # refused every time, not only when first parsed
        with pytest.raises(ConfigError, match="must be true or false"):
            log_path()
    Path(os.environ["NBLLM_CONFIG"]).write_text("log = false\n", encoding="utf-8")
    assert log_path() is None
    monkeypatch.setenv("NBLLM_LOG", str(tmp_path / "env-wins.db"))
    assert log_path() == tmp_path / "env-wins.db"


def test_log_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NBLLM_LOG", "off")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store.write(exchange()) is None
    assert not any(tmp_path.rglob("*.db")) and capsys.readouterr().err == ""


# -- the database -------------------------------------------------------------------------------
def test_one_row_per_exchange_with_every_field(db: Path) -> None:
    first = store.write(exchange(params={"temperature": 0.2}, notebook="/work/a.ipynb"))
    second = store.write(exchange("again", "par", error_class="StreamInterrupted", error_message="cut"))
    assert (first, second) == (1, 2)
    one, two = rows(db)
    assert one["source"] == "api" and one["provider"] == "ernie" and one["host"] == "qianfan.baidubce.com"
    assert one["system"] == "Be brief." and one["prompt"] == "hi" and one["answer"] == "echo: hi"
    assert one["params"] == '{"temperature": 0.2}' and one["notebook"] == "/work/a.ipynb"
    assert '"role": "system"' in one["messages"] and one["cached"] == 0 and len(one["fingerprint"]) == 64
    assert (one["prompt_tokens"], one["completion_tokens"], one["total_tokens"]) == (3, 4, 7)
    assert one["version"] and one["time"].endswith("+00:00") and one["error_class"] is None
    assert (two["error_class"], two["error_message"], two["answer"]) == ("StreamInterrupted", "cut", "par")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 16384
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION


def test_host_only_never_path_or_query() -> None:
    assert host_of("https://u:pw@api.example.com:8443/v1?key=abc") == "api.example.com:8443"
    assert host_of("https://qianfan.baidubce.com/v2") == "qianfan.baidubce.com"
    assert host_of(None) is None


def test_schema_migrates_forward_on_open(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)  # a log written by a version that had only the first migration
    for statement in store.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert store.write(exchange()) == 1
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"exchanges_usage", "exchanges_fingerprint"} <= indexes
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == 2


def test_a_newer_schema_is_left_alone(db: Path) -> None:
    assert store.write(exchange()) == 1
    store.close_all()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    assert store.write(exchange()) == 2
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 99


def test_no_key_reaches_the_file(db: Path) -> None:
    key = "sk-logtest0123456789abcdefXYZ"
    register_secret(key)
    store.write(exchange(f"my key is {key}", f"you said {key}", params={"api_key": key},
                         error_class="AuthError", error_message=f"refused {key}", reasoning=key,
                         host=host_of(f"https://h.example/v1?key={key}")))
    store.close_all()
    files = list(db.parent.iterdir())
    assert files and all(key.encode() not in f.read_bytes() for f in files)
    assert b"sk-***" in db.read_bytes()


WRITER = textwrap.dedent("""
    import sys
    from nbllm.log import store
    from nbllm.log.record import Exchange
    who, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        row = Exchange("cli", "ernie", "m", [{"role": "user", "content": f"{who} {i}"}], "f" * 64, answer=str(i))
        assert store.write(row) is not None, "a row was not written"
""")


def test_two_writer_processes_lose_no_row(db: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, who, "300"], env=env, cwd=REPO,
                                stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert errors == ["", ""]  # not one "was not written" warning
    prompts = [r["prompt"] for r in rows(db)]
    assert sorted(prompts) == sorted(f"{who} {i}" for who in "ab" for i in range(300))


# -- failures never fail the call ----------------------------------------------------------------
def test_locked_database_warns_once(db: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert store.write(exchange()) == 1
    store.close_all()
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert store.write(exchange("while locked")) is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was not written to the log" in err and "locked" in err and str(db) in err
    assert store.write(exchange("after")) == 2  # the next call opens the file again


def test_read_only_database_warns(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert store.write(exchange()) == 1
    store.close_all()
    for suffix in ("-wal", "-shm"):  # checkpointed on close; no WAL left behind
        assert not Path(f"{db}{suffix}").exists()
    data = bytearray(db.read_bytes())
    data[18] = data[19] = 1  # rollback journal mode,
    data[18] = 3  # and a write version SQLite treats as read-only (file format, byte 18), even for root
    db.write_bytes(bytes(data))
    assert store.write(exchange("read-only")) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "readonly" in err and "NBLLM_LOG" in err
    assert [r["prompt"] for r in rows(db)] == ["hi"]


def test_corrupt_database_warns_and_is_left_as_it_was(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database, just some bytes" * 100)
    before = db.read_bytes()
    assert store.write(exchange()) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a database" in err and "move the file away" in err
    assert db.read_bytes() == before


def test_unwritable_folder_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    monkeypatch.setenv("NBLLM_LOG", str(blocker / "logs.db"))  # its folder is a file
    assert store.write(exchange()) is None
    assert "was not written to the log" in capsys.readouterr().err
