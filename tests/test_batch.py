"""nbllm.map / imap / embed / achat / astream and %%llm --over against loopback servers."""

from __future__ import annotations

import _thread
import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import nbllm
from nbllm.batch.outcome import Failed
from nbllm.batch.table import Answers, Interrupted
from nbllm.errors import AuthError, BadRequestError, ConfigError, ContextError, MissingKeyError
from tests.conftest import UseFake
from tests.fakes.batch_server import Answer, ErrorReply, FakeBatchServer, vector_of
from tests.fakes.openai_server import qianfan_error
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[FakeBatchServer]:
    with FakeBatchServer() as srv:
        yield srv


@pytest.fixture
def ernie(server: FakeBatchServer, use_fake: UseFake) -> FakeBatchServer:
    use_fake("ernie", server)
    return server


def sent_prompts(server: FakeBatchServer) -> list[str]:
    return [r.json["messages"][-1]["content"] for r in server.chat_requests]


# -- map -----------------------------------------------------------------------------------
def test_map_answers_every_row_in_order(ernie: FakeBatchServer) -> None:
    rows = [{"city": c, "n": i} for i, c in enumerate(["Beijing", "Shanghai", "Shenzhen", "Chengdu", "Wuhan"])]
    answers = nbllm.map("{n}. Describe {city} in one word.", rows, provider="ernie", progress=False)
    assert isinstance(answers, Answers)
    assert list(answers) == [f"echo: {r['n']}. Describe {r['city']} in one word." for r in rows]
    assert sorted(sent_prompts(ernie)) == sorted(a.removeprefix("echo: ") for a in answers)
    assert answers.summary.answered == 5 and answers.summary.failed == 0


def test_map_over_a_dataframe_returns_a_series_on_its_index(ernie: FakeBatchServer) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["good", "bad", "fine"], "stars": [5, 1, 3]}, index=["r7", "r3", "r9"])
    frame["label"] = nbllm.map("Label ({stars}): {text}", frame, provider="ernie", progress=False, temperature=0)
    assert frame.loc["r3", "label"] == "echo: Label (1): bad"
    assert frame["label"].tolist() == ["echo: Label (5): good", "echo: Label (1): bad", "echo: Label (3): fine"]
    assert {r.json["temperature"] for r in ernie.chat_requests} == {0}


def test_plain_strings_fill_text_and_system_is_sent(ernie: FakeBatchServer) -> None:
    answers = nbllm.map("Translate: {text}", ["猫", "狗"], provider="ernie", system="Be brief.", progress=False)
    assert list(answers) == ["echo: Translate: 猫", "echo: Translate: 狗"]
    assert all(r.json["messages"][0] == {"role": "system", "content": "Be brief."} for r in ernie.chat_requests)


def test_a_failed_row_keeps_its_slot_and_the_summary_says_why(ernie: FakeBatchServer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ernie.answers["Q: two"] = qianfan_error(400, "invalid_argument", "prompt rejected")
    ernie.answers["Q: three"] = Answer(text="a partial answer that breaks", cut_after=2)
    answers = nbllm.map("Q: {text}", ["one", "two", "three", "four"], provider="ernie", progress=False)
    assert answers[0] == "echo: Q: one" and answers[3] == "echo: Q: four"
    assert isinstance(answers[1], Failed) and answers[1].reason == "BadRequestError"
    assert isinstance(answers[2], Failed) and answers[2].reason == "StreamInterrupted"  # never the partial text
    assert isinstance(answers[1].error, BadRequestError) and "prompt rejected" in answers[1].message
    err = capsys.readouterr().err
    assert "2 of 4 rows answered; 2 failed (1 BadRequestError" in err and "1 StreamInterrupted" in err


def test_never_more_than_concurrency_requests_in_flight(ernie: FakeBatchServer) -> None:
    ernie.delay = 0.05
    answers = nbllm.map("{text}", [str(i) for i in range(24)], provider="ernie", concurrency=3, rpm=0, progress=False)
    assert answers.summary.answered == 24
    assert 1 < ernie.peak <= 3


def test_a_429_pauses_every_worker_for_its_retry_after(ernie: FakeBatchServer) -> None:
    ernie.delay = 0.02
    ernie.enqueue(qianfan_error(429, "rate_limit_exceeded", "Rate limit reached for RPM", headers={"Retry-After": "0.4"}))
    answers = nbllm.map("{text}", [str(i) for i in range(12)], provider="ernie", concurrency=4, rpm=0, progress=False)
    assert answers.summary.answered == 12  # the refused row was retried after the pause
    first = ernie.arrivals[0]  # the request that got the 429 (answered at once)
    paused = [t for t in ernie.arrivals[1:] if first + 0.05 < t < first + 0.35]
    assert paused == [], "a request was sent while the provider asked everyone to wait"


def test_requests_are_paced_to_rpm(ernie: FakeBatchServer) -> None:
    nbllm.map("{text}", [str(i) for i in range(5)], provider="ernie", rpm=300, concurrency=5, progress=False)
    arrivals = ernie.arrivals
    # 300 a minute: one every 0.2 s, never faster. Arrival times carry the machine's jitter, and
    # the first request also opened the connection (it arrives late), so the span from the second
    # to the last is checked: three gaps of 0.2 s, less a generous 0.1 s of jitter.
    assert len(arrivals) == 5 and arrivals[-1] - arrivals[1] >= 0.5


def test_a_refused_key_stops_the_run(server: FakeBatchServer, use_fake: UseFake) -> None:
    server.api_key = "the-right-key-123456"
    key = use_fake("ernie", server, key="a-wrong-key-987654")
    answers = nbllm.map("{text}", [str(i) for i in range(50)], provider="ernie", concurrency=2, rpm=0,
                        progress=False)
    assert len(server.chat_requests) <= 2
    assert {a.reason for a in answers} == {"AuthError", "NotSent"}
    assert all(key not in a.message for a in answers)


def test_a_missing_key_or_column_fails_before_anything_is_sent(ernie: FakeBatchServer) -> None:
    with pytest.raises(MissingKeyError):
        nbllm.map("{text}", ["a"], provider="qwen", progress=False)
    with pytest.raises(ContextError, match=r"\{review\}"):
        nbllm.map("Label: {review}", [{"text": "a"}], provider="ernie", progress=False)
    assert ernie.chat_requests == []


def test_interrupt_stops_at_once_and_keeps_finished_rows(ernie: FakeBatchServer) -> None:
    ernie.delay = 0.15
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(Interrupted) as caught:
        nbllm.map("{text}", [str(i) for i in range(200)], provider="ernie", concurrency=2, rpm=0, progress=False)
    timer.cancel()
    results = caught.value.results
    answered = [r for r in results if isinstance(r, str)]
    assert len(results) == 200 and answered and len(answered) < 200
    assert all(r == f"echo: {i}" for i, r in enumerate(results) if isinstance(r, str))
    assert {r.reason for r in results if isinstance(r, Failed)} == {"NotSent"}
    assert len(ernie.chat_requests) <= len(answered) + 2  # only the two in flight were cut


def test_running_the_same_map_again_sends_only_rows_without_an_answer(ernie: FakeBatchServer) -> None:
    ernie.answers["Q: b"] = qianfan_error(500, "internal_error", "busy")  # fails on every retry
    ernie.answers["Q: c"] = Answer(text="a partial answer that breaks", cut_after=2)  # logged, never reused
    rows = ["a", "b", "c", "d"]
    first = nbllm.map("Q: {text}", rows, provider="ernie", rpm=0, progress=False)
    assert first.summary.answered == 2 and first.summary.failures == {"ServerError": 1, "StreamInterrupted": 1}
    sent_before = len(ernie.chat_requests)
    ernie.answers.clear()
    again = nbllm.map("Q: {text}", rows, provider="ernie", rpm=0, progress=False)
    assert list(again) == ["echo: Q: a", "echo: Q: b", "echo: Q: c", "echo: Q: d"]
    assert sorted(sent_prompts(ernie)[sent_before:]) == ["Q: b", "Q: c"]  # a and d came from the log
    assert again.summary.from_log == 2


def test_replay_mode_wins_over_the_batch_cache(ernie: FakeBatchServer, monkeypatch: pytest.MonkeyPatch) -> None:
    nbllm.map("Q: {text}", ["a"], provider="ernie", rpm=0, progress=False)
    monkeypatch.setenv("NBLLM_CACHE", "replay")
    answers = nbllm.map("Q: {text}", ["a", "new"], provider="ernie", rpm=0, progress=False)
    assert answers[0] == "echo: Q: a" and answers[1].reason == "ReplayMissError"
    assert "row 1 of the batch" in answers[1].message
    assert sent_prompts(ernie) == ["Q: a"]


# -- imap ----------------------------------------------------------------------------------
def test_imap_yields_keys_and_answers_from_a_generator(ernie: FakeBatchServer) -> None:
    rows = ({"text": f"row {i}"} for i in range(30))
    got = dict(nbllm.imap("{text}", rows, provider="ernie", concurrency=4, rpm=0))
    assert got == {i: f"echo: row {i}" for i in range(30)}


def test_imap_over_a_series_yields_its_index_labels(ernie: FakeBatchServer) -> None:
    pd = pytest.importorskip("pandas")
    texts = pd.Series(["x", "y"], index=[10, 20])
    assert dict(nbllm.imap("say {text}", texts, provider="ernie")) == {10: "echo: say x", 20: "echo: say y"}


# -- %%llm --over ----------------------------------------------------------------------------
def test_cell_over_a_dataframe_stores_the_answers(ipy: Shell, ernie: FakeBatchServer, use_fake: UseFake) -> None:
    pd = pytest.importorskip("pandas")
    ipy.shell.user_ns["reviews"] = pd.DataFrame({"text": ["great", "awful"]})
    cell = ipy.run("%%llm -p ernie --over reviews -o labels -t 0.1\nOne word for: {text}")
    assert cell.error is None
    labels = ipy.shell.user_ns["labels"]
    assert labels.tolist() == ["echo: One word for: great", "echo: One word for: awful"]
    assert {r.json["temperature"] for r in ernie.chat_requests} == {0.1}
    assert "2/2" in cell.stderr  # the progress bar's last state in a terminal


@pytest.mark.parametrize("line, message", [
    ("%%llm --over nothing_here", "not a variable"),
    ("%%llm --over rows -f code", "-f applies to a single answer"),
    ("%%llm --over rows -p ernie,qwen", "one provider"),
    ("%%llm --over rows --concurrency 0", "1 or more"),
])
def test_cell_over_usage_mistakes(ipy: Shell, ernie: FakeBatchServer, line: str, message: str) -> None:
    from IPython.core.error import UsageError

    ipy.shell.user_ns["rows"] = ["a"]
    cell = ipy.run(f"{line}\nQ: {{text}}")
    assert isinstance(cell.error, UsageError) and message in str(cell.error)
    assert ernie.chat_requests == []


# -- achat / astream -------------------------------------------------------------------------
def test_achat_and_astream(ernie: FakeBatchServer) -> None:
    async def main() -> tuple[Any, list[str]]:
        reply = await nbllm.achat("hello", provider="ernie", max_tokens=20)
        pieces = [p async for p in nbllm.astream("count", provider="ernie")]
        return reply, pieces

    reply, pieces = asyncio.run(main())
    assert reply.text == "echo: hello" and reply.provider == "ernie" and reply.usage.total_tokens
    assert ernie.chat_requests[0].json["max_tokens"] == 20
    assert len(pieces) > 1 and "".join(pieces) == "echo: count"


def test_achat_errors_are_the_same_and_masked(server: FakeBatchServer, use_fake: UseFake) -> None:
    server.api_key = "the-right-key-123456"
    key = use_fake("ernie", server, key="a-wrong-key-987654")
    with pytest.raises(AuthError) as caught:
        asyncio.run(nbllm.achat("hi", provider="ernie"))
    assert key not in str(caught.value) and "QIANFAN_API_KEY" in str(caught.value)


def test_many_achat_calls_at_once(ernie: FakeBatchServer) -> None:
    async def main() -> list[str]:
        replies = await asyncio.gather(*(nbllm.achat(f"q{i}", provider="ernie") for i in range(10)))
        return [r.text for r in replies]

    assert asyncio.run(main()) == [f"echo: q{i}" for i in range(10)]


def test_top_level_await_in_a_notebook_cell(ipy: Shell, ernie: FakeBatchServer) -> None:
    cell = ipy.run("import nbllm\nreply = await nbllm.achat('hi there', provider='ernie')\nprint(reply.text)")
    assert cell.error is None and "echo: hi there" in cell.stdout


# -- embed -----------------------------------------------------------------------------------
def test_embed_batches_by_the_provider_limit_and_keeps_order(server: FakeBatchServer, use_fake: UseFake) -> None:
    np = pytest.importorskip("numpy")
    use_fake("qwen", server)
    server.max_inputs = 10  # DashScope's documented limit for text-embedding-v3
    texts = [f"document number {i}" + "!" * i for i in range(25)]
    vectors = nbllm.embed(texts, provider="qwen")
    assert isinstance(vectors, np.ndarray) and vectors.shape == (25, 3)
    assert vectors.tolist() == [vector_of(t) for t in texts]
    sent = [r.json for r in server.embed_requests]
    assert [len(b["input"]) for b in sent] == [10, 10, 5] and {b["model"] for b in sent} == {"text-embedding-v3"}


def test_embed_one_string_model_choice_and_no_numpy(server: FakeBatchServer, use_fake: UseFake,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake("glm", server)
    one = nbllm.embed("hello", provider="glm:embedding-2")
    assert list(one) == vector_of("hello") and server.embed_requests[-1].json["model"] == "embedding-2"
    monkeypatch.setitem(__import__("sys").modules, "numpy", None)
    assert nbllm.embed(["a", "bb"], provider="glm", model="embedding-3") == [vector_of("a"), vector_of("bb")]


def test_embed_with_ollama_and_hugging_face(server: FakeBatchServer, monkeypatch: pytest.MonkeyPatch,
                                            use_fake: UseFake) -> None:
    monkeypatch.setenv("NBLLM_OLLAMA_BASE_URL", server.url)
    assert nbllm.embed(["x", "yy"], provider="ollama").tolist() == [vector_of("x"), vector_of("yy")]
    assert server.requests[-1].path == "/api/embed" and server.requests[-1].json["model"] == "bge-m3"
    key = use_fake("hf", server)
    assert nbllm.embed(["z"], provider="hf").tolist() == [vector_of("z")]
    sent = server.requests[-1]
    assert sent.path == "/hf-inference/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction"
    assert sent.json == {"inputs": ["z"]} and sent.headers["authorization"] == f"Bearer {key}"


def test_embed_failures_are_clear(server: FakeBatchServer, use_fake: UseFake) -> None:
    use_fake("qwen", server)
    server.enqueue(ErrorReply(400, {"error": {"code": "InvalidParameter", "message": "input too long"}}))
    with pytest.raises(BadRequestError, match="input too long"):
        nbllm.embed(["a"], provider="qwen")
    use_fake("deepseek", server)
    with pytest.raises(ConfigError, match="DeepSeek .deepseek. serves no embeddings"):
        nbllm.embed(["a"], provider="deepseek")
