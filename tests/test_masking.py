"""Masking replaces secret values only: code about keys is sent and shown byte for byte, and a key
echoed by a server is masked alike in the CLI, the magics display, -o, %llm history and nbllm.chat,
even when it arrives split across deltas."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbllm
from nbllm.cli import main
from nbllm.context import NotebookState, build_prompt
from nbllm.errors import StreamInterrupted
from nbllm.secrets import StreamRedactor, mask, redact, redact_text, register_secret
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, FakeOpenAIServer
from tests.magics_shell import Shell

CODE = [
    "sorted(xs, key=len)",
    "dict(token=tok, key=k)",
    "api_key=os.environ['DASHSCOPE_API_KEY']",
    "client = OpenAI(api_key=os.environ[\"X\"], base_url=url)",
    "token=3",
    "secret=s; key=lambda r: r[0]",
    "requests.get(url, params={'key': key, 'token': token})",
    'headers = {"Authorization": f"Bearer {api_key}"}',
    "msg_conversation_history_with_more_words = []",
    "hf_hub_download(repo_id='x', filename='y')",
    "pip install scikit-learn  # sk-learn-compatible-estimators",
    "api_key='sk-xxxxxxxxxxxxxxxxxxxxxxxx'  # a placeholder in an example",
    "Use a Bearer token in the Authorization header.",
    "ssh://git@github.com/org/repo and http://localhost:8000/v1",
    'url = f"{base}?key={key}&token={token}"',
    "requests.get(base + '?api_key=' + api_key)",
]


@pytest.mark.parametrize("code", CODE)
def test_code_about_keys_is_never_changed(code: str) -> None:
    assert redact(code) == code


@pytest.mark.parametrize(("text", "kept", "gone"), [
    ("Incorrect API key provided: sk-live-0123456789abcdefXYZ.", "Incorrect API key provided: sk-***.",
     "0123456789abcdef"),
    ("GET https://aip.baidubce.com/x?access_token=24.abc&b=1", "?access_token=***&b=1", "24.abc"),
    ("Authorization: Bearer abc123def456ghi", "Authorization: Bearer ***", "abc123def456ghi"),
    ("base URL http://alice:s3cret-pass@proxy.local/v1 failed", "http://***@proxy.local/v1", "s3cret"),
    ("token bce-v3/ALTAK-abcdef123/0a1b2c3d4e", "token bce-v3/***", "ALTAK"),
    ("hf_" + "a1B2c3D4e5" * 4, "hf_***", "a1B2c3D4e5"),
])
def test_key_shaped_tokens_are_masked(text: str, kept: str, gone: str) -> None:
    shown = redact(text)
    assert kept in shown and gone not in shown


def test_every_catalogue_key_variable_is_masked_before_nbllm_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # a key nbllm never used (no call, no find_key) is masked as soon as it is in the environment
    monkeypatch.setenv("MOONSHOT_API_KEY", "moon-shot-value-42")
    monkeypatch.setenv("QIANFAN_SK", "ernie-v1-secret")
    assert redact("a moon-shot-value-42 b ernie-v1-secret c") == "a moo*** b ern*** c"


def test_short_keys_are_never_shown_in_whole_or_in_part() -> None:
    for key in ("k", "ab", "xyz", "k3y4", "q7w8e"):
        register_secret(key)
        assert mask(key) == "***"
        assert redact(f"the key {key} was refused") == "the key *** was refused"
    # masked as whole words only: the letters of other words stay
    assert redact("about xyzzy abstract") == "about xyzzy abstract"
    # a one- or two-letter placeholder never rewrites a prompt or an answer; three letters and up do
    assert redact_text("for k in ab: xyz(k3y4)") == "for k in ab: ***(***)"


def test_masking_keeps_code_and_masks_only_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "dash-0123456789abcdef")
    text = "key=len; token=3; secret=s; key=dash-0123456789abcdef"
    assert redact(text) == "key=len; token=3; secret=s; key=das***"


# -- streamed answers ---------------------------------------------------------------------------
_pieces = st.lists(st.sampled_from([*"ab -_.:/?=&@\n文", "sk-", "Bearer ", "key=", "http://"]),
                   max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(before=_pieces, after=_pieces, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_a_stream_is_masked_as_if_it_were_whole(before: str, after: str, cuts: list[int]) -> None:
    register_secret("zq-streamed-secret-1234")
    text = f"{before}zq-streamed-secret-1234{after} sk-live-0123456789abcdefXYZ {after}"
    bounds = sorted({min(c, len(text)) for c in cuts})
    parts = [text[i:j] for i, j in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    redactor = StreamRedactor()
    shown = "".join(redactor.feed(p) for p in parts) + redactor.flush()
    assert shown == redact_text(text)
    assert "streamed-secret" not in shown and "0123456789abcdef" not in shown


def test_prose_streams_word_by_word_and_cjk_character_by_character() -> None:
    redactor = StreamRedactor()
    assert [redactor.feed(p) for p in ["one", " two", " 文心", "一言"]] == ["one", " two", " 文心", "一言"]


ECHO_KEY = "sk-echo0123456789abcdefghij"
SPLIT = ["Your key is sk-ec", "ho0123456", "789abcdefghij", " and key=len stays."]
SHOWN = "Your key is sk-*** and key=len stays."


def test_cli_masks_a_key_split_across_deltas(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("ernie", openai_server)
    openai_server.enqueue(Answer(SPLIT))
    assert main(["chat", "-p", "ernie", "repeat my key"]) == 0
    out, err = capsys.readouterr()
    assert out == SHOWN + "\n" and err == ""


def test_python_api_masks_a_key_split_across_deltas(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    use_fake("ernie", openai_server)
    openai_server.enqueue(Answer(SPLIT), Answer(SPLIT), Answer(SPLIT))
    assert nbllm.chat("x", provider="ernie").text == SHOWN
    assert "".join(nbllm.stream("x", provider="ernie")) == SHOWN
    assert nbllm.chat("x", provider="ernie", stream=False).text == SHOWN


def test_async_api_and_map_mask_a_key_split_across_deltas(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    """``achat`` and ``map`` mask the whole answer once at the end (nobody sees the deltas),
    ``astream`` masks each delta: both must give what masking the whole text gives."""
    import asyncio

    use_fake("ernie", openai_server)
    openai_server.enqueue(Answer(SPLIT, reasoning=SPLIT), Answer(SPLIT))

    async def both() -> tuple[Any, str]:
        whole = await nbllm.achat("x", provider="ernie")
        return whole, "".join([piece async for piece in nbllm.astream("x", provider="ernie")])

    whole, pieces = asyncio.run(both())
    assert (whole.text, whole.reasoning, pieces) == (SHOWN, SHOWN, SHOWN)
    openai_server.enqueue(Answer(SPLIT))
    assert list(nbllm.map("{text}", ["y"], provider="ernie", progress=False)) == [SHOWN]


def test_async_api_masks_the_partial_text_of_a_cut_stream(openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    import asyncio

    use_fake("ernie", openai_server)
    openai_server.enqueue(Answer(SPLIT, cut_after=3))
    with pytest.raises(StreamInterrupted) as caught:
        asyncio.run(nbllm.achat("x", provider="ernie"))
    assert caught.value.partial_text == "Your key is sk-***"
    assert ECHO_KEY not in str(caught.value)


@pytest.mark.parametrize("options", ["", "--no-stream", "-f text"])
def test_magics_display_out_and_history_agree(ipy: Shell, ernie: FakeOpenAIServer, options: str) -> None:
    ipy.secrets.append(ECHO_KEY)
    ernie.enqueue(Answer(SPLIT))
    cell = ipy.run(f"%%llm -o answer {options}\nrepeat my key")
    assert cell.error is None
    assert ipy.ns["answer"] == SHOWN
    assert ipy.magics.session().history[-1]["content"] == SHOWN
    history = ipy.run("%llm history")
    assert SHOWN in history.stdout


def test_magics_compare_masks_each_lane(ipy: Shell, ernie: FakeOpenAIServer, use_fake: UseFake) -> None:
    with FakeOpenAIServer() as other:
        ipy.secrets += [ECHO_KEY, use_fake("qwen", other)]
        ernie.enqueue(Answer(SPLIT))
        other.enqueue(Answer(SPLIT))
        cell = ipy.run("%%llm ernie,qwen -o both\nrepeat my key")
    assert cell.error is None
    assert ipy.ns["both"] == {"ernie": SHOWN, "qwen": SHOWN}


# -- prompts ------------------------------------------------------------------------------------
def test_context_sends_code_as_written_except_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "deep-0123456789abcdef")
    source = "\n".join(CODE) + "\nclient_key = 'deep-0123456789abcdef'"
    state = NotebookState(namespace={"src": source}, inputs=["", source, "x"], texts={1: source},
                          last_error=f"KeyError: {source}", current=2)
    prompt = build_prompt("{In[1]} {src} {Err}", state, with_names=["src"], cells=1)
    expected = "\n".join(CODE) + "\nclient_key = 'dee***'"
    assert prompt.count(expected) >= 4  # In[1], {src}, {Err}, --with and --cells all keep the code
    assert "deep-0123456789abcdef" not in prompt
    for line in CODE:
        assert line in prompt


def test_magics_send_the_cell_as_written(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    code = "xs = sorted([], key=len)\nd = dict(token=1, key=2)\napi_key='x'\nsecret=3"
    assert ipy.run(code).error is None
    n = ipy.shell.execution_count - 1
    ipy.ns["src"] = code
    assert ipy.run(f"%%llm --with src\nexplain {{In[{n}]}} and {{src}}").error is None
    sent = ernie.chat_requests[-1].json["messages"][-1]["content"]
    for fragment in ("sorted([], key=len)", "dict(token=1, key=2)", "api_key='x'", "secret=3"):
        assert sent.count(fragment) == 3  # from --with, {In[n]} and {src}


def test_a_key_typed_into_the_cell_is_masked_and_the_rest_sent_as_typed(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    assert ipy.run("%%llm\nwhy does sk-live-0123456789abcdefXYZ fail in sorted(xs, key=len)?").error is None
    sent = ernie.chat_requests[-1].json["messages"][-1]["content"]
    assert sent == "why does sk-*** fail in sorted(xs, key=len)?"


def test_an_answer_read_by_areply_is_never_seen_unmasked_while_it_streams(openai_server: FakeOpenAIServer,
                                                                         use_fake: UseFake) -> None:
    """A task polling ``text`` while ``areply()`` runs sees nothing, then the masked answer."""
    import asyncio

    from nbllm.session import default_session

    use_fake("ernie", openai_server)
    openai_server.enqueue(Answer(SPLIT, reasoning=SPLIT, chunk_delay=0.05))

    async def poll() -> list[str]:
        response = default_session().arespond([{"role": "user", "content": "x"}], "ernie")
        reading = asyncio.create_task(response.areply())
        seen = []
        while not reading.done():
            seen.append(response.text + response.reasoning + str(response) + repr(response))
            await asyncio.sleep(0.01)
        await reading
        return [*seen, response.text]

    seen = asyncio.run(poll())
    assert len(seen) > 3 and not [s for s in seen if "ec" + "ho0123456" in s]
    assert seen[-1] == SHOWN
