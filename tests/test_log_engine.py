"""The log and the cache on the engine's Response: nbllm.chat/stream and `nbllm chat` against the
loopback server, one row per exchange, cache hits without a request, replay without a key."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

import nbllm
from nbllm.cli import main
from nbllm.errors import AuthError, MissingKeyError, ReplayMissError, StreamInterrupted
from nbllm.log import store
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer, qianfan_error


def rows() -> list[dict]:
    path = Path(os.environ["NBLLM_LOG"])
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM exchanges ORDER BY id")]
    finally:
        conn.close()


def test_chat_is_logged_with_every_field(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    key = use_fake("ernie", openai_server)
    reply = nbllm.chat("hi", provider="ernie", system="Be brief.", temperature=0.2)
    (row,) = rows()
    assert (row["source"], row["provider"], row["model"]) == ("api", "ernie", "ernie-4.0-turbo-8k")
    assert row["host"] == f"127.0.0.1:{openai_server.port}" and row["system"] == "Be brief."
    assert json.loads(row["params"]) == {"temperature": 0.2} and row["answer"] == reply.text == "echo: hi"
    assert json.loads(row["messages"]) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert row["total_tokens"] == reply.usage.total_tokens and row["first_token_s"] is not None
    assert row["cached"] == 0 and row["error_class"] is None and reply.meta["log_id"] == row["id"]
    assert row["notebook"] is None and row["version"] == nbllm.__version__
    store.close_all()
    for f in Path(os.environ["NBLLM_LOG"]).parent.iterdir():
        assert key.encode() not in f.read_bytes()


def test_failures_and_partial_answers_are_logged(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("ernie", openai_server)
    openai_server.enqueue(ErrorReply(401, qianfan_error(401, "invalid_iam_token", "bad key")))
    with pytest.raises(AuthError):
        nbllm.chat("refused", provider="ernie")
    openai_server.enqueue(Answer(text=["one ", "two ", "three"], cut_after=2))
    with pytest.raises(StreamInterrupted):
        nbllm.chat("cut", provider="ernie")
    refused, cut = rows()
    assert refused["error_class"] == "AuthError" and "bad key" in refused["error_message"] and refused["answer"] == ""
    assert (cut["error_class"], cut["answer"]) == ("StreamInterrupted", "one two ")


def test_cache_on_answers_a_repeat_without_a_request(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("ernie", openai_server)
    first = nbllm.chat("same", provider="ernie", cache="on")
    again = nbllm.chat("same", provider="ernie", cache="on")
    streamed = "".join(nbllm.stream("same", provider="ernie", cache="on"))
    assert len(openai_server.chat_requests) == 1
    assert again.text == streamed == first.text == "echo: same" and again.cached and not first.cached
    assert again.usage == first.usage
    assert nbllm.chat("same", provider="ernie", temperature=0.5, cache="on").text == "echo: same"
    assert len(openai_server.chat_requests) == 2  # other parameters: another fingerprint
    nbllm.chat("same", provider="ernie")  # off (the default): a live call
    assert len(openai_server.chat_requests) == 3
    assert [r["cached"] for r in rows()] == [0, 1, 1, 0, 0]


def test_replay_needs_no_key_and_fails_a_miss(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake("ernie", openai_server)
    recorded = nbllm.chat("recorded", provider="ernie")
    monkeypatch.delenv("QIANFAN_API_KEY")
    monkeypatch.setenv("NBLLM_CACHE", "replay")
    assert nbllm.chat("recorded", provider="ernie").text == recorded.text
    assert nbllm.chat("recorded", provider="ernie", cache="off").cached  # replay wins: never a live call
    with pytest.raises(ReplayMissError) as miss:
        nbllm.chat("never asked", provider="ernie")
    assert "this nbllm.chat call asking 'never asked'" in miss.value.message
    assert len(openai_server.chat_requests) == 1 and len(rows()) == 3  # a miss is not an exchange
    monkeypatch.delenv("NBLLM_CACHE")
    with pytest.raises(MissingKeyError):  # outside replay the key is needed again
        nbllm.chat("recorded", provider="ernie")


def test_log_off_and_broken_log_never_cost_the_answer(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("ernie", openai_server)
    path = Path(os.environ["NBLLM_LOG"])
    monkeypatch.setenv("NBLLM_LOG", "off")
    assert nbllm.chat("a", provider="ernie").text == "echo: a" and not path.exists()
    monkeypatch.setenv("NBLLM_LOG", str(path))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not sqlite" * 200)
    reply = nbllm.chat("b", provider="ernie")
    err = capsys.readouterr().err
    assert reply.text == "echo: b" and reply.meta["log_id"] is None
    assert err.count("nbllm: warning: this exchange was not written to the log") == 1


def test_cli_chat_is_logged_as_cli(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("qwen", openai_server)
    assert main(["chat", "-p", "qwen", "from the terminal"]) == 0
    assert capsys.readouterr().out == "echo: from the terminal\n"
    (row,) = rows()
    assert (row["source"], row["provider"], row["prompt"]) == ("cli", "qwen", "from the terminal")
