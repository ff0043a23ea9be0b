"""The benchmark scripts run (tiny --quick mode) and print the rows their README figures come from.

No timings are asserted here: performance figures live in benchmarks/README.md only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from benchkit import Table, stats  # noqa: E402

EXPECTED: dict[str, list[list[str]]] = {
    "load": [["python (nothing)", "python + import nbllm", "IPython shell", "IPython shell + %load_ext nbllm"]],
    "call_overhead": [["bare httpx POST", "nbllm.chat()", "shell cell: bare httpx POST", "shell cell: %%llm",
                       "shell cell: %%llm, after a failed cell"]],
    "render": [["1,000 deltas", "2,000 deltas", "5,000 deltas", "5,000 deltas"],
               ["bare httpx read", "nbllm.stream() joined", "%%llm cell"]],
    "convert": [["--jobs 1", "--jobs 2"],
                ["unchanged, plain, n=8", "unchanged, large with outputs, n=1", "changed (OpenAI), n=1",
                 "first changed notebook (imports libcst)"]],
    "compare": [["one provider (-p ernie)", "compare (-p ernie,hunyuan,qwen)"]],
    "exchange_log": [["nbllm.chat(), NBLLM_LOG=off", "nbllm.chat(), log on", "the log's work alone (row + insert)"],
                     ["nbllm --version (process start-up)", "nbllm logs", "nbllm logs -n 100 --provider qwen",
                      "nbllm logs --since 1h --json", "nbllm logs --search (no match: every row read)",
                      "nbllm logs show ID", "nbllm logs usage"]],
}
CHECKS = {"load": 2, "call_overhead": 3, "render": 3, "convert": 2, "compare": 1, "exchange_log": 3}


def run_quick(name: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=280, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    for table in data["tables"]:  # every table printed, title first
        assert table["title"] in done.stdout
    return data


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_script_prints_expected_rows(name: str, tmp_path: Path) -> None:
    data = run_quick(name, tmp_path)
    assert [[row[0] for row in t["rows"]] for t in data["tables"]] == EXPECTED[name]
    assert len(data["checks"]) == CHECKS[name]
    assert all(isinstance(c["met"], bool) and c["measured"] for c in data["checks"])
    if name == "convert":  # the quick corpus: 12 notebooks, 3 with OpenAI calls, same result with --jobs 1 and 2
        assert [row[-1] for row in data["tables"][0]["rows"]] == ["3 / 9 / 0", "3 / 9 / 0"]


def test_run_collects_targets(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--only", "compare"],
                          capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "All targets" in done.stdout and "compare: compare of 3 vs one provider" in done.stdout
    assert "Machine: " in done.stdout and "compare.py" in done.stdout


def test_stats_and_table() -> None:
    s = stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.median, s.q1, s.q3, s.min, s.max, s.n) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    table = Table("T", ["a", "b"])
    table.add("x", 1)
    assert table.text().splitlines() == ["T", "=", "a  b", "-  -", "x  1"]
    assert "| x | 1 |" in table.markdown()
    with pytest.raises(ValueError, match="2 columns"):
        table.add("only one")
