"""Hostile and hurried input to nbllm.map / imap / embed and %%llm --over, against loopback servers.

Each test is one finding of a red-team pass: it failed before its fix. Nothing here may send a
request the user did not mean, and every mistake must be one paragraph before anything is sent.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbllm
from nbllm.errors import ConfigError, ContextError, ProtocolError
from tests.conftest import UseFake
from tests.fakes.batch_server import ErrorReply, FakeBatchServer
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ernie(use_fake: UseFake) -> Iterator[FakeBatchServer]:
    with FakeBatchServer() as srv:
        use_fake("ernie", srv)
        yield srv


def ask(template: str, rows: Any, **kw: Any) -> Any:
    return nbllm.map(template, rows, provider="ernie", progress=False, rpm=0, **kw)


# -- templates -------------------------------------------------------------------------------
@pytest.mark.parametrize("template", ["{text.__class__}", "{text:{text.__class__}}", "{row.__init__.__globals__}",
                                      "{text[0]._x}"])
def test_a_template_never_reads_private_attributes(ernie: FakeBatchServer, template: str) -> None:
    with pytest.raises(ContextError, match="never a _private one"):
        ask(template, [{"text": "abc", "row": "r"}])
    assert ernie.chat_requests == []


def test_public_attributes_and_indexes_still_fill(ernie: FakeBatchServer) -> None:
    from types import SimpleNamespace

    answers = ask("{who.name} likes {tags[1]}", [{"who": SimpleNamespace(name="Li"), "tags": ["tea", "rain"]}])
    assert list(answers) == ["echo: Li likes rain"]


def test_braces_in_values_are_sent_as_they_are(ernie: FakeBatchServer) -> None:
    value = "{x} {{y}} {text.__class__} {0}"
    assert list(ask("Q: {text}", [value])) == [f"echo: Q: {value}"]


@pytest.mark.parametrize("rows, where", [
    ([{"a": 1, "b": 2}, {"a": 3}], r"\{b\}, which row 1 does not have"),
    (["fine", 3], r"Row 1 \(int\) has no column names"),
])
def test_a_later_row_without_the_column_fails_before_anything_is_sent(ernie: FakeBatchServer, rows: list[Any],
                                                                       where: str) -> None:
    template = "{a} {b}" if isinstance(rows[0], dict) else "{text}"
    with pytest.raises(ContextError, match=where):
        ask(template, rows)
    assert ernie.chat_requests == []


def test_a_format_a_later_value_does_not_fit_is_reported_before_sending(ernie: FakeBatchServer) -> None:
    with pytest.raises(ContextError, match=r"could not be filled from row 2 .*NoneType"):
        ask("Price {p:.2f}", [{"p": 1.5}, {"p": 2}, {"p": None}])
    with pytest.raises(ContextError, match=r"could not be filled from row 0 .*Unknown format code"):
        ask("{text:.2f}", ["a string"])
    assert ernie.chat_requests == []


def test_a_field_nested_in_a_format_spec_is_a_column_too(ernie: FakeBatchServer) -> None:
    with pytest.raises(ContextError, match=r"\{digits\}, which row 0 does not have"):
        ask("{p:.{digits}f}", [{"p": 1.0}])
    assert list(ask("{p:.{digits}f}", [{"p": 1.0, "digits": 3}])) == ["echo: 1.000"]


def test_an_empty_table_still_checks_its_columns(ernie: FakeBatchServer) -> None:
    pd = pytest.importorskip("pandas")
    with pytest.raises(ContextError, match=r"\{review\}, which the table does not have \(its columns: text\)"):
        ask("{review}", pd.DataFrame({"text": []}))
    assert list(ask("{text}", pd.DataFrame({"text": []}))) == []


# -- the numbers a run takes -------------------------------------------------------------------
@pytest.mark.parametrize("options, word", [
    ({"concurrency": 0}, "concurrency"), ({"concurrency": -1}, "concurrency"), ({"concurrency": "4"}, "concurrency"),
    ({"concurrency": 2.5}, "concurrency"), ({"rpm": -5}, "rpm"), ({"rpm": "60"}, "rpm"),
    ({"rpm": float("nan")}, "rpm"), ({"tpm": "x"}, "tpm"), ({"tpm": -1}, "tpm"),
])
def test_bad_run_numbers_are_one_paragraph_before_sending(ernie: FakeBatchServer, options: dict[str, Any],
                                                          word: str) -> None:
    rows = ["never sent"]
    with pytest.raises(ConfigError, match=rf"nbllm.map: {word} takes .*Nothing was sent"):
        nbllm.map("{text}", rows, provider="ernie", progress=False, **options)
    with pytest.raises(ConfigError, match=rf"nbllm.imap: {word} takes"):
        nbllm.imap("{text}", rows, provider="ernie", **options)  # at the call, not at the first next()
    assert ernie.chat_requests == []


@pytest.mark.parametrize("texts, options, message", [
    (["a"], {"concurrency": 0}, "concurrency takes"),
    (["a", "b"], {"batch_size": 0}, "batch_size takes"),
    (["a", "b"], {"batch_size": -2}, "batch_size takes"),
    (None, {}, "takes a text or a list of texts, not NoneType"),
])
def test_bad_embed_arguments_are_one_paragraph(ernie: FakeBatchServer, texts: Any, options: dict[str, Any],
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        nbllm.embed(texts, provider="ernie", **options)
    assert ernie.embed_requests == []


# -- a hostile embeddings server -----------------------------------------------------------------
def _item(index: Any, vector: Any) -> dict[str, Any]:
    return {"object": "embedding", "index": index, "embedding": vector}


@pytest.mark.parametrize("body, problem", [
    ({"data": [_item(0, [1.0, 2.0]), _item(0, [3.0, 4.0])]}, "indexes"),
    ({"data": [_item(5, [1.0, 2.0]), _item(7, [3.0, 4.0])]}, "indexes"),
    ({"data": [_item("1", [1.0, 2.0]), _item(0, [3.0, 4.0])]}, "indexes"),
    ({"data": [_item(0, [1.0, 2.0]), _item(1, [3.0])]}, "different lengths"),
    ({"data": [_item(0, [1.0] * 9 + ["x"]), _item(1, [3.0] * 10)]}, "not a finite number"),
    ({"data": [_item(0, [True, False]), _item(1, [3.0, 4.0])]}, "not a finite number"),
    (b'{"data": [{"index": 0, "embedding": [NaN, 1.0]}, {"index": 1, "embedding": [3.0, 4.0]}]}', "not a finite"),
    ({"data": [_item(0, [1.0, 2.0])]}, "got 1 vectors"),
])
def test_an_embeddings_answer_that_does_not_fit_the_texts_is_refused(ernie: FakeBatchServer, body: Any,
                                                                     problem: str) -> None:
    ernie.enqueue(ErrorReply(200, body, content_type="application/json"))
    with pytest.raises(ProtocolError, match=problem):
        nbllm.embed(["first", "second"], provider="ernie")


def test_vectors_come_back_in_index_order_or_as_sent_without_indexes(ernie: FakeBatchServer) -> None:
    pytest.importorskip("numpy")
    ernie.enqueue(ErrorReply(200, {"data": [_item(1, [2.0, 2.0]), _item(0, [1.0, 1.0])]}))
    assert nbllm.embed(["a", "b"], provider="ernie").tolist() == [[1.0, 1.0], [2.0, 2.0]]
    ernie.enqueue(ErrorReply(200, {"data": [{"embedding": [3.0, 3.0]}, {"embedding": [4.0, 4.0]}]}))
    assert nbllm.embed(["c", "d"], provider="ernie").tolist() == [[3.0, 3.0], [4.0, 4.0]]


# -- %%llm --over ------------------------------------------------------------------------------
@pytest.mark.parametrize("line, message", [
    ("%%llm -p ernie --over rows -o class", "-o needs a variable name, got 'class'"),
    ("%%llm -p ernie --over rows -o rows", "would replace the rows themselves"),
    ("%%llm -p ernie --over rows -o out --rpm -3", "rpm takes requests a minute"),
    ("%%llm -p ernie --over rows[:1] -o out", "assign it first (rows = rows[:1]) and write --over rows"),
])
def test_cell_over_refuses_outputs_and_rates_that_lose_data(ipy: Shell, ernie: FakeBatchServer, line: str,
                                                            message: str) -> None:
    rows = ["a", "b"]
    ipy.shell.user_ns["rows"] = rows
    cell = ipy.run(f"{line}\nQ: {{text}}")
    assert cell.error is not None and message in str(cell.error)
    assert ipy.shell.user_ns["rows"] is rows and ernie.chat_requests == []


def test_interrupting_a_cell_over_keeps_finished_rows_and_a_rerun_sends_only_the_rest(
        ipy: Shell, ernie: FakeBatchServer) -> None:
    ernie.delay = 0.1
    ipy.shell.user_ns["rows"] = [str(i) for i in range(80)]
    cell_text = "%%llm -p ernie --over rows -o labels --rpm 0 --concurrency 2\nQ: {text}"
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    cell = ipy.run(cell_text)
    timer.cancel()
    assert isinstance(cell.error, KeyboardInterrupt)
    assert "The answers so far are in labels." in cell.stderr + cell.stdout
    first = list(ipy.shell.user_ns["labels"])
    answered = {i for i, v in enumerate(first) if isinstance(v, str)}
    assert len(first) == 80 and answered and len(answered) < 80
    assert all(first[i] == f"echo: Q: {i}" for i in answered)
    sent = len(ernie.chat_requests)
    ernie.delay = 0.0
    again = ipy.run(cell_text)
    assert again.error is None
    assert list(ipy.shell.user_ns["labels"]) == [f"echo: Q: {i}" for i in range(80)]
    resent = {int(r.json["messages"][-1]["content"].removeprefix("Q: ")) for r in ernie.chat_requests[sent:]}
    unanswered = set(range(80)) - answered
    assert resent <= unanswered  # every row answered before came from the log
    # a row in flight at the interrupt may have been logged as it was cancelled: it comes from the log
    # too (no second request), though the first run's results could not hold it; at most one per slot
    assert len(unanswered - resent) <= 2


# -- the cache word -------------------------------------------------------------------------------
def test_cache_is_nbllms_word_never_sent_to_the_provider(ernie: FakeBatchServer, monkeypatch: pytest.MonkeyPatch) -> None:
    ask("{text}", ["again"])
    sent = len(ernie.chat_requests)
    assert list(ask("{text}", ["again"], cache="off")) == ["echo: again"]  # asked again, as for nbllm.chat
    assert len(ernie.chat_requests) == sent + 1
    assert all("cache" not in r.json for r in ernie.chat_requests)
    assert list(ask("{text}", ["again"])) == ["echo: again"] and len(ernie.chat_requests) == sent + 1  # resumes
    with pytest.raises(ConfigError, match="cache must be off, on or replay"):
        ask("{text}", ["again"], cache="sometimes")
    monkeypatch.setenv("NBLLM_CACHE", "replay")  # replay from the environment wins over cache="off"
    assert ask("{text}", ["never asked"], cache="off")[0].reason == "ReplayMissError"
    assert len(ernie.chat_requests) == sent + 1


def test_cell_over_no_cache_asks_every_row_again(ipy: Shell, ernie: FakeBatchServer) -> None:
    ipy.shell.user_ns["rows"] = ["a", "b"]
    assert ipy.run("%%llm -p ernie --over rows -o out --rpm 0\nQ: {text}").error is None
    assert len(ernie.chat_requests) == 2
    assert ipy.run("%%llm -p ernie --over rows -o out --rpm 0 --no-cache\nQ: {text}").error is None
    assert len(ernie.chat_requests) == 4 and all("cache" not in r.json for r in ernie.chat_requests)


# -- a provider that says to wait ----------------------------------------------------------------------
@pytest.mark.parametrize("retry_after", ["garbage", "nan", "-5", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_a_long_or_garbage_retry_after_never_stalls_in_silence(ernie: FakeBatchServer,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str],
                                                               retry_after: str) -> None:
    from nbllm.batch import limiter
    from nbllm.providers import http

    monkeypatch.setattr(http, "MAX_RETRY_WAIT", 0.8)  # the engine's cap on any one wait (60 s in use)
    monkeypatch.setattr(limiter, "NOTICE_S", 0.7)  # above the first backoff without Retry-After (at most 0.625 s)
    ernie.enqueue(ErrorReply(429, {"error": {"code": "rate_limit", "message": "slow down"}},
                             headers={"Retry-After": retry_after}))
    assert list(ask("{text}", [f"after {retry_after}"])) == [f"echo: after {retry_after}"]
    err = capsys.readouterr().err
    capped = retry_after.startswith("Wed")  # a date 70 years away: waited the cap, and said so
    assert ("ernie asked to slow down (rate limit): every request to it waits 1 s" in err) is capped, err


def test_a_provider_without_an_embeddings_protocol_says_so_even_with_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIANFAN_AK", "ak-not-used-1234567890")
    monkeypatch.setenv("QIANFAN_SK", "sk-not-used-1234567890")
    for model in (None, "embedding-v1"):
        with pytest.raises(ConfigError, match=r"ernie-v1\) serves no embeddings nbllm can call"):
            nbllm.embed(["a"], provider="ernie-v1", model=model)


@pytest.mark.parametrize("texts, message", [
    (["fine", "", "also fine"], r"text 1 is empty \(or only spaces\)"),
    (["fine", "   \n", ""], r"text 1 is empty \(or only spaces\) \(and 1 more\)"),
    (["fine", None], r"text 1 is NoneType None, not a text"),
    (["fine", float("nan")], r"text 1 is float nan, not a text"),
    ("", r"text 0 is empty"),
])
def test_embed_refuses_empty_and_missing_texts_before_sending(ernie: FakeBatchServer, texts: Any,
                                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        nbllm.embed(texts, provider="ernie")
    assert ernie.embed_requests == []


def test_embed_of_nothing_sends_nothing(ernie: FakeBatchServer) -> None:
    assert len(nbllm.embed([], provider="ernie")) == 0 and ernie.embed_requests == []


# -- checked by the pass and holding: kept so they keep holding ---------------------------------------
def test_a_key_in_rows_system_params_and_server_errors_never_reaches_any_output(
        use_fake: UseFake, capsys: pytest.CaptureFixture[str]) -> None:
    import glob
    import os

    from nbllm.cli import main
    from nbllm.log import store
    from tests.fakes.openai_server import qianfan_error

    with FakeBatchServer() as srv:
        key = use_fake("ernie", srv, key="sk-redteam-KEYTEXT-0123456789abcdef")
        srv.answers[f"bad {key}"] = qianfan_error(400, "invalid", f"the key {key} is not allowed here")
        answers = nbllm.map("{text}", [f"row {key}", f"bad {key}"], provider="ernie", progress=False,
                            system=f"system {key}", user=key)
        streamed = list(nbllm.imap("{text}", [f"imap {key}"], provider="ernie"))
        shown = [repr(answers), str(answers.summary), repr(answers[1]), str(answers[1].error), repr(streamed)]
        store.close_all()
        for argv in (["logs", "--json"], ["logs", "show", "1"], ["logs", "show", "2"], ["logs"]):
            assert main(argv) == 0
        out = capsys.readouterr()
        shown += [out.out, out.err]
        files = glob.glob(os.environ["NBLLM_LOG"] + "*")
        raw = b"".join(Path(f).read_bytes() for f in files)
        assert any(key in r.json["messages"][-1]["content"] for r in srv.chat_requests)  # the key was really there
    assert answers[1].reason == "BadRequestError" and "not allowed here" in answers[1].message
    assert "KEYTEXT" not in "\n".join(shown) and b"KEYTEXT" not in raw


def test_maps_from_several_threads_at_once_each_get_their_own_answers(ernie: FakeBatchServer) -> None:
    ernie.delay = 0.01
    results: dict[int, Any] = {}

    def run(n: int) -> None:
        results[n] = ask("{text}", [f"t{n}-{i}" for i in range(20)], concurrency=4)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {n: list(r) for n, r in results.items()} == {n: [f"echo: t{n}-{i}" for i in range(20)] for n in range(4)}


def test_an_abandoned_imap_leaves_no_thread_behind(ernie: FakeBatchServer) -> None:
    ernie.delay = 0.02
    it = nbllm.imap("{text}", (f"lazy {i}" for i in range(10_000)), provider="ernie", concurrency=2, rpm=0)
    next(it)
    it.close()  # what leaving a for loop early does
    assert not [t for t in threading.enumerate() if t.name == "nbllm-batch"]
    assert len(ernie.chat_requests) < 100  # bounded by concurrency and the hand-off buffer, not the input


def test_map_inside_a_cell_that_awaits_runs_beside_the_kernels_loop(ipy: Shell, ernie: FakeBatchServer) -> None:
    cell = ipy.run("import asyncio, nbllm\nawait asyncio.sleep(0)\n"
                   "inside = nbllm.map('{text}', ['x', 'y'], provider='ernie', progress=False, rpm=0)")
    assert cell.error is None and list(ipy.shell.user_ns["inside"]) == ["echo: x", "echo: y"]


def test_swapped_arguments_and_a_non_text_system_are_one_paragraph(ernie: FakeBatchServer) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["a"]})
    with pytest.raises(ContextError, match=r"template comes first and is a str.*not DataFrame \(the rows go second\)"):
        nbllm.map(frame, "Label: {text}", provider="ernie", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ContextError, match="not NoneType"):
        nbllm.imap(None, ["a"], provider="ernie")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="system takes the system prompt as a str, not int"):
        ask("{text}", ["a"], system=5)
    assert ernie.chat_requests == []


def test_a_row_the_server_never_answers_times_out_alone(ernie: FakeBatchServer) -> None:
    from tests.fakes.batch_server import Answer

    ernie.answers["stuck"] = Answer(text="too late", delay=3.0)
    answers = ask("{text}", ["one", "stuck", "two"], timeout=0.5)
    assert answers[0] == "echo: one" and answers[2] == "echo: two"
    assert answers[1].reason == "RequestTimeout" and "did not answer in time" in answers[1].message


def test_answers_reused_from_the_log_are_never_silent(ernie: FakeBatchServer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # e.g. two llama.cpp servers both serving "default": the log cannot tell the model changed
    ask("{text}", ["p", "q"])
    assert "nbllm.map" not in capsys.readouterr().err  # a fresh run that went well says nothing
    ask("{text}", ["p", "q", "r"])
    err = capsys.readouterr().err
    assert '3 of 3 rows answered (2 from the log). Rows from the log were not asked again; cache="off"' in err
    dict(nbllm.imap("{text}", ["p"], provider="ernie"))
    assert "nbllm.imap: 1 of 1 rows answered (1 from the log)" in capsys.readouterr().err


def test_a_frame_with_a_duplicate_index_and_missing_values_keeps_row_order(ernie: FakeBatchServer) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["a", None, float("nan"), "d"]}, index=[7, 7, 3, 3])
    frame["label"] = ask("Q {text}", frame)
    # missing values are sent as text (docs/batch.md): drop or fill them first to avoid paying for them
    assert frame["label"].tolist() == ["echo: Q a", "echo: Q nan", "echo: Q nan", "echo: Q d"]
    assert ask("Q {text}", frame.dropna(subset=["text"])).tolist() == ["echo: Q a", "echo: Q d"]
