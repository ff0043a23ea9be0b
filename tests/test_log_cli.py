"""``nbllm logs`` and ``nbllm cache import`` on real log files; fingerprints and cache modes."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nbllm.cli import main
from nbllm.errors import ConfigError
from nbllm.log import cache, store
from nbllm.log.fingerprint import fingerprint
from nbllm.log.notebooks import saved_answers
from nbllm.log.provenance import provenance
from nbllm.log.queries import parse_since
from nbllm.log.record import Exchange


def logged(prompt: str, answer: str, provider: str = "ernie", model: str = "ernie-4.0-turbo-8k", **kw: object) -> int:
    messages = [{"role": "user", "content": prompt}]
    row = Exchange("cli", provider, model, messages, fingerprint(provider, model, messages), answer=answer, **kw)  # type: ignore[arg-type]
    found = store.write(row)
    assert found is not None
    return found


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture
def three(capsys: pytest.CaptureFixture[str]) -> list[int]:
    ids = [logged("What is a kernel?", "A process.", prompt_tokens=10, completion_tokens=5, total_tokens=15),
           logged("名字是什么", "通义千问", "qwen", "qwen-plus", prompt_tokens=20, completion_tokens=30, total_tokens=50),
           logged("What is 50% of 10_0?", "50", "qwen", "qwen-turbo", cached=True, prompt_tokens=1,
                  completion_tokens=1, total_tokens=2)]
    return ids


def test_logs_lists_newest_first(three: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "logs")
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["ID", "TIME", "SOURCE", "PROVIDER:MODEL", "TOKENS", "TOTAL",
                                               "STATUS", "PROMPT"]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert "qwen:qwen-turbo" in lines[1] and "cached" in lines[1] and lines[2].endswith("名字是什么")
    assert run(capsys, "logs", "-n", "1")[1].count("\n") == 2


def test_logs_filters_and_json(three: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    def ids(*argv: str) -> list[int]:
        status, out, err = run(capsys, "logs", "--json", *argv)
        assert status == 0, err
        return [row["id"] for row in json.loads(out)]

    assert ids("--provider", "qwen") == [3, 2]
    assert ids("--model", "ernie-4.0-turbo-8k") == [1]
    assert ids("--search", "kernel") == [1] and ids("--search", "千问") == [2]
    assert ids("--search", "50%") == [3] and ids("--search", "10_0") == [3] and ids("--search", "5_%") == []
    assert ids("--since", "today") == [3, 2, 1] and ids("--since", "1h", "-n", "2") == [3, 2]
    tomorrow = (datetime.now() + timedelta(days=1)).date().isoformat()
    assert ids("--since", tomorrow) == []


def test_logs_show_path_and_usage(three: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "logs", "show", "2")
    assert status == 0 and "provider:    qwen" in out and "[user]\n名字是什么" in out and out.endswith("[answer]\n通义千问\n")
    shown = json.loads(run(capsys, "logs", "show", "2", "--json")[1])
    assert shown["messages"] == [{"role": "user", "content": "名字是什么"}] and shown["cached"] is False
    assert run(capsys, "logs", "path")[1] == os.environ["NBLLM_LOG"] + "\n"
    status, _, err = run(capsys, "logs", "show", "99")
    assert status == 1 and "No exchange 99" in err
    assert run(capsys, "logs", "show", "x")[0] == 2 and run(capsys, "logs", "frob")[0] == 2
    assert run(capsys, "logs", "--since", "someday")[0] == 2

    Path(os.environ["NBLLM_CONFIG"]).write_text(
        '[providers.qwen.prices]\ninput = 2.0\noutput = 6.0\ncurrency = "CNY"\n', encoding="utf-8")
    status, out, _ = run(capsys, "logs", "usage")
    lines = out.splitlines()
    assert lines[0].split() == ["PERIOD", "PROVIDER", "MODEL", "CALLS", "IN", "OUT", "TOTAL", "COST"]
    assert lines[1].split() == ["today", "ernie", "ernie-4.0-turbo-8k", "1", "10", "5", "15", "-"]
    assert lines[2].split() == ["today", "qwen", "qwen-plus", "1", "20", "30", "50", "0.0002", "CNY"]  # cached: not counted
    assert lines[3].split() == ["today", "(total)", "2", "30", "35", "65", "0.0002", "CNY"]
    assert [line.split()[:3] for line in lines[4:]] == [["all", "time", "ernie"], ["all", "time", "qwen"],
                                                       ["all", "time", "(total)"]]
    data = json.loads(run(capsys, "logs", "usage", "--json")[1])
    assert [(r["provider"], r["calls"]) for r in data["all_time"]] == [("ernie", 1), ("qwen", 1)]
    assert data["prices"] == {"qwen": {"input": 2.0, "output": 6.0, "currency": "CNY"}}


def test_prices_need_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    Path(os.environ["NBLLM_CONFIG"]).write_text('[providers.qwen.prices]\ninput = "cheap"\n', encoding="utf-8")
    status, _, err = run(capsys, "logs", "usage")
    assert status == 1 and "[providers.qwen.prices]" in err


def test_no_log_yet_and_log_off(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "logs")[1] == "No exchanges logged yet.\n"
    assert not Path(os.environ["NBLLM_LOG"]).exists()  # reading never creates the file
    monkeypatch.setenv("NBLLM_LOG", "off")
    assert run(capsys, "logs", "path")[1] == "off (NBLLM_LOG=off)\n"
    status, _, err = run(capsys, "cache", "import", "x.ipynb")
    assert status == 1 and "turned off" in err


def test_corrupt_log_is_one_paragraph(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(os.environ["NBLLM_LOG"])
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage" * 500)
    status, _, err = run(capsys, "logs")
    assert status == 1 and err.startswith("nbllm: The exchange log") and "Traceback" not in err


def test_since_forms() -> None:
    now = datetime.now(timezone.utc)
    assert abs(datetime.fromisoformat(parse_since("2h")) - (now - timedelta(hours=2))) < timedelta(seconds=5)
    assert parse_since("2026-11-30T08:00+08:00") == "2026-11-30T00:00:00.000+00:00"
    assert parse_since("yesterday") < parse_since("today")
    with pytest.raises(ValueError, match="--since"):
        parse_since("soon")


# -- fingerprints and cache modes -----------------------------------------------------------------
def test_fingerprint_covers_what_decides_an_answer() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    base = fingerprint("ernie", "m", msgs, {"temperature": 0.2})
    assert base == fingerprint("ernie", "m", [{"content": "hi", "role": "user"}], {"temperature": 0.2, "timeout": 5})
    assert base == fingerprint("ernie", "m", msgs, {"temperature": 0.2, "max_tokens": None, "stream": True})
    others = {fingerprint("qwen", "m", msgs, {"temperature": 0.2}), fingerprint("ernie", "n", msgs, {"temperature": 0.2}),
              fingerprint("ernie", "m", [*msgs, {"role": "user", "content": "again"}], {"temperature": 0.2}),
              fingerprint("ernie", "m", msgs, {"temperature": 0.3}), fingerprint("ernie", "m", msgs)}
    assert base not in others and len(others) == 5 and len(base) == 64


def test_cache_modes_and_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache.resolve_mode() == "off" and cache.resolve_mode("on") == "on"
    monkeypatch.setenv("NBLLM_CACHE", "on")
    assert cache.resolve_mode() == "on" and cache.resolve_mode("off") == "off"
    cache.set_kernel_mode("off")
    assert cache.resolve_mode() == "off" and cache.resolve_mode("on") == "on"
    monkeypatch.setenv("NBLLM_CACHE", "replay")  # replay from the environment wins over everything
    assert cache.resolve_mode("off") == cache.resolve_mode("on") == cache.resolve_mode() == "replay"
    monkeypatch.setenv("NBLLM_CACHE", "sometimes")
    with pytest.raises(ConfigError, match="NBLLM_CACHE must be off, on or replay"):
        cache.resolve_mode()


def test_lookup_finds_the_newest_complete_answer() -> None:
    msgs = [{"role": "user", "content": "q"}]
    fp = fingerprint("ernie", "m", msgs)
    assert cache.lookup(fp) is None  # no log file yet
    store.write(Exchange("api", "ernie", "m", msgs, fp, answer="old", completion_tokens=2))
    store.write(Exchange("api", "ernie", "m", msgs, fp, answer="new", completion_tokens=3, reasoning="because"))
    store.write(Exchange("api", "ernie", "m", msgs, fp, answer="brok", error_class="StreamInterrupted"))
    found = cache.lookup(fp)
    assert found is not None and (found.text, found.reasoning, found.log_id, found.usage.completion_tokens) == (
        "new", "because", 2, 3)
    assert cache.lookup("0" * 64) is None
    assert cache.find_answer("ernie", "m", msgs).text == "new"  # type: ignore[union-attr]
    assert cache.find_answer("ernie", "m", msgs, {"temperature": 1}) is None


def test_replay_miss_names_the_request_and_how_to_record() -> None:
    err = cache.replay_miss("ernie", "m", "abcdef0123456789" * 4, "Explain recursion", "the cell [3]")
    assert "the cell [3]" in err.message and "'Explain recursion'" in err.message and "abcdef012345" in err.message
    assert "NBLLM_CACHE=on" in err.message and "nbllm cache import NOTEBOOK" in err.message


# -- cache import ---------------------------------------------------------------------------------
def saved_notebook(tmp_path: Path, name: str = "saved.ipynb") -> tuple[Path, list[str]]:
    """A notebook as nbllm saves it: a Markdown answer, a code answer (text differs), a comparison, a failure."""
    def meta(prompt: str, answer: str, shown: str | None, **kw: object) -> dict[str, object]:
        msgs = [{"role": "user", "content": prompt}]
        row = Exchange("magic", "ernie", "m", msgs, fingerprint("ernie", "m", msgs), answer=answer, **kw)  # type: ignore[arg-type]
        return provenance(row, 7, shown)

    md = meta("one", "Answer **one**", "Answer **one**")
    code = meta("two", "Here:\n```python\nprint(2)\n```", "print(2)")
    lanes = {"lanes": [meta("three", "lane a", None), meta("three", "", None, error_class="AuthError")]}
    failed = meta("four", "partial", "partial", error_class="StreamInterrupted")
    outputs = [
        {"output_type": "display_data", "data": {"text/markdown": "Answer **one**", "text/plain": ["Answer ", "**one**"]},
         "metadata": {"nbllm": md}},
        {"output_type": "display_data", "data": {"text/plain": "print(2)"}, "metadata": {"nbllm": code}},
        {"output_type": "display_data", "data": {"text/plain": "..."}, "metadata": {"nbllm": lanes}},
        {"output_type": "display_data", "data": {"text/plain": "partial"}, "metadata": {"nbllm": failed}},
        {"output_type": "stream", "name": "stdout", "text": "no metadata"},
    ]
    nb = {"cells": [{"cell_type": "code", "source": "%%llm\none", "outputs": outputs, "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path, [str(md["fingerprint"]), str(code["fingerprint"]), str(lanes["lanes"][0]["fingerprint"])]


def test_provenance_keeps_text_only_when_the_output_does_not_show_it() -> None:
    row = Exchange("magic", "ernie", "m", [], "f" * 64, answer="A", prompt_tokens=1, total_s=0.123456, cached=True)
    meta = provenance(row, 5, "A")
    assert "text" not in meta and meta["log_id"] == 5 and meta["cached"] is True
    assert meta["timing"] == {"first_token_s": None, "total_s": 0.1235} and meta["usage"]["prompt_tokens"] == 1
    assert provenance(row, 5, "other")["text"] == "A" and provenance(row, None, None)["text"] == "A"


def test_cache_import_loads_answers_for_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, fps = saved_notebook(tmp_path)
    assert [e["text"] for e in saved_answers(json.loads(path.read_text()))] == [
        "Answer **one**", "Here:\n```python\nprint(2)\n```", "lane a"]
    before = path.read_bytes()
    status, out, _ = run(capsys, "cache", "import", str(path))
    assert status == 0 and out == f"{path}: 3 answer(s) imported, 0 already in the log\n"
    assert [cache.lookup(fp).text for fp in fps] == ["Answer **one**", "Here:\n```python\nprint(2)\n```", "lane a"]  # type: ignore[union-attr]
    assert run(capsys, "cache", "import", str(path))[1].endswith("0 answer(s) imported, 3 already in the log\n")
    assert path.read_bytes() == before
    conn = sqlite3.connect(os.environ["NBLLM_LOG"])
    assert {r[0] for r in conn.execute("SELECT source FROM exchanges")} == {"import"}
    assert run(capsys, "logs", "usage")[1].splitlines()[1].split()[:3] == ["today", "no", "calls"]  # imports are free


def test_cache_import_of_a_notebook_without_answers_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "plain.ipynb"
    empty.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1", "outputs": []}]}), encoding="utf-8")
    status, out, err = run(capsys, "cache", "import", str(empty))
    assert status == 0 and out.endswith("0 answer(s) imported, 0 already in the log\n")
    assert "holds no saved %%llm answers" in err


def test_cache_import_reports_a_bad_notebook_and_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, _ = saved_notebook(tmp_path)
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json", encoding="utf-8")
    status, out, err = run(capsys, "cache", "import", str(bad), str(tmp_path / "missing.ipynb"), str(good))
    assert status == 1 and "3 answer(s) imported" in out
    assert err.count("nbllm: ") == 2 and "bad.ipynb could not be read as a notebook" in err
