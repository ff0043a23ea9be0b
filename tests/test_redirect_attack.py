"""A hostile, hurried user against ``nbllm.redirect``: odd URLs, headers, re-entry, live streams.

Same two fakes as tests/test_redirect.py: ``ernie`` (the provider) and ``relay`` (``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

import nbllm
from nbllm.redirect import active, status, stop
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer
from tests.test_redirect import ERNIE_KEY, HI, OPENAI_KEY, Fakes, models_sent

__all__ = ["fakes"]
from tests.test_redirect import fakes  # noqa: E402, F401 - the shared fixture


@pytest.fixture(autouse=True)
def _no_redirect_left() -> Iterator[None]:
    yield
    stop(quiet=True)


def test_explicit_openai_base_url_spellings_are_redirected(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    for base in ("https://api.openai.com/v1/", "https://API.OpenAI.com/v1", "https://api.openai.com/v1"):
        openai.OpenAI(base_url=base, max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert [r.path for r in fakes.ernie.requests] == ["/v1/chat/completions"] * 3


def test_openai_base_url_with_uppercase_host_and_trailing_slash(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fakes.relay.base_url.replace("127.0.0.1", "LOCALHOST") + "/")
    nbllm.redirect("ernie")
    openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert fakes.relay.requests == [] and models_sent(fakes.ernie) == ["ernie-4.5-turbo-128k"]


def test_openai_base_url_credentials_are_never_printed(fakes: Fakes, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = fakes.relay.base_url.replace("http://", "http://relayuser:relaypass-9f8e7d@")
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    nbllm.redirect("ernie")
    openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert fakes.relay.requests == [] and len(fakes.ernie.requests) == 1
    said = status() + stop() + capsys.readouterr().err
    assert "relaypass-9f8e7d" not in said and "relayuser" not in said
    for req in fakes.ernie.requests:
        assert "relaypass" not in str(req.headers)


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {OPENAI_KEY}"},
    {"OpenAI-Organization": "org-secret123", "OpenAI-Project": "proj_secret"},
    {"api-key": OPENAI_KEY},
    {"X-My-Relay-Key": OPENAI_KEY, "X-Trace": f"k={OPENAI_KEY}"},
])
def test_default_headers_with_openai_credentials_never_reach_the_provider(fakes: Fakes, headers: dict[str, str]) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI(default_headers=headers, max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=HI, extra_headers=headers)
    sent = fakes.ernie.requests[-1].headers
    assert sent["authorization"] == f"Bearer {ERNIE_KEY}"
    assert not any(v in str(sent) for v in headers.values())


def test_a_key_in_the_query_string_never_reaches_the_provider(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI(default_query={"api-key": OPENAI_KEY, "keep": "1"}, max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=HI)
    req = fakes.ernie.requests[-1]
    assert OPENAI_KEY not in req.path and "api-key" not in req.query and req.query.get("keep") == ["1"]


def test_copied_and_raw_response_clients_are_redirected(fakes: Fakes) -> None:
    client = openai.OpenAI(max_retries=0)
    nbllm.redirect("ernie")
    client.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=HI)
    client.copy(max_retries=1).chat.completions.create(model="gpt-4o", messages=HI)
    raw = client.with_raw_response.chat.completions.create(model="gpt-4o", messages=HI)
    assert raw.parse().choices[0].message.content == "echo: hi"
    with client.with_streaming_response.chat.completions.create(model="gpt-4o", messages=HI) as streamed:
        assert b"echo: hi" in streamed.read()
    assert len(fakes.ernie.requests) == 4 and fakes.relay.requests == []


def test_the_same_redirect_object_entered_twice_redirects_both_times(fakes: Fakes) -> None:
    client = openai.OpenAI(max_retries=0)
    handle = nbllm.redirect("ernie")
    with handle:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    with handle:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert active() is None
    assert len(fakes.ernie.requests) == 2 and fakes.relay.requests == []


def test_an_exception_inside_with_restores_and_propagates(fakes: Fakes) -> None:
    with pytest.raises(ZeroDivisionError), nbllm.redirect("ernie"):
        1 / 0  # noqa: B018
    assert active() is None
    openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert len(fakes.relay.requests) == 1


@pytest.mark.parametrize("model", ["gpt-4o\u00e9", "", "gpt-4o:latest", "../../etc/passwd", "GPT-4O", " gpt-4o "])
def test_odd_model_names_are_sent_not_crashed_on(fakes: Fakes, model: str) -> None:
    nbllm.redirect("ernie")
    openai.OpenAI(max_retries=0).chat.completions.create(model=model, messages=HI)
    assert len(models_sent(fakes.ernie)) == 1


def test_redirect_started_while_a_relay_stream_is_open(fakes: Fakes) -> None:
    fakes.relay.enqueue(Answer(text="from the relay", chunk_delay=0.01))
    stream = openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI, stream=True)
    first = next(iter(stream))
    with nbllm.redirect("ernie"):
        rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert (first.choices[0].delta.content or "") + rest == "from the relay"
    assert len(fakes.ernie.requests) == 1 and len(fakes.relay.requests) == 1


def test_off_while_a_provider_stream_is_open(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    stream = openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI, stream=True)
    chunks = iter(stream)
    next(chunks)
    stop(quiet=True)
    assert "echo: hi".endswith("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert len(fakes.relay.requests) == 1


def test_asyncio_tasks_share_the_redirect(fakes: Fakes) -> None:
    nbllm.redirect("ernie")

    async def main() -> list[str]:
        client = openai.AsyncOpenAI(max_retries=0)
        replies = await asyncio.gather(*(client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": str(i)}]) for i in range(6)))
        await client.close()
        return [r.choices[0].message.content for r in replies]

    assert sorted(asyncio.run(main())) == [f"echo: {i}" for i in range(6)]
    assert len(fakes.ernie.requests) == 6


@pytest.mark.parametrize("body", ["<html>bad gateway</html>", [1, 2], {"error": "just a string"}, {"error": None}])
def test_odd_error_bodies_keep_the_sdks_exception(fakes: Fakes, body: object) -> None:
    nbllm.redirect("ernie")
    fakes.ernie.enqueue(ErrorReply(502 if isinstance(body, str) else 400, body,
                                   content_type="text/html" if isinstance(body, str) else None))
    with pytest.raises(openai.APIStatusError) as caught:
        openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert "redirected" in str(caught.value) and ERNIE_KEY not in str(caught.value)


def test_redirect_to_a_keyless_provider_sends_no_key_at_all(fakes: Fakes, use_fake: UseFake) -> None:
    with FakeOpenAIServer(require_auth=False) as vllm:
        use_fake("vllm", vllm, key="")  # vLLM without --api-key: no key is needed
        nbllm.redirect("vllm:my-model")
        openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
        assert "authorization" not in vllm.requests[-1].headers and models_sent(vllm) == ["my-model"]


def test_a_provider_base_url_with_credentials_is_never_printed(fakes: Fakes, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NBLLM_ERNIE_BASE_URL", fakes.ernie.base_url.replace("http://", "http://gw:gwpass-1a2b3c@"))
    handle = nbllm.redirect("ernie")
    said = repr(handle) + handle.message + status() + stop() + capsys.readouterr().err
    assert "gwpass-1a2b3c" not in said and "127.0.0.1" in said


def test_openai_base_url_with_a_path_prefix_matches_whole_segments_only(fakes: Fakes,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    relay = fakes.relay.base_url.removesuffix("/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{relay}/gateway/openai/v1/")
    nbllm.redirect("ernie")
    openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert [r.path for r in fakes.ernie.requests] == ["/v1/chat/completions"]
    other = openai.OpenAI(base_url=f"{relay}/gateway/openai/v10", max_retries=0)  # another service: left alone
    other.chat.completions.create(model="gpt-4o", messages=HI)  # the fake answers any path
    assert [r.path for r in fakes.relay.requests] == ["/gateway/openai/v10/chat/completions"]


def test_toggling_while_threads_send_never_mixes_keys_and_hosts(fakes: Fakes) -> None:
    import threading

    client = openai.OpenAI(max_retries=0)
    stop_flag = threading.Event()
    failures: list[BaseException] = []

    def send() -> None:
        while not stop_flag.is_set():
            try:
                client.chat.completions.create(model="gpt-4o", messages=HI)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return

    workers = [threading.Thread(target=send) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(15):
            nbllm.redirect("ernie")
            stop(quiet=True)
    finally:
        stop_flag.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert {r.headers["authorization"] for r in fakes.ernie.requests} <= {f"Bearer {ERNIE_KEY}"}
    assert {r.headers["authorization"] for r in fakes.relay.requests} <= {f"Bearer {OPENAI_KEY}"}
    assert set(models_sent(fakes.relay)) <= {"gpt-4o"}
