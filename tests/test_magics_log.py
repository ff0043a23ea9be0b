"""The log and the cache in a real IPython shell: provenance on every answer, `%llm log`,
`%llm usage`, `%llm cache`, `--cache`/`--no-cache`, compare lanes, and a replay miss."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.openai_server import Answer, FakeOpenAIServer
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)


def provenance(cell) -> dict:  # noqa: ANN001
    """The nbllm metadata of a cell's final answer display."""
    final = cell.answer_updates()[-1]
    return final["metadata"]["nbllm"]


def test_answer_output_carries_provenance(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    cell = ipy.run("%%llm -t 0.2 --max-tokens 50\nhello")
    assert cell.error is None and cell.final_answer()["text/markdown"] == "echo: hello"
    meta = provenance(cell)
    assert (meta["provider"], meta["model"], meta["cached"]) == ("ernie", "ernie-4.0-turbo-8k", False)
    assert meta["params"] == {"temperature": 0.2, "max_tokens": 50} and meta["log_id"] == 1
    assert len(meta["fingerprint"]) == 64 and meta["version"] and "text" not in meta
    assert meta["usage"]["total_tokens"] and meta["timing"]["total_s"] is not None
    ernie.enqueue(Answer(text="Here:\n```python\nprint(1)\n```"))
    code = ipy.run("%%llm -f code\nprint one")
    assert code.final_answer()["text/plain"] == "print(1)"
    assert provenance(code)["text"] == "Here:\n```python\nprint(1)\n```"  # the output shows the code only


def test_cache_flags_and_footer(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    first = ipy.run("%%llm --no-history --cache\nsame")
    again = ipy.run("%%llm --no-history --cache\nsame")
    assert len(ernie.chat_requests) == 1
    assert again.final_answer() == first.final_answer() and again.footer().endswith(" · cached")
    assert provenance(again)["cached"] and provenance(again)["fingerprint"] == provenance(first)["fingerprint"]
    assert "cached" not in ipy.run("%%llm --no-history\nsame").footer()  # off by default
    assert len(ernie.chat_requests) == 2

    assert "cache: on" in ipy.run("%llm cache on").stdout
    ipy.run("%%llm --no-history\nsame")
    ipy.run("%%llm --no-history --no-cache\nsame")  # forces a live call
    assert len(ernie.chat_requests) == 3
    assert ipy.run("%llm cache").stdout.startswith("cache: on")
    assert "cache: off" in ipy.run("%llm cache off").stdout
    bad_mode = ipy.run("%llm cache sometimes").error
    assert type(bad_mode).__name__ == "UsageError" and "sometimes" in str(bad_mode)


def test_replay_miss_names_the_cell(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("%llm cache replay")
    cell = ipy.run("%%llm\nnever recorded")
    assert type(cell.error).__name__ == "ReplayMissError" and not ernie.chat_requests
    message = cell.error.message  # type: ignore[union-attr]
    assert "this %%llm cell asking" in message and "'never recorded'" in message and "NBLLM_CACHE=on" in message


def test_log_and_usage_commands(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("%%llm\nfirst question")
    ipy.run("%%llm\nsecond question")
    log = ipy.run("%llm log 1").displays[-1]["data"]
    lines = log["text/plain"].splitlines()
    assert len(lines) == 2 and lines[1].split()[0] == "2" and lines[1].endswith("second question")
    assert "magic" in lines[1] and "ernie:ernie-4.0-turbo-8k" in lines[1] and "<table>" in log["text/html"]
    Path(os.environ["NBLLM_CONFIG"]).write_text('[providers.ernie.prices]\ninput = 4\noutput = 16\ncurrency = "CNY"\n',
                                                 encoding="utf-8")
    usage = ipy.run("%llm usage").displays[-1]["data"]["text/plain"].splitlines()
    assert [line.split()[0] for line in usage[1:]] == ["this", "today", "all"] and usage[1].endswith(" CNY")
    bad_count = ipy.run("%llm log x").error
    assert type(bad_count).__name__ == "UsageError" and "invalid int value: 'x'" in str(bad_count)


def test_compare_records_each_lane(ipy: Shell, use_fake) -> None:  # noqa: ANN001
    with FakeOpenAIServer() as first, FakeOpenAIServer() as second:
        ipy.secrets += [use_fake("ernie", first), use_fake("hunyuan", second)]
        cell = ipy.run("%%llm -p ernie,hunyuan\nSame question")
    assert cell.error is None
    lanes = [d for d in cell.displays if d["metadata"] and "nbllm" in d["metadata"]]
    (meta,) = [d["metadata"]["nbllm"] for d in lanes[-1:]]
    assert [(lane["provider"], lane["text"], lane["cached"]) for lane in meta["lanes"]] == [
        ("ernie", "echo: Same question", False), ("hunyuan", "echo: Same question", False)]
    assert sorted(lane["log_id"] for lane in meta["lanes"]) == [1, 2]
