"""OpenNMT-py REST translation over real loopback sockets: order, blank lines, models, error bodies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nbllm
from nbllm.config import get_spec
from nbllm.errors import BadRequestError, ServerError, UnknownModelError
from nbllm.messages import ChatRequest
from nbllm.providers import opennmt
from nbllm.providers.opennmt import OpenNMTProvider, segments
from nbllm.session import Session
from tests.fakes.opennmt_server import FakeOpenNMTServer, ModelError, translate_text

CELL = "Hello world\n\n  the cat sleeps  \ngood morning\n\n\nI am here\n"


@pytest.fixture
def onmt(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenNMTServer]:
    with FakeOpenNMTServer() as server:
        monkeypatch.setenv("NBLLM_OPENNMT_BASE_URL", server.base_url)
        yield server


def make_provider(server: FakeOpenNMTServer, **kw: object) -> OpenNMTProvider:
    spec = get_spec("opennmt").with_changes(base_url=server.base_url)
    kw.setdefault("sleep", lambda s: None)
    return OpenNMTProvider(spec, None, **kw)  # type: ignore[arg-type]


def ask(text: str, model: str = "100") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model=model)


def test_multi_line_cell_is_translated_in_order_with_blank_lines_kept(onmt: FakeOpenNMTServer) -> None:
    reply = nbllm.chat(CELL, provider="opennmt")
    assert reply.text == "hallo welt\n\n  die katze schläft\ngut morgen\n\n\nich bin hier\n"
    assert reply.finish_reason == "stop"
    assert onmt.sources() == ["Hello world", "the cat sleeps", "good morning", "I am here"]
    assert [item["id"] for item in onmt.translate_requests[0].json] == [100, 100, 100, 100]


def test_one_delta_per_line(onmt: FakeOpenNMTServer) -> None:
    deltas = list(make_provider(onmt).stream(ask("\nHello\n\nworld")))
    assert [d.text for d in deltas] == ["\nhallo\n", "\nwelt", ""]
    assert deltas[-1].finish_reason == "stop"


def test_long_cells_go_in_batches_and_keep_order(onmt: FakeOpenNMTServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opennmt, "BATCH", 3)
    source = "\n".join(f"line {n} hello" for n in range(8))
    text = make_provider(onmt).complete(ask(source)).text
    assert text == "\n".join(f"LINE {n} hallo" for n in range(8))
    assert onmt.batch_sizes == [3, 3, 2]


def test_only_the_best_hypothesis_is_used(onmt: FakeOpenNMTServer) -> None:
    assert make_provider(onmt).complete(ask("good cat\nhello", model="101")).text == "gut katze\nhallo"


def test_system_prompt_and_history_are_not_translated(onmt: FakeOpenNMTServer) -> None:
    request = ChatRequest(
        messages=[{"role": "system", "content": "translate"}, {"role": "user", "content": "the cat"},
                  {"role": "assistant", "content": "die katze"}, {"role": "user", "content": "hello"}],
        model="100",
    )
    assert make_provider(onmt).complete(request).text == "hallo"
    assert onmt.sources() == ["hello"]


def test_empty_text_sends_nothing(onmt: FakeOpenNMTServer) -> None:
    assert make_provider(onmt).complete(ask("\n  \n")).text == "\n  \n"
    assert onmt.requests == []


def test_models_lists_the_server_ids(onmt: FakeOpenNMTServer) -> None:
    provider, model = Session("opennmt").resolve()
    assert provider.models() == ["100", "101"]
    assert model == "100"


def test_status_error_body_is_a_clear_error(onmt: FakeOpenNMTServer) -> None:
    onmt.enqueue(ModelError("Model 100 failed to load: out of memory"))
    with pytest.raises(ServerError) as info:
        nbllm.chat("hello", provider="opennmt")
    assert '"Model 100 failed to load: out of memory"' in info.value.message
    assert "model 100" in info.value.message
    assert len(onmt.translate_requests) == 1  # a model error is not retried


def test_unknown_model_id_gets_a_hint(onmt: FakeOpenNMTServer) -> None:
    with pytest.raises(ServerError) as info:
        make_provider(onmt, max_retries=0).complete(ask("hello", model="7"))
    assert "HTTP 500" in info.value.message
    assert "model 7 is not in the server's conf.json" in info.value.message
    assert "nbllm models opennmt" in info.value.message


def test_model_must_be_a_number(onmt: FakeOpenNMTServer) -> None:
    with pytest.raises(UnknownModelError) as info:
        nbllm.chat("hello", provider="opennmt:en-de")
    assert "'en-de' is not a number" in info.value.message
    assert onmt.requests == []


def test_wrong_url_root_is_reported_with_the_status(onmt: FakeOpenNMTServer) -> None:
    spec = get_spec("opennmt").with_changes(base_url=onmt.url)  # without /translator: 404 HTML
    with pytest.raises(BadRequestError) as info:
        OpenNMTProvider(spec, None, max_retries=0).complete(ask("hello"))
    assert "HTTP 404" in info.value.message and "404 Not Found" in info.value.message
    assert onmt.requests[0].path == "/translate"


def test_cell_magic_translates_a_cell(onmt: FakeOpenNMTServer) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "nbllm")
        result = shell.run_cell("%%llm -p opennmt -o translated\nHello world\n\ngood morning\n")
        assert result.success, result.error_in_exec
        assert shell.user_ns["translated"] == "hallo welt\n\ngut morgen"
    finally:
        shell.run_line_magic("unload_ext", "nbllm")
        InteractiveShell.clear_instance()


def test_segments_keep_indentation() -> None:
    assert segments("a\n\n  b c \n") == [(0, "", "a"), (2, "  ", "b c")]
    assert translate_text("  hello  ") == "  hallo  "
