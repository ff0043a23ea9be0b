"""ERNIE v1 (wenxinworkshop) over real loopback sockets: token, streaming, error codes, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbllm
from nbllm.config import get_spec
from nbllm.errors import (
    AuthError,
    BadRequestError,
    ContentFilterError,
    MissingKeyError,
    ProviderError,
    QuotaError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)
from nbllm.messages import ChatRequest
from nbllm.providers.ernie_v1 import ErnieV1Provider, build_body, endpoint_for
from tests.fakes.ernie_server import CHAT_PREFIX, ErnieAnswer, ErnieError, FakeErnieServer


@pytest.fixture
def ernie() -> Iterator[FakeErnieServer]:
    with FakeErnieServer() as server:
        yield server


@pytest.fixture
def env(ernie: FakeErnieServer, monkeypatch: pytest.MonkeyPatch) -> FakeErnieServer:
    """Route ernie-v1 to the fake and give it the fake's AK/SK through the environment."""
    monkeypatch.setenv("NBLLM_ERNIE_V1_BASE_URL", ernie.base_url)
    monkeypatch.setenv("QIANFAN_AK", ernie.api_key)
    monkeypatch.setenv("QIANFAN_SK", ernie.secret_key)
    return ernie


def make_provider(server: FakeErnieServer, key: str | None = None, **kw: object) -> ErnieV1Provider:
    spec = get_spec("ernie-v1").with_changes(base_url=server.base_url)
    kw.setdefault("sleep", lambda s: None)
    return ErnieV1Provider(spec, key or server.key, **kw)  # type: ignore[arg-type]


def ask(text: str = "你好", model: str = "ERNIE-4.0-8K", **params: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model=model, params=dict(params))


def assert_no_secret(server: FakeErnieServer, *texts: str) -> None:
    tokens = list(server.tokens)
    for text in texts:
        for secret in (server.api_key, server.secret_key, *tokens):
            assert secret not in text


def test_streams_until_is_end_through_the_public_api(env: FakeErnieServer) -> None:
    env.enqueue(ErnieAnswer(text=["文心", "一言", "来了"], finish_reason="normal"))
    pieces = list(nbllm.stream("介绍一下你自己", provider="ernie-v1:ERNIE-4.0-8K", system="你是助手"))
    assert pieces == ["文心", "一言", "来了"]
    req = env.chat_requests[0]
    assert req.path == CHAT_PREFIX + "completions_pro"
    assert req.json["system"] == "你是助手"
    assert req.json["messages"] == [{"role": "user", "content": "介绍一下你自己"}]
    assert req.json["stream"] is True
    assert req.query["access_token"] == [next(iter(env.tokens))]


def test_reply_carries_usage_and_finish_reason(env: FakeErnieServer) -> None:
    reply = nbllm.chat("hi", provider="ernie-v1:ERNIE-Speed-8K", temperature=0.3, max_tokens=50)
    assert reply.text == "echo: hi"
    assert reply.finish_reason == "stop"
    assert reply.usage.completion_tokens == len("echo: hi")
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    body = env.chat_requests[0].json
    assert env.chat_requests[0].path.endswith("/ernie_speed")
    assert body["temperature"] == 0.3 and body["max_output_tokens"] == 50 and "max_tokens" not in body


def test_non_streamed_call_reads_result(env: FakeErnieServer) -> None:
    env.enqueue(ErnieAnswer(text="一次说完", finish_reason="length"))
    reply = nbllm.chat("hi", provider="ernie-v1", stream=False)
    assert reply.text == "一次说完"
    assert reply.finish_reason == "length"
    assert env.chat_requests[0].json["stream"] is False


def test_token_is_cached_across_calls(env: FakeErnieServer) -> None:
    for n in range(3):
        assert nbllm.chat(f"q{n}", provider="ernie-v1").text == f"echo: q{n}"
    assert len(env.token_requests) == 1
    query = env.token_requests[0].query
    assert query["grant_type"] == ["client_credentials"]
    assert query["client_id"] == [env.api_key] and query["client_secret"] == [env.secret_key]


def test_concurrent_calls_share_one_token_fetch() -> None:
    with FakeErnieServer(token_delay=0.3) as server:
        provider = make_provider(server)
        answers: list[str] = []
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def call(n: int) -> None:
            start.wait()
            try:
                answers.append(provider.complete(ask(f"q{n}")).text)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        provider.close()
    assert errors == []
    assert sorted(answers) == sorted(f"echo: q{n}" for n in range(8))
    assert len(server.token_requests) == 1
    assert provider.token_fetches == 1


def test_expired_token_is_refreshed_once_and_the_call_succeeds(ernie: FakeErnieServer) -> None:
    provider = make_provider(ernie)
    assert provider.complete(ask("first")).text == "echo: first"
    ernie.expire_tokens()
    assert "".join(d.text for d in provider.stream(ask("second"))) == "echo: second"
    assert len(ernie.token_requests) == 2
    used = [r.query["access_token"][0] for r in ernie.chat_requests]
    assert len(used) == 3 and used[0] == used[1] != used[2]


def test_a_token_refused_twice_is_an_auth_error() -> None:
    with FakeErnieServer(expires_in=0) as server:  # every token is expired on arrival
        provider = make_provider(server)
        with pytest.raises(AuthError) as info:
            provider.complete(ask())
    assert info.value.code == "111"
    assert len(server.token_requests) == 2 and len(server.chat_requests) == 2
    assert_no_secret(server, str(info.value), repr(provider))


@pytest.mark.parametrize(
    ("code", "cls"),
    [(18, RateLimitError), (336501, RateLimitError), (336502, RateLimitError), (17, QuotaError),
     (14, AuthError), (336003, BadRequestError), (336005, BadRequestError), (336100, ServerError),
     (336000, ServerError)],
)
def test_error_codes_map_to_the_error_tree(ernie: FakeErnieServer, code: int, cls: type[ProviderError]) -> None:
    ernie.enqueue(ErnieError(code, f"fake error {code}"))
    provider = make_provider(ernie, max_retries=0)
    with pytest.raises(cls) as info:
        list(provider.stream(ask()))
    assert type(info.value) is cls
    assert info.value.code == str(code)
    assert f"fake error {code}" in info.value.message
    assert "ernie-v1" in info.value.message


def test_rate_limit_is_retried_before_any_text(ernie: FakeErnieServer) -> None:
    waits: list[float] = []
    ernie.enqueue(ErnieError(336501, "Rate limit reached for RPM"), ErnieError(18, "Open api qps request limit reached"))
    provider = make_provider(ernie, sleep=waits.append)
    assert provider.complete(ask("again")).text == "echo: again"
    assert len(waits) == 2
    assert len(ernie.token_requests) == 1 and len(ernie.chat_requests) == 3


def test_content_safety_verdict_is_a_content_filter_error(ernie: FakeErnieServer) -> None:
    ernie.enqueue(ErnieAnswer(text="我不能回答这个问题。", need_clear_history=True))
    with pytest.raises(ContentFilterError) as info:
        list(make_provider(ernie).stream(ask()))
    assert "我不能回答这个问题。" in info.value.message
    assert "%llm reset" in info.value.message


@pytest.mark.parametrize(
    ("answer", "why"),
    [(ErnieAnswer(text=["one ", "two ", "three"], cut_after=2, data_space=False), "connection broke"),
     (ErnieAnswer(text=["one ", "two "], is_end=False), "without its last chunk (is_end)")],
)
def test_stream_ending_before_is_end_keeps_the_partial_text(ernie: FakeErnieServer, answer: ErnieAnswer,
                                                            why: str) -> None:
    ernie.enqueue(answer)
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for delta in make_provider(ernie).stream(ask()):
            received.append(delta.text)
    assert received == ["one ", "two "]
    assert info.value.partial_text == "one two "
    assert why in info.value.message


def test_message_rule_is_checked_before_sending(ernie: FakeErnieServer) -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                          model="ERNIE-3.5-8K")
    with pytest.raises(BadRequestError) as info:
        list(make_provider(ernie).stream(request))
    assert "odd number" in info.value.message and "user, assistant" in info.value.message
    assert ernie.requests == []


def test_wrong_secret_key_is_an_auth_error_without_the_key(ernie: FakeErnieServer) -> None:
    wrong = "sk-wrong-" + "9" * 20
    provider = make_provider(ernie, key=f"{ernie.api_key}:{wrong}")
    with pytest.raises(AuthError) as info:
        provider.complete(ask())
    assert "Client authentication failed" in info.value.message
    assert "QIANFAN_AK" in info.value.message
    assert wrong not in str(info.value) and ernie.api_key not in str(info.value)
    assert ernie.chat_requests == []


def test_missing_secret_names_both_variables(ernie: FakeErnieServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_ERNIE_V1_BASE_URL", ernie.base_url)
    monkeypatch.setenv("QIANFAN_AK", ernie.api_key)
    with pytest.raises(MissingKeyError) as info:
        nbllm.chat("hi", provider="ernie-v1")
    assert "QIANFAN_AK" in info.value.message and "QIANFAN_SK" in info.value.message
    assert ernie.requests == []


def test_no_secret_in_errors_or_reprs(ernie: FakeErnieServer) -> None:
    provider = make_provider(ernie, max_retries=0)
    provider.complete(ask())
    token = next(iter(ernie.tokens))
    ernie.enqueue(ErnieError(336001, f"invalid argument, access_token={token} client_secret={ernie.secret_key}"))
    with pytest.raises(BadRequestError) as info:
        provider.complete(ask())
    texts = [str(info.value), info.value._render_traceback_()[0], repr(provider)]
    assert_no_secret(ernie, *texts)
    assert "access_token=24.***" in str(info.value)  # the token masked, the parameter name kept


@pytest.mark.parametrize(
    ("model", "suffix"),
    [("ERNIE-4.0-8K", "completions_pro"), ("ernie-bot-4", "completions_pro"), ("ERNIE-3.5-8K", "completions"),
     ("ERNIE-Lite-8K-0922", "eb-instant"), ("ERNIE-4.0-Turbo-8K", "ernie-4.0-turbo-8k"),
     ("ERNIE-Speed-128K", "ernie-speed-128k"), ("Meta-Llama-3-8B", "llama_3_8b"), ("my_custom_svc", "my_custom_svc")],
)
def test_endpoint_suffixes(model: str, suffix: str) -> None:
    assert endpoint_for(model) == suffix


def test_body_moves_system_renames_options_and_merges_extra_body() -> None:
    request = ChatRequest(
        messages=[{"role": "system", "content": "S1"}, {"role": "user", "content": "u1"},
                  {"role": "assistant", "content": "a1"}, {"role": "system", "content": "S2"},
                  {"role": "user", "content": "u2"}],
        model="ERNIE-4.0-8K", params={"max_tokens": 9, "stop": "END", "user": "u-1", "top_p": 0.5, "timeout": 3},
    )
    body = build_body(request, True, {"disable_search": True})
    assert body == {
        "messages": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
                     {"role": "user", "content": "u2"}],
        "stream": True, "disable_search": True, "system": "S1\n\nS2",
        "max_output_tokens": 9, "stop": ["END"], "user_id": "u-1", "top_p": 0.5,
    }


def test_cli_answers_and_shows_no_secret(env: FakeErnieServer, tmp_path: Path) -> None:
    run_env = {**os.environ, "NBLLM_CONFIG": str(tmp_path / "none.toml")}
    ok = subprocess.run([sys.executable, "-m", "nbllm", "chat", "-p", "ernie-v1:ERNIE-4.0-8K", "--stats", "你好"],
                        capture_output=True, text=True, env=run_env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "echo: 你好"
    env.enqueue(*[ErnieError(336501, "Rate limit reached for RPM")] * 3)
    failed = subprocess.run([sys.executable, "-m", "nbllm", "chat", "-p", "ernie-v1", "again"],
                            capture_output=True, text=True, env=run_env, timeout=60)
    assert failed.returncode != 0
    assert "(code 336501)" in failed.stderr and "Wait a moment" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert_no_secret(env, ok.stdout, ok.stderr, failed.stdout, failed.stderr)


def test_cell_magic_answers_and_errors_show_no_secret(env: FakeErnieServer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "nbllm")
        assert shell.run_cell("%%llm -p ernie-v1 -o said\n你好").success
        assert shell.user_ns["said"] == "echo: 你好"
        env.expire_tokens()
        env.enqueue(ErnieError(17, "Open api daily request limit reached"))
        failed = shell.run_cell("%%llm -p ernie-v1 --no-history\nagain")
        assert isinstance(failed.error_in_exec, QuotaError)
        shown = capsys.readouterr()
        assert "echo: 你好" in shown.out and "Open api daily request limit reached" in shown.out + shown.err
        assert_no_secret(env, shown.out, shown.err)
    finally:
        shell.run_line_magic("unload_ext", "nbllm")
        InteractiveShell.clear_instance()


def test_an_expired_token_inside_a_stream_is_an_auth_error() -> None:
    """Code 111 after the stream has begun cannot be retried with a new token: one AuthError paragraph."""
    from nbllm.errors import AuthError
    from nbllm.providers.ernie_v1 import ResultDecoder

    decoder = ResultDecoder(get_spec("ernie-v1"))
    assert decoder.feed('{"result": "partial", "is_end": false}')[0].text == "partial"
    with pytest.raises(AuthError) as caught:
        decoder.feed('{"error_code": 111, "error_msg": "Access token expired"}')
    assert "expired" in str(caught.value).lower()
