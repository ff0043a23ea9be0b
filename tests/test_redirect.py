"""``nbllm.redirect`` with the real ``openai`` SDK (and LangChain) against loopback fakes.

Two fakes per test: ``ernie`` (the provider) and ``relay`` (``OPENAI_BASE_URL``, standing in for
OpenAI). The OpenAI key must never reach the provider; after ``off`` the relay gets traffic again.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

import nbllm
from nbllm.errors import ConfigError, MissingKeyError, UnknownProviderError
from nbllm.redirect import PLACEHOLDER_KEY, active, status, stop
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer, qianfan_error

OPENAI_KEY = "sk-openaiKEYmustNOTleave0000000001"
ERNIE_KEY = "bce-v3-ernie-key-7f3a9c"
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Fakes:
    ernie: FakeOpenAIServer
    relay: FakeOpenAIServer

    def assert_no_openai_key(self) -> None:
        for req in self.ernie.requests:
            assert OPENAI_KEY not in str(req.headers) and OPENAI_KEY.encode() not in req.body
            assert OPENAI_KEY not in req.path + str(req.query)


@pytest.fixture
def fakes(use_fake: UseFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    with FakeOpenAIServer(api_key=ERNIE_KEY) as ernie, FakeOpenAIServer(api_key=OPENAI_KEY) as relay:
        use_fake("ernie", ernie, key=ERNIE_KEY)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", relay.base_url)
        both = Fakes(ernie, relay)
        yield both
        both.assert_no_openai_key()


@pytest.fixture(autouse=True)
def _no_redirect_left() -> Iterator[None]:
    yield
    stop(quiet=True)


def logged() -> list[dict]:
    """The exchange log's rows (the test's own log file)."""
    path = os.environ["NBLLM_LOG"]
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM exchanges ORDER BY id")]
    finally:
        conn.close()


def models_sent(server: FakeOpenAIServer) -> list[str]:
    return [r.json["model"] for r in server.requests if isinstance(r.json, dict)]


# -- what the provider sees ----------------------------------------------------------------------
def test_clients_before_after_and_module_level_reach_the_provider(fakes: Fakes) -> None:
    before = openai.OpenAI()
    nbllm.redirect("ernie")
    after = openai.OpenAI()
    assert before.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "echo: hi"
    after.chat.completions.create(model="gpt-4o-mini", messages=HI)
    openai.chat.completions.create(model="gpt-3.5-turbo", messages=HI)
    assert [r.path for r in fakes.ernie.requests] == ["/v1/chat/completions"] * 3
    assert {r.headers["authorization"] for r in fakes.ernie.requests} == {f"Bearer {ERNIE_KEY}"}
    assert models_sent(fakes.ernie) == ["ernie-4.5-turbo-128k", "ernie-speed-128k", "ernie-speed-128k"]
    assert fakes.relay.requests == []


def test_each_mapping_is_announced_once(fakes: Fakes, capsys: pytest.CaptureFixture[str]) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI()
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    client.chat.completions.create(model="ernie-speed-128k", messages=HI)  # a provider name: kept, no line
    err = capsys.readouterr().err
    assert err.count("nbllm redirect: gpt-4o -> ernie-4.5-turbo-128k (strong tier)") == 1
    assert "ernie-speed-128k ->" not in err
    assert models_sent(fakes.ernie)[-1] == "ernie-speed-128k"
    assert "Models mapped so far: gpt-4o -> ernie-4.5-turbo-128k." in status()


def test_streaming_passes_through(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    stream = openai.OpenAI().chat.completions.create(model="gpt-4o", messages=HI, stream=True,
                                                     stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert fakes.ernie.requests[-1].json["stream"] is True


def test_embeddings_use_the_embedding_tier(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    reply = openai.OpenAI().embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [len(d.embedding) for d in reply.data] == [8, 8]
    assert fakes.ernie.requests[-1].path == "/v1/embeddings"
    assert models_sent(fakes.ernie) == ["embedding-v1"]


def test_tools_and_response_format_reach_the_provider_unchanged(fakes: Fakes) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Hangzhou"}'}}
    fakes.ernie.enqueue(ErrorReply(200, {
        "id": "as-1", "object": "chat.completion", "created": 1, "model": "ernie-4.5-turbo-128k",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}))
    fakes.ernie.enqueue(Answer(text='{"a": 1, "b": 2}'))
    nbllm.redirect("ernie")
    client = openai.OpenAI()
    reply = client.chat.completions.create(model="gpt-4.1", messages=HI, tools=tools)
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"
    data = client.chat.completions.create(model="gpt-4o", messages=HI, response_format={"type": "json_object"})
    assert data.choices[0].message.content == '{"a": 1, "b": 2}'
    first, second = (r.json for r in fakes.ernie.requests)
    assert first["tools"] == tools and second["response_format"] == {"type": "json_object"}


def test_async_client(fakes: Fakes) -> None:
    async def ask() -> list[str]:
        client = openai.AsyncOpenAI()
        whole = await client.chat.completions.create(model="o3-mini", messages=HI)
        stream = await client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return [whole.choices[0].message.content, "".join(pieces)]

    nbllm.redirect("ernie")
    assert asyncio.run(ask()) == ["echo: hi", "echo: hi"]
    assert models_sent(fakes.ernie) == ["ernie-x1-turbo-32k", "ernie-4.5-turbo-128k"]


def test_langchain_chat_and_embeddings(fakes: Fakes) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(model="gpt-4o-mini", temperature=0)  # made before the redirect
    nbllm.redirect("ernie")
    embeddings = langchain_openai.OpenAIEmbeddings(model="text-embedding-3-small", check_embedding_ctx_length=False)
    assert len(embeddings.embed_documents(["Notebooks are JSON files."])[0]) == 8
    assert llm.invoke("What format are notebooks?").content == "echo: What format are notebooks?"
    assert models_sent(fakes.ernie) == ["embedding-v1", "ernie-speed-128k"]
    assert fakes.relay.requests == []


# -- what is left alone, and off -----------------------------------------------------------------
def test_off_sends_the_next_request_to_openai_base_url_and_restores_the_sdk(fakes: Fakes) -> None:
    from openai import _base_client

    originals = (_base_client.BaseClient._build_request, _base_client.BaseClient._make_status_error_from_response)
    client = openai.OpenAI()
    nbllm.redirect("ernie")
    client.chat.completions.create(model="gpt-4o", messages=HI)
    nbllm.redirect("off")
    client.chat.completions.create(model="gpt-4o", messages=HI)
    assert (_base_client.BaseClient._build_request, _base_client.BaseClient._make_status_error_from_response) \
        == originals
    assert len(fakes.ernie.requests) == 1
    (back,) = fakes.relay.requests
    assert back.headers["authorization"] == f"Bearer {OPENAI_KEY}" and back.json["model"] == "gpt-4o"
    assert active() is None


def test_no_openai_key_leaves_in_the_query_or_the_body(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI(default_query={OPENAI_KEY: "", "relay": f"k-{OPENAI_KEY}", "keep": "1"}, max_retries=0)
    asked = f"Is {OPENAI_KEY} still valid?"
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": asked}], extra_body={
        "api_key": OPENAI_KEY, "relay": {"auth": f"Bearer {OPENAI_KEY}", "region": "eu"}})
    req = fakes.ernie.requests[-1]
    assert req.query == {"keep": ["1"]}
    assert req.json["relay"] == {"region": "eu"} and "api_key" not in req.json
    said = req.json["messages"][0]["content"]
    assert said.startswith("Is ") and said.endswith(" still valid?") and OPENAI_KEY not in said
    assert req.headers["authorization"] == f"Bearer {ERNIE_KEY}"
    fakes.assert_no_openai_key()


def test_an_upload_holding_the_openai_key_is_refused_not_sent(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI(max_retries=0)
    with pytest.raises(ConfigError) as info:
        client.files.create(file=("train.jsonl", f'{{"key": "{OPENAI_KEY}"}}\n'.encode()), purpose="fine-tune")
    assert "OpenAI key" in str(info.value) and OPENAI_KEY not in str(info.value)
    assert fakes.ernie.requests == [] and fakes.relay.requests == []
    with pytest.raises(openai.NotFoundError):  # an upload without the key goes to the provider (no /files there)
        client.files.create(file=("train.jsonl", b'{"prompt": "hi"}\n'), purpose="fine-tune")
    (upload,) = fakes.ernie.requests
    assert upload.path == "/v1/files" and b'{"prompt": "hi"}' in upload.body
    assert upload.headers["content-type"].startswith("multipart/form-data")


def test_the_providers_key_stays_with_its_host_when_the_provider_redirects(fakes: Fakes) -> None:
    with FakeOpenAIServer(api_key="elsewhere-key-1234") as elsewhere:
        fakes.ernie.enqueue(ErrorReply(307, {}, headers={"Location": f"{elsewhere.base_url}/chat/completions"}))
        nbllm.redirect("ernie")
        with pytest.raises(openai.AuthenticationError):  # elsewhere got no key it accepts
            openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
        (followed,) = elsewhere.requests
        assert ERNIE_KEY not in str(followed.headers) and OPENAI_KEY not in str(followed.headers)
    assert fakes.ernie.requests[0].headers["authorization"] == f"Bearer {ERNIE_KEY}"


def test_the_key_is_in_no_repr(fakes: Fakes) -> None:
    handle = nbllm.redirect("ernie")
    assert ERNIE_KEY not in repr(handle) + repr(active()) + status() + handle.message
    assert repr(handle) == f"<nbllm redirect to ernie at {fakes.ernie.base_url}>"


def test_clients_with_their_own_base_url_are_left_alone(fakes: Fakes) -> None:
    with FakeOpenAIServer(api_key="other-key-1234") as other:
        nbllm.redirect("ernie")
        openai.OpenAI(base_url=other.base_url, api_key="other-key-1234").chat.completions.create(
            model="gpt-4o", messages=HI)
        assert models_sent(other) == ["gpt-4o"] and fakes.ernie.requests == []


def test_azure_clients_are_left_alone_with_a_note(fakes: Fakes, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer(require_auth=False) as azure:
        nbllm.redirect("ernie")
        client = openai.AzureOpenAI(azure_endpoint=azure.url, api_key="azure-key-1234", api_version="2024-06-01")
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o", messages=HI)
        assert [r.path for r in azure.requests] == ["/openai/deployments/gpt-4o/chat/completions"] * 2
        assert models_sent(azure) == ["gpt-4o"] * 2
    assert fakes.ernie.requests == []
    assert capsys.readouterr().err.count("an Azure OpenAI client is left alone") == 1


def test_context_manager_restores_the_previous_state(fakes: Fakes, use_fake: UseFake) -> None:
    with FakeOpenAIServer(api_key="qwen-key-12345") as qwen:
        use_fake("qwen", qwen, key="qwen-key-12345")
        client = openai.OpenAI()
        with nbllm.redirect("ernie"):
            with nbllm.redirect("qwen:qwen-max"):
                client.chat.completions.create(model="gpt-4o", messages=HI)
            client.chat.completions.create(model="gpt-4o", messages=HI)
        client.chat.completions.create(model="gpt-4o", messages=HI)
        assert models_sent(qwen) == ["qwen-max"]
    assert models_sent(fakes.ernie) == ["ernie-4.5-turbo-128k"]
    assert models_sent(fakes.relay) == ["gpt-4o"]


def test_model_given_with_the_id_and_overrides(fakes: Fakes) -> None:
    nbllm.redirect("ernie:ernie-4.0-turbo-8k", {"gpt-4o-mini": "ernie-lite-8k"})
    client = openai.OpenAI()
    for model in ("gpt-4o", "gpt-4o-mini", "o1"):
        client.chat.completions.create(model=model, messages=HI)
    client.embeddings.create(model="text-embedding-ada-002", input="x")
    assert models_sent(fakes.ernie) == ["ernie-4.0-turbo-8k", "ernie-lite-8k", "ernie-4.0-turbo-8k", "embedding-v1"]


def test_placeholder_key_lets_clients_be_built_without_an_openai_account(
        fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("OPENAI_API_KEY")
    nbllm.redirect("ernie")
    assert os.environ["OPENAI_API_KEY"] == PLACEHOLDER_KEY
    openai.OpenAI().chat.completions.create(model="gpt-4o", messages=HI)
    assert fakes.ernie.requests[-1].headers["authorization"] == f"Bearer {ERNIE_KEY}"
    assert "placeholder" in stop(quiet=True)
    assert "OPENAI_API_KEY" not in os.environ


# -- errors ------------------------------------------------------------------------------------------
def test_provider_errors_are_the_sdks_own_types_with_nbllms_paragraph(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI(max_retries=0)
    fakes.ernie.enqueue(qianfan_error(429, "rpm_rate_limit_exceeded", "Open api rpm limit reached"))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert str(caught.value).startswith('Baidu ERNIE (Qianfan v2) (ernie) answered HTTP 429 (code '
                                        'rpm_rate_limit_exceeded): "Open api rpm limit reached". Wait a moment')
    assert caught.value.status_code == 429 and caught.value.code == "rpm_rate_limit_exceeded"
    fakes.ernie.enqueue(qianfan_error(400, "invalid_model", "model not found", "invalid_request_error"))
    with pytest.raises(openai.BadRequestError, match="%llm redirect shows the model map"):
        client.chat.completions.create(model="gpt-4o", messages=HI)


def test_a_provider_echoing_the_key_in_its_error_does_not_leak_it(fakes: Fakes, monkeypatch: pytest.MonkeyPatch,
                                                                   use_fake: UseFake) -> None:
    use_fake("ernie", fakes.ernie, key="bce-wrong-key-55555")
    nbllm.redirect("ernie")
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    assert "bce-wrong-key-55555" not in str(caught.value) and "QIANFAN_API_KEY" in str(caught.value)


def test_old_openai_calls_say_to_convert(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    with pytest.raises(openai.OpenAIError, match=r"Run `nbllm convert NOTEBOOK.ipynb --to ID`"):
        openai.ChatCompletion.create(model="gpt-4", messages=HI)
    stop(quiet=True)
    with pytest.raises(openai.OpenAIError) as plain:
        openai.ChatCompletion.create(model="gpt-4", messages=HI)
    assert "nbllm convert" not in str(plain.value)


# -- a hurried user ---------------------------------------------------------------------------------
def test_bad_targets_change_nothing(fakes: Fakes) -> None:
    from openai import _base_client

    original = _base_client.BaseClient._build_request
    with pytest.raises(UnknownProviderError, match="Did you mean 'ernie'"):
        nbllm.redirect("erine")
    with pytest.raises(ConfigError, match="speaks its own protocol"):
        nbllm.redirect("ollama")
    with pytest.raises(ConfigError, match="openai is where the traffic goes"):
        nbllm.redirect("openai")
    with pytest.raises(ConfigError, match="needs a provider id"):
        nbllm.redirect("  ")
    with pytest.raises(MissingKeyError, match="QWEN|DASHSCOPE"):
        nbllm.redirect("qwen")
    assert _base_client.BaseClient._build_request is original and active() is None
    openai.OpenAI().chat.completions.create(model="gpt-4o", messages=HI)
    assert len(fakes.relay.requests) == 1


def test_redirect_twice_and_off_twice(fakes: Fakes, capsys: pytest.CaptureFixture[str]) -> None:
    nbllm.redirect("ernie")
    nbllm.redirect("ernie")
    assert "Already redirecting to ernie; nothing changed." in capsys.readouterr().err
    nbllm.redirect("off")
    nbllm.redirect("off")
    assert "No redirect was active" in capsys.readouterr().err
    openai.OpenAI().chat.completions.create(model="gpt-4o", messages=HI)
    assert len(fakes.relay.requests) == 1 and fakes.ernie.requests == []


def test_clients_made_in_threads(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    answers: list[str] = []

    def work(i: int) -> None:
        reply = openai.OpenAI().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"{i}"}])
        answers.append(reply.choices[0].message.content)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [f"echo: {i}" for i in range(6)]
    assert models_sent(fakes.ernie) == ["ernie-4.5-turbo-128k"] * 6


def test_a_stream_cut_midway_then_the_next_call_works(fakes: Fakes) -> None:
    import httpx

    fakes.ernie.enqueue(Answer(text="one two three four", cut_after=2))
    nbllm.redirect("ernie")
    client = openai.OpenAI()
    got: list[str] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=HI, stream=True):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "one two "
    assert client.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "echo: hi"


def test_breaking_out_of_a_stream_early_then_the_next_call_works(fakes: Fakes) -> None:
    fakes.ernie.enqueue(Answer(text="one two three four five six", chunk_delay=0.01))
    nbllm.redirect("ernie")
    client = openai.OpenAI()
    with client.chat.completions.create(model="gpt-4o", messages=HI, stream=True) as stream:
        first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first.choices[0].delta.content == "one "
    assert client.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "echo: hi"


def test_without_the_openai_package_it_says_so(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from nbllm.errors import NbllmError

    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "openai", None)  # what `import openai` sees where it is not installed
        with pytest.raises(NbllmError, match="The openai package is not installed"):
            nbllm.redirect("ernie")
    assert active() is None


@pytest.mark.parametrize("odd", ["ab cd 1234", "key\n2345", "ключ-12345"])
def test_keys_with_odd_characters_are_refused_without_echo(fakes: Fakes, odd: str) -> None:
    nbllm.set_key("ernie", odd)
    with pytest.raises(ConfigError) as caught:
        nbllm.redirect("ernie")
    assert odd.strip() not in str(caught.value) and "QIANFAN_API_KEY" in str(caught.value)
    assert active() is None


def test_a_key_with_punctuation_is_sent_as_is(fakes: Fakes, use_fake: UseFake) -> None:
    with FakeOpenAIServer(api_key="a+b/c=d:e%f") as server:
        use_fake("ernie", server, key="a+b/c=d:e%f")
        nbllm.redirect("ernie")
        openai.OpenAI().chat.completions.create(model="gpt-4o", messages=HI)
        assert server.requests[-1].headers["authorization"] == "Bearer a+b/c=d:e%f"


def test_bad_model_option_is_one_paragraph(fakes: Fakes) -> None:
    from nbllm.errors import NbllmError

    with pytest.raises(NbllmError, match="--model expects OLD=NEW"):
        nbllm.redirect("ernie", ["gpt-4o"])
    assert active() is None


# -- the magic ---------------------------------------------------------------------------------------
def test_magic_on_status_off(fakes: Fakes, ipy) -> None:  # noqa: ANN001 - tests.magics_shell.Shell
    ipy.secrets += [ERNIE_KEY, OPENAI_KEY]
    assert "No redirect" in ipy.run("%llm redirect").stdout
    on = ipy.run("%llm redirect ernie --model gpt-4o=ernie-4.0-turbo-8k")
    assert on.error is None and "now goes to Baidu ERNIE (Qianfan v2) (ernie)" in on.stdout
    cell = ipy.run("from openai import OpenAI\nr = OpenAI().chat.completions.create(model='gpt-4o', "
                   "messages=[{'role': 'user', 'content': 'hi'}])\nprint(r.choices[0].message.content)")
    assert cell.stdout == "echo: hi\n" and "gpt-4o -> ernie-4.0-turbo-8k (--model)" in cell.stderr
    assert "Models mapped so far: gpt-4o -> ernie-4.0-turbo-8k." in ipy.run("%llm redirect").stdout
    assert "Redirect to ernie ended" in ipy.run("%llm redirect off").stdout
    bad = ipy.run("%llm redirect nosuch")
    assert type(bad.error).__name__ == "UnknownProviderError" and "Traceback" not in bad.stdout + bad.stderr
    assert type(ipy.run("%llm redirect ernie qwen").error).__name__ == "UsageError"
    assert active() is None
    assert "redirect" in ipy.run("%llm help").stdout


# -- the exchange log ----------------------------------------------------------------------------
def test_redirected_chat_calls_are_logged_like_nbllms_own(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI(max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", temperature=0.2,
                                           messages=[{"role": "system", "content": "Be brief."}, *HI])
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count to three."}], stream=True,
        stream_options={"include_usage": True}) if c.choices]
    assert "".join(pieces) == "echo: Count to three."
    whole, streamed = logged()
    assert (whole["source"], whole["provider"], whole["model"], whole["prompt"], whole["system"]) == (
        "redirect", "ernie", "ernie-4.5-turbo-128k", "hi", "Be brief.")
    assert whole["answer"] == "echo: hi" and whole["finish_reason"] == "stop" and whole["error_class"] is None
    assert reply.usage is not None and whole["total_tokens"] == reply.usage.total_tokens > 0
    assert (whole["prompt_tokens"], whole["completion_tokens"]) == (reply.usage.prompt_tokens,
                                                                    reply.usage.completion_tokens)
    assert json.loads(whole["params"]) == {"temperature": 0.2}
    assert whole["host"] == "127.0.0.1:" + str(fakes.ernie.port)
    assert (streamed["model"], streamed["prompt"], streamed["answer"]) == (
        "ernie-speed-128k", "Count to three.", "echo: Count to three.")
    assert streamed["total_tokens"] and streamed["error_class"] is None and streamed["first_token_s"] is not None
    data = b"".join(f.read_bytes() for f in Path(os.environ["NBLLM_LOG"]).parent.iterdir())  # the WAL too
    assert ERNIE_KEY.encode() not in data and OPENAI_KEY.encode() not in data


def test_nbllm_logs_and_usage_show_redirected_calls(fakes: Fakes, capsys: pytest.CaptureFixture[str]) -> None:
    from nbllm.cli import main

    with nbllm.redirect("ernie"):
        reply = openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o", messages=HI)
    capsys.readouterr()
    assert main(["logs", "-n", "5"]) == 0
    listing = capsys.readouterr().out
    assert "redirect  ernie:ernie-4.5-turbo-128k" in listing and listing.rstrip().endswith("ok      hi")
    assert main(["logs", "usage"]) == 0
    totals = capsys.readouterr().out
    assert reply.usage is not None and "ernie-4.5-turbo-128k" in totals and str(reply.usage.total_tokens) in totals


def test_redirected_failures_and_early_stops_are_logged(fakes: Fakes) -> None:
    nbllm.redirect("ernie")
    client = openai.OpenAI(max_retries=0)
    fakes.ernie.enqueue(ErrorReply(429, qianfan_error(429, "rpm_rate_limit_exceeded", "Rate limit reached")))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    fakes.ernie.enqueue(Answer(["one ", "two ", "three ", "four "], chunk_delay=0.3))
    with client.chat.completions.create(model="gpt-4o", messages=HI, stream=True) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    client.embeddings.create(model="text-embedding-3-small", input="not a chat: not logged")
    failed, stopped = logged()
    assert failed["error_class"] == "RateLimitError" and "Rate limit" in failed["error_message"]
    assert stopped["error_class"] == "Stopped" and stopped["answer"] == "one "


def test_async_calls_are_logged(fakes: Fakes) -> None:
    nbllm.redirect("ernie")

    async def ask() -> str:
        client = openai.AsyncOpenAI(max_retries=0)
        reply = await client.chat.completions.create(model="gpt-4o", messages=HI)
        stream = await client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        async for _ in stream:
            pass
        return reply.choices[0].message.content or ""

    assert asyncio.run(ask()) == "echo: hi"
    assert [(r["source"], r["answer"], r["error_class"]) for r in logged()] == [("redirect", "echo: hi", None)] * 2


def test_after_off_nothing_more_is_logged_and_the_log_can_be_off(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    client = openai.OpenAI(max_retries=0)
    with nbllm.redirect("ernie"):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    client.chat.completions.create(model="gpt-4o", messages=HI)  # to the relay: not nbllm's call
    assert len(logged()) == 1 and len(fakes.relay.requests) == 1
    monkeypatch.setenv("NBLLM_LOG", "off")
    with nbllm.redirect("ernie"):
        assert client.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "echo: hi"
