"""Status codes, transport failures and retries become the right NbllmError; keys never leak."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

import nbllm
from nbllm.config import get_spec
from nbllm.errors import (
    AuthError,
    BadRequestError,
    ConnectError,
    ContentFilterError,
    NbllmError,
    ProtocolError,
    QuotaError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    StreamInterrupted,
)
from nbllm.messages import ChatRequest
from nbllm.providers.openai_compat import OpenAICompatProvider
from tests.conftest import UseFake
from tests.fakes.loopback import free_port
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer, qianfan_error

KEY = "sk-live-0123456789abcdefXYZ"


def make(server_url: str, provider: str = "ernie", sleeps: list[float] | None = None,
         **kw: Any) -> OpenAICompatProvider:
    spec = get_spec(provider).with_changes(base_url=server_url)
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return OpenAICompatProvider(spec, KEY, sleep=record, **kw)


def ask() -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")


def text(provider: OpenAICompatProvider) -> str:
    return "".join(d.text for d in provider.stream(ask()))


@pytest.mark.parametrize(
    ("provider", "reply", "cls"),
    [
        ("ernie", qianfan_error(401, "invalid_api_key", "bad key"), AuthError),
        ("ernie", qianfan_error(403, "no_parameter_permission", "no access", "access_denied"), AuthError),
        ("deepseek", ErrorReply(402, {"error": {"message": "Insufficient Balance", "type": "unknown_error"}}),
         QuotaError),
        ("glm", ErrorReply(429, {"error": {"code": "1113", "message": "account in arrears"}}), QuotaError),
        ("ernie", qianfan_error(429, "tpm_rate_limit_exceeded", "tpm exceeded", "rate_limit_exceeded"),
         RateLimitError),
        ("kimi", ErrorReply(400, {"error": {"type": "content_filter", "message": "high risk"}}), ContentFilterError),
        ("glm", ErrorReply(400, {"error": {"code": "1301", "message": "unsafe input"}}), ContentFilterError),
        ("ernie", qianfan_error(400, "invalid_model", "model is empty"), BadRequestError),
        ("openai", ErrorReply(404, {"error": {"code": "model_not_found", "message": "no such model"}}),
         BadRequestError),
        ("deepseek", ErrorReply(422, {"error": {"message": "bad params"}}), BadRequestError),
        ("qwen", ErrorReply(500, {"error": {"message": "internal oops", "type": "server_error"}}), ServerError),
        ("deepseek", ErrorReply(503, {"error": {"message": "server overloaded"}}), ServerError),
        ("hunyuan", ErrorReply(502, "<html>Bad Gateway upstream</html>", content_type="text/html"), ServerError),
    ],
)
def test_status_maps_to_class_with_quoted_message(openai_server: FakeOpenAIServer, provider: str,
                                                  reply: ErrorReply, cls: type[NbllmError]) -> None:
    openai_server.enqueue(reply)
    with pytest.raises(NbllmError) as info:
        text(make(openai_server.base_url, provider, max_retries=0))
    err = info.value
    assert type(err) is cls
    assert err.provider == provider and err.status == reply.status
    provider_text = reply.body["error"]["message"] if isinstance(reply.body, dict) else "Bad Gateway upstream"
    assert provider_text in err.message
    assert err.message.startswith(f"{get_spec(provider).label} ({provider}) answered HTTP {reply.status}")
    assert err._render_traceback_() == [f"{cls.__name__}: {err.message}"]


def test_provider_message_with_key_is_redacted(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(ErrorReply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    with pytest.raises(AuthError) as info:
        text(make(openai_server.base_url))
    assert KEY not in str(info.value) and "Incorrect API key provided: sk-***" in str(info.value)


def test_malformed_json_answer_is_protocol_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(ErrorReply(200, b"{'choices': broken", content_type="application/json"))
    with pytest.raises(ProtocolError, match="not JSON"):
        make(openai_server.base_url).complete(ask())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "2"}, 2.0), ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5), ({}, None)],
)
def test_429_then_200_waits_as_told(openai_server: FakeOpenAIServer, headers: dict[str, str],
                                    expected: float | None) -> None:
    openai_server.enqueue(qianfan_error(429, "rpm_rate_limit_exceeded", "slow down", "rate_limit_exceeded",
                                        headers=headers))
    sleeps: list[float] = []
    assert text(make(openai_server.base_url, sleeps=sleeps)) == "echo: hi"
    assert len(openai_server.chat_requests) == 2 and len(sleeps) == 1
    if expected is None:
        assert 0.375 <= sleeps[0] <= 0.625  # first backoff step, 0.5 s with jitter
    else:
        assert sleeps == [expected]


def test_retry_after_http_date(openai_server: FakeOpenAIServer) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    openai_server.enqueue(ErrorReply(429, {"error": {"message": "later"}}, headers={"Retry-After": when}))
    sleeps: list[float] = []
    text(make(openai_server.base_url, sleeps=sleeps))
    assert 20.0 < sleeps[0] <= 30.0


def test_5xx_retried_with_backoff_then_gives_up(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(*[ErrorReply(503, {"error": {"message": "overloaded"}})] * 3)
    sleeps: list[float] = []
    with pytest.raises(ServerError, match="overloaded"):
        text(make(openai_server.base_url, sleeps=sleeps, max_retries=2))
    assert len(openai_server.chat_requests) == 3
    assert 0.375 <= sleeps[0] <= 0.625 and 0.75 <= sleeps[1] <= 1.25


def test_4xx_is_not_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(qianfan_error(400, "invalid_model", "model is empty"))
    sleeps: list[float] = []
    with pytest.raises(BadRequestError):
        text(make(openai_server.base_url, sleeps=sleeps))
    assert (len(openai_server.chat_requests), sleeps) == (1, [])


def test_no_retry_once_text_was_delivered(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(Answer(["half ", "of it"], cut_after=1), Answer(["would be the retry"]))
    sleeps: list[float] = []
    with pytest.raises(StreamInterrupted) as info:
        text(make(openai_server.base_url, sleeps=sleeps))
    assert info.value.partial_text == "half "
    assert (len(openai_server.chat_requests), sleeps, openai_server.pending) == (1, [], 1)


def test_connection_refused_is_connect_error_after_retries() -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ConnectError) as info:
        text(make(url, sleeps=sleeps))
    assert len(sleeps) == 2
    assert url in info.value.message and "NBLLM_ERNIE_BASE_URL" in info.value.message


def test_timeout_through_python_api(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("ernie", openai_server)
    openai_server.enqueue(Answer(["late"], delay=3.0))
    with pytest.raises(RequestTimeout, match="did not answer in time"):
        nbllm.chat("hi", provider="ernie", timeout=0.3)


def test_key_in_base_url_query_is_redacted() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1?api_key=verysecretvalue123"
    with pytest.raises(ConnectError) as info:
        text(make(url, max_retries=0))
    assert "verysecretvalue123" not in str(info.value) and "api_key=***" in str(info.value)


def test_key_absent_from_reprs_and_logs(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                        caplog: pytest.LogCaptureFixture) -> None:
    key = use_fake("ernie", openai_server)
    caplog.set_level(logging.DEBUG)
    reply = nbllm.chat("hi", provider="ernie")
    from nbllm.session import default_session

    session = default_session()
    provider, _ = session.resolve("ernie")
    texts = [repr(reply), str(reply), repr(session), repr(provider), repr(provider.spec), caplog.text]
    assert reply.text == "echo: hi" and "POST" in caplog.text  # httpx did log the request
    for shown in texts:
        assert key not in shown


def test_set_key_is_used_and_redacted(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("qwen", openai_server, key="")
    nbllm.set_key("qwen", "  session-only-key-42  ")
    assert nbllm.chat("hi", provider="qwen").text == "echo: hi"
    assert openai_server.chat_requests[0].headers["authorization"] == "Bearer session-only-key-42"
    err = AuthError("the key session-only-key-42 was refused")
    assert "session-only-key-42" not in str(err) and "ses***" in str(err)
