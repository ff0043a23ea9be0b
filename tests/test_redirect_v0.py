"""The redirect where ``openai<1`` is installed (a separate environment: ``pip install 'openai==0.28.1'``).

In the project's own environment (``openai>=1``) this module is skipped; the same calls are what
``notebooks/legacy/01_chat_completion_openai028.ipynb`` makes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
if hasattr(openai, "OpenAI"):
    pytest.skip("openai>=1 is installed; these tests need openai<1", allow_module_level=True)

import nbllm  # noqa: E402
from nbllm.redirect import PLACEHOLDER_KEY, stop  # noqa: E402
from tests.conftest import UseFake  # noqa: E402
from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402

OPENAI_KEY = "sk-openaiKEYmustNOTleave0000000004"
ERNIE_KEY = "bce-v3-v0-key-90ab"


@pytest.fixture
def ernie(use_fake: UseFake) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=ERNIE_KEY) as server:
        use_fake("ernie", server, key=ERNIE_KEY)
        yield server
        stop(quiet=True)
        for req in server.requests:
            assert OPENAI_KEY not in str(req.headers) and OPENAI_KEY.encode() not in req.body
            assert OPENAI_KEY not in req.path + str(req.query)


def test_module_settings_and_model_names_are_redirected(ernie: FakeOpenAIServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai, "api_key", OPENAI_KEY)
    nbllm.redirect("ernie")
    reply = openai.ChatCompletion.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message["content"] == "echo: hi"
    pieces = [c["choices"][0]["delta"].get("content", "") for c in openai.ChatCompletion.create(
        model="gpt-4", messages=[{"role": "user", "content": "Count to five."}], stream=True) if c["choices"]]
    assert "".join(pieces) == "echo: Count to five."
    vector = openai.Embedding.create(input="hello notebook", model="text-embedding-ada-002")["data"][0]["embedding"]
    assert len(vector) == 8
    assert [(r.path, r.json["model"]) for r in ernie.requests] == [
        ("/v1/chat/completions", "ernie-speed-128k"), ("/v1/chat/completions", "ernie-4.5-turbo-128k"),
        ("/v1/embeddings", "embedding-v1")]
    assert {r.headers["authorization"] for r in ernie.requests} == {f"Bearer {ERNIE_KEY}"}


def test_off_restores_the_module(ernie: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from openai import api_requestor

    monkeypatch.setattr(openai, "api_key", None)
    original = api_requestor.APIRequestor.__dict__["_prepare_request_raw"]
    nbllm.redirect("ernie")
    assert openai.api_key == PLACEHOLDER_KEY
    openai.ChatCompletion.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    stop(quiet=True)
    assert openai.api_key is None and api_requestor.APIRequestor.__dict__["_prepare_request_raw"] is original
    assert [r.json["model"] for r in ernie.requests] == ["ernie-4.5-turbo-128k"]


def test_azure_settings_are_left_alone(ernie: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer(require_auth=False) as azure:
        monkeypatch.setattr(openai, "api_type", "azure")
        monkeypatch.setattr(openai, "api_base", azure.url)
        monkeypatch.setattr(openai, "api_version", "2023-05-15")
        monkeypatch.setattr(openai, "api_key", "azure-key-1234")
        nbllm.redirect("ernie")
        openai.ChatCompletion.create(engine="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert azure.requests[-1].path == "/openai/deployments/gpt-4o/chat/completions"
    assert ernie.requests == []


def test_no_openai_key_leaves_in_the_query_or_the_body(ernie: FakeOpenAIServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai, "api_key", OPENAI_KEY)
    nbllm.redirect("ernie")
    openai.Model.list(relay=f"k-{OPENAI_KEY}", keep="1")  # GET: 0.x puts the parameters in the query
    listed = ernie.requests[-1]
    assert listed.path == "/v1/models" and listed.query == {"keep": ["1"]}
    asked = f"Is {OPENAI_KEY} still valid?"
    openai.ChatCompletion.create(model="gpt-4o", messages=[{"role": "user", "content": asked}],
                                 api_key_copy=OPENAI_KEY, relay={"auth": f"Bearer {OPENAI_KEY}", "region": "eu"})
    sent = ernie.requests[-1]
    assert "api_key_copy" not in sent.json and sent.json["relay"] == {"region": "eu"}
    said = sent.json["messages"][0]["content"]
    assert said.startswith("Is ") and said.endswith(" still valid?") and OPENAI_KEY not in said
    assert {r.headers["authorization"] for r in ernie.requests} == {f"Bearer {ERNIE_KEY}"}


def test_redirected_chat_calls_are_logged(ernie: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai, "api_key", OPENAI_KEY)
    nbllm.redirect("ernie")
    reply = openai.ChatCompletion.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    chunks = list(openai.ChatCompletion.create(model="gpt-4o", messages=[{"role": "user", "content": "Count."}],
                                               stream=True))
    openai.Embedding.create(input="not a chat: not logged", model="text-embedding-ada-002")
    assert chunks and reply.choices[0].message["content"] == "echo: hi"
    conn = sqlite3.connect(os.environ["NBLLM_LOG"])
    try:
        rows = conn.execute("SELECT source, provider, model, prompt, answer, total_tokens, error_class "
                            "FROM exchanges ORDER BY id").fetchall()
    finally:
        conn.close()
    assert rows == [("redirect", "ernie", "ernie-4.5-turbo-128k", "hi", "echo: hi", reply.usage["total_tokens"], None),
                    ("redirect", "ernie", "ernie-4.5-turbo-128k", "Count.", "echo: Count.", None, None)]
    data = b"".join(f.read_bytes() for f in Path(os.environ["NBLLM_LOG"]).parent.iterdir())  # the WAL too
    assert ERNIE_KEY.encode() not in data and OPENAI_KEY.encode() not in data
