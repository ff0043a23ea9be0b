"""The ``local`` provider: a generated tiny GGUF run in-process by llama-cpp-python."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbllm
from nbllm.errors import BadRequestError, ConfigError
from nbllm.providers import local
from nbllm.session import Session
from tests.tiny_gguf import CHAT_TEMPLATE, shared_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_gguf(tmp_path_factory.getbasetemp())


@pytest.fixture
def local_model(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NBLLM_LOCAL_MODEL", str(tiny_gguf))
    yield tiny_gguf


def _prompt_tokens(path: Path, messages: list[dict[str, str]]) -> int:
    """What the GGUF's own chat template makes of the messages, tokenized by the loaded model."""
    import jinja2

    model, _ = local.load_model(path, {})
    prompt = jinja2.Template(CHAT_TEMPLATE).render(messages=messages, bos_token="<s>", eos_token="</s>",
                                                   add_generation_prompt=True)
    return len(model.tokenize(prompt.encode(), add_bos=False, special=True))  # the template has the BOS


def test_no_model_path_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as info:
        nbllm.chat("hi", provider="local")
    assert "NBLLM_LOCAL_MODEL=/path/to/model.gguf" in info.value.message
    assert "[providers.local]" in info.value.message


def test_missing_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_LOCAL_MODEL", str(tmp_path / "nope.gguf"))
    with pytest.raises(ConfigError) as info:
        nbllm.chat("hi", provider="local")
    assert f"{tmp_path / 'nope.gguf'} does not exist" in info.value.message


def test_without_llama_cpp_says_what_to_install(local_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an environment without the extra looks like
    monkeypatch.setattr(local, "_loaded", {})
    with pytest.raises(ConfigError) as info:
        nbllm.chat("hi", provider="local")
    assert "pip install 'nbllm[local]'" in info.value.message


@pytest.mark.llamacpp
def test_streams_from_the_gguf_in_process(local_model: Path) -> None:
    pieces = list(nbllm.stream("tell me a story", provider="local", max_tokens=16, seed=1))
    assert len(pieces) >= 4
    text = "".join(pieces)
    assert text.strip() and text.isprintable()


@pytest.mark.llamacpp
def test_reply_has_finish_reason_and_exact_usage(local_model: Path) -> None:
    reply = nbllm.chat("hello there", provider="local", system="be brief", max_tokens=8, temperature=0.0)
    assert reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 8
    expected = _prompt_tokens(local_model, [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": "hello there"}])
    assert reply.usage.prompt_tokens == expected  # the GGUF's chat template was applied
    assert reply.usage.total_tokens == expected + 8


@pytest.mark.llamacpp
def test_greedy_decoding_is_repeatable(local_model: Path) -> None:
    first = nbllm.chat("same prompt", provider="local", max_tokens=10, temperature=0.0).text
    second = nbllm.chat("same prompt", provider="local", max_tokens=10, temperature=0.0).text
    assert first == second and first.strip()


@pytest.mark.llamacpp
def test_model_is_loaded_once_per_path(local_model: Path) -> None:
    local.unload_models()
    nbllm.chat("one", provider="local", max_tokens=2)
    first = local._loaded[(str(local_model), ())][0]
    nbllm.chat("two", provider="local", max_tokens=2)
    assert len(local._loaded) == 1 and local._loaded[(str(local_model), ())][0] is first


@pytest.mark.llamacpp
def test_gguf_path_as_the_model_name(tiny_gguf: Path) -> None:
    reply = nbllm.chat("hi", provider=f"local:{tiny_gguf}", max_tokens=3)
    assert reply.model == str(tiny_gguf)
    assert reply.usage.completion_tokens == 3


@pytest.mark.llamacpp
def test_load_options_from_the_config_file_and_context_overflow(tiny_gguf: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[providers.local]\nbase_url = "{tiny_gguf}"\nextra_body = {{ n_ctx = 256 }}\n',
                      encoding="utf-8")
    monkeypatch.setenv("NBLLM_CONFIG", str(config))
    with pytest.raises(BadRequestError) as info:
        nbllm.chat(" ".join(["river"] * 200), provider="local", max_tokens=4)
    assert "exceed context window of 256" in info.value.message
    assert "n_ctx" in info.value.message
    assert (str(tiny_gguf), (("n_ctx", 256),)) in local._loaded


@pytest.mark.llamacpp
def test_unknown_option_is_named(local_model: Path) -> None:
    with pytest.raises(BadRequestError) as info:
        nbllm.chat("hi", provider="local", num_predict=3)
    assert "num_predict" in info.value.message


@pytest.mark.llamacpp
def test_a_file_that_is_not_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setenv("NBLLM_LOCAL_MODEL", str(broken))
    with pytest.raises(ConfigError) as info:
        nbllm.chat("hi", provider="local")
    assert f"could not load {broken}" in info.value.message


@pytest.mark.llamacpp
def test_models_shows_the_file_name(local_model: Path) -> None:
    provider, _ = Session("local").resolve()
    assert provider.models() == [local_model.name]


def test_model_path_from_the_env_the_config_file_or_its_older_base_url(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from nbllm.config import get_spec

    config = tmp_path / "local.toml"
    monkeypatch.setenv("NBLLM_CONFIG", str(config))
    config.write_text('[providers.local]\nbase_url = "/old/a.gguf"\n', encoding="utf-8")
    assert (get_spec("local").model_path, get_spec("local").base_url) == ("/old/a.gguf", "")
    config.write_text('[providers.local]\nmodel_path = "/new/b.gguf"\n', encoding="utf-8")
    assert get_spec("local").model_path == "/new/b.gguf"
    monkeypatch.setenv("NBLLM_LOCAL_MODEL", "/env/c.gguf")
    assert get_spec("local").model_path == "/env/c.gguf"
