"""Compare mode (``-p a,b``) and fallback (``-p a||b``) against two loopback servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import Answer, FakeOpenAIServer, qianfan_error
from tests.magics_shell import Shell

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def two(ipy: Shell, use_fake) -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:  # noqa: ANN001
    with FakeOpenAIServer() as first, FakeOpenAIServer() as second:
        ipy.secrets += [use_fake("ernie", first), use_fake("hunyuan", second)]
        yield first, second


def test_compare_with_one_failing_provider_still_shows_the_others_and_the_table(
    ipy: Shell, two: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    first, second = two
    first.enqueue(Answer(["From ", "ERNIE."], chunk_delay=0.02))
    second.enqueue(qianfan_error(401, "invalid_api_key", "bad key"))
    cell = ipy.run("%%llm -p ernie,hunyuan,qwen -o both\nSame question")
    assert cell.error is None
    board = [d for d in cell.displays if d["transient"]]
    assert {d["transient"]["display_id"] for d in board} == {board[0]["transient"]["display_id"]}
    final = board[-1]["data"]["text/markdown"]
    assert "### ernie · ernie-4.0-turbo-8k\n\nFrom ERNIE." in final
    assert "### hunyuan · hy3-preview\n\n**AuthError**: " in final
    assert "### qwen\n\n**MissingKeyError**: " in final
    table = cell.displays[-1]["data"]["text/plain"].splitlines()
    assert table[0].split() == ["provider", "model", "first", "token", "total", "tokens", "error"]
    assert table[1].split()[:2] == ["ernie", "ernie-4.0-turbo-8k"] and table[1].split()[-1] == "2"
    assert table[2].split() == ["hunyuan", "hy3-preview", "AuthError"]
    assert table[3].split() == ["qwen", "MissingKeyError"]
    assert ipy.ns["both"] == {"ernie": "From ERNIE."}
    assert [r.json["messages"][-1]["content"] for r in first.chat_requests + second.chat_requests] == [
        "Same question"] * 2


def test_compare_streams_providers_at_the_same_time(ipy: Shell, two: tuple[FakeOpenAIServer, ...]) -> None:
    first, second = two
    first.enqueue(Answer([f"a{i} " for i in range(20)], chunk_delay=0.03))
    second.enqueue(Answer([f"b{i} " for i in range(20)], chunk_delay=0.03))
    cell = ipy.run("%%llm ernie hunyuan\nrace")
    assert cell.error is None
    texts = [d["data"]["text/markdown"] for d in cell.displays if d["transient"]]
    # some intermediate view holds text from both lanes while neither is finished
    assert any("a1 " in t and "b1 " in t and "a19 " not in t and "b19 " not in t for t in texts)


def test_compare_where_every_provider_fails_fails_the_cell(ipy: Shell, two: tuple[FakeOpenAIServer, ...]) -> None:
    first, second = two
    first.enqueue(qianfan_error(401, "invalid_api_key", "bad key"))
    second.enqueue(qianfan_error(400, "invalid_model", "no such model"))
    cell = ipy.run("%%llm -p ernie,hunyuan\nq")
    assert type(cell.error).__name__ == "AuthError"
    assert cell.stdout.count("\n") == 1 and "Every provider in the comparison failed" in cell.stdout
    assert cell.displays[-1]["data"]["text/plain"].splitlines()[2].split()[-1] == "BadRequestError"


def test_compare_in_terminal_prints_each_answer_and_the_table(ipy: Shell, two: tuple[FakeOpenAIServer, ...]) -> None:
    ipy.shell.display_formatter.active_types = ["text/plain"]
    cell = ipy.run("%%llm -p ernie,hunyuan\nhi")
    assert cell.error is None and cell.displays == []
    assert "== ernie · ernie-4.0-turbo-8k\n\necho: hi" in cell.stdout
    assert "== hunyuan · hy3-preview\n\necho: hi" in cell.stdout
    assert cell.stdout.rstrip().splitlines()[-3].split()[0] == "provider"


def test_fallback_answers_from_the_second_provider(ipy: Shell, two: tuple[FakeOpenAIServer, ...]) -> None:
    first, second = two
    first.enqueue(qianfan_error(401, "invalid_api_key", "bad key"))
    second.enqueue(Answer("From HunYuan."))
    cell = ipy.run("%%llm -p ernie||hunyuan -o ans\nq")
    assert cell.error is None
    assert ipy.ns["ans"] == "From HunYuan."
    assert cell.footer().startswith("hunyuan · hy3-preview · ")
    assert cell.footer().endswith("after ernie (AuthError) failed")
    ipy.run("%%llm\nfollow-up")  # history remembers the answer that was given
    assert [m["content"] for m in first.chat_requests[-1].json["messages"]] == ["q", "From HunYuan.", "follow-up"]


def test_fallback_skips_a_provider_without_a_key(ipy: Shell, two: tuple[FakeOpenAIServer, ...]) -> None:
    cell = ipy.run("%%llm qwen||ernie\nq")
    assert cell.error is None
    assert cell.final_answer()["text/markdown"] == "echo: q"
    assert cell.footer().endswith("after qwen (MissingKeyError) failed")


def test_fallback_does_not_switch_once_text_has_arrived(ipy: Shell, two: tuple[FakeOpenAIServer, ...]) -> None:
    first, second = two
    first.enqueue(Answer(["half ", "way"], cut_after=1, finish_reason=None))
    cell = ipy.run("%%llm -p ernie||hunyuan\nq")
    assert type(cell.error).__name__ == "StreamInterrupted"
    assert cell.final_answer()["text/markdown"] == "half "
    assert second.chat_requests == []


def test_fallback_where_all_fail_names_every_provider(ipy: Shell, two: tuple[FakeOpenAIServer, ...]) -> None:
    first, second = two
    first.enqueue(qianfan_error(401, "invalid_api_key", "bad key"))
    second.enqueue(qianfan_error(400, "invalid_model", "no such model"))
    cell = ipy.run("%%llm -p ernie||hunyuan\nq")
    assert type(cell.error).__name__ == "BadRequestError"
    assert cell.stdout.count("\n") == 1 and "Tried before it, also failing: ernie (AuthError)." in cell.stdout
