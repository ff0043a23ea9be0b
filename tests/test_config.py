"""Provider rows after overrides (built-in < config file < environment < explicit), plugins, keys."""

from __future__ import annotations

import os
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import nbllm
from nbllm.config import default_target, get_spec, load_specs, reload_plugins, split_target
from nbllm.errors import ConfigError, MissingKeyError, UnknownProviderError
from nbllm.keys import find_key, require_key
from nbllm.providers.catalog import BUILTIN, ProviderSpec
from tests.conftest import UseFake
from tests.fakes.openai_server import FakeOpenAIServer

PLUGIN_SPEC = ProviderSpec(id="acme", label="ACME LLM", dialect="openai", base_url="http://acme.invalid/v1",
                           key_env=("ACME_KEY",), default_model="acme-1", models=("acme-1",))


def plugin_rows() -> list[ProviderSpec]:
    return [PLUGIN_SPEC.with_changes(id="acme2", label="ACME two")]


def write_config(text: str) -> Path:
    path = Path(os.environ["NBLLM_CONFIG"])
    path.write_text(text, encoding="utf-8")
    return path


def test_every_design_provider_is_built_in() -> None:
    ids = {s.id for s in BUILTIN}
    assert ids >= {"ernie", "ernie-v1", "hunyuan", "qwen", "deepseek", "glm", "kimi", "siliconflow", "spark",
                   "modelscope", "doubao", "hf", "tgi", "ollama", "vllm", "llamacpp", "opennmt", "openai"}
    assert get_spec("hunyuan").base_url == "https://tokenhub.tencentmaas.com/v1"
    assert get_spec("hunyuan").default_model == "hy3-preview"
    assert get_spec("ernie").headers_from_env == {"appid": "QIANFAN_APP_ID"}


def test_override_order_builtin_file_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_spec("ernie").base_url == "https://qianfan.baidubce.com/v2"
    write_config('[providers.ernie]\nbase_url = "https://file.example/v2"\ndefault_model = "ernie-speed-128k"\n')
    assert get_spec("ernie").base_url == "https://file.example/v2"
    monkeypatch.setenv("NBLLM_ERNIE_BASE_URL", "https://env.example/v2")
    spec = get_spec("ernie")
    assert (spec.base_url, spec.default_model) == ("https://env.example/v2", "ernie-speed-128k")


def test_explicit_target_beats_env_and_file_default(monkeypatch: pytest.MonkeyPatch,
                                                    openai_server: FakeOpenAIServer, use_fake: UseFake) -> None:
    for pid in ("qwen", "glm", "kimi"):
        use_fake(pid, openai_server)
    write_config('default = "qwen:qwen-max"\n')
    assert default_target() == "qwen:qwen-max"
    nbllm.chat("a")
    monkeypatch.setenv("NBLLM_DEFAULT", "glm")
    assert default_target() == "glm"
    nbllm.chat("b", model="glm-4-air")
    nbllm.chat("c", provider="kimi:moonshot-v1-8k")
    models = [r.json["model"] for r in openai_server.chat_requests]
    assert models == ["qwen-max", "glm-4-air", "moonshot-v1-8k"]


def test_openai_base_url_env_and_its_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.example/v1")
    assert get_spec("openai").base_url == "http://proxy.example/v1"
    monkeypatch.setenv("NBLLM_OPENAI_BASE_URL", "http://nbllm.example/v1")
    assert get_spec("openai").base_url == "http://nbllm.example/v1"
    monkeypatch.setenv("NBLLM_ERNIE_V1_BASE_URL", "http://v1.example")
    assert get_spec("ernie-v1").base_url == "http://v1.example"


def test_custom_provider_from_config_file(openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(f'[providers.gateway]\ndialect = "openai"\nbase_url = "{openai_server.base_url}"\n'
                 'key_env = "GATEWAY_KEY"\nmodels = ["qwen2.5-72b-instruct", "other"]\n')
    spec = get_spec("gateway")
    assert (spec.label, spec.key_env, spec.default_model, spec.key_required) == (
        "gateway", ("GATEWAY_KEY",), "qwen2.5-72b-instruct", True)
    with pytest.raises(MissingKeyError, match="GATEWAY_KEY"):
        nbllm.chat("x", provider="gateway")
    monkeypatch.setenv("GATEWAY_KEY", "gw-key-1234")
    assert nbllm.chat("x", provider="gateway").text == "echo: x"
    assert openai_server.chat_requests[0].json["model"] == "qwen2.5-72b-instruct"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[providers.new]\nkey_env = "K"\n', "needs a base_url"),
        ('[providers.ernie]\nbase_ur = "x"\n', "unknown field.*base_ur"),
        ("providers = 3\n[x\n", "could not be read"),
        ('providers = { ernie = 3 }\n', "must be a table"),
    ],
)
def test_bad_config_is_one_clear_error(text: str, match: str) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_specs()
    if "could not be read" in match:
        assert str(path) in str(info.value)


def test_plugin_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    eps = [EntryPoint(name="acme", value="tests.test_config:PLUGIN_SPEC", group="nbllm.providers"),
           EntryPoint(name="acme2", value="tests.test_config:plugin_rows", group="nbllm.providers")]

    def entry_points(group: str) -> list[EntryPoint]:
        return eps if group == "nbllm.providers" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    reload_plugins()
    specs = load_specs()
    assert specs["acme"] is PLUGIN_SPEC and specs["acme2"].label == "ACME two"
    eps.append(EntryPoint(name="broken", value="tests.no_such_module:X", group="nbllm.providers"))
    assert "acme" in load_specs()  # scanned once per process ...
    reload_plugins()  # ... until asked to scan again
    with pytest.raises(ConfigError, match="plugin 'broken'"):
        load_specs()
    reload_plugins()


def test_did_you_mean() -> None:
    with pytest.raises(UnknownProviderError) as info:
        get_spec("qwne")
    assert "Did you mean 'qwen'?" in str(info.value)
    with pytest.raises(UnknownProviderError) as info:
        get_spec("zzzzzz")
    assert "Did you mean" not in str(info.value) and "Known providers: deepseek" in str(info.value)


@pytest.mark.parametrize(
    ("target", "expected"),
    [("ernie", ("ernie", None)), ("ernie:ernie-speed-128k", ("ernie", "ernie-speed-128k")),
     ("ollama:qwen2.5:7b", ("ollama", "qwen2.5:7b")),
     ("siliconflow:Qwen/Qwen2.5-7B-Instruct", ("siliconflow", "Qwen/Qwen2.5-7B-Instruct")),
     ("ernie-v1", ("ernie-v1", None)), (" deepseek ", ("deepseek", None))],
)
def test_split_target(target: str, expected: tuple[str, str | None]) -> None:
    assert split_target(target) == expected


def test_key_aliases_session_and_two_part(monkeypatch: pytest.MonkeyPatch) -> None:
    ernie, v1, vllm = get_spec("ernie"), get_spec("ernie-v1"), get_spec("vllm")
    monkeypatch.setenv("QIANFAN_BEARER_TOKEN", "alias-key-1")
    assert find_key(ernie) == "alias-key-1"
    monkeypatch.setenv("QIANFAN_API_KEY", "main-key-1")
    assert find_key(ernie) == "main-key-1"
    nbllm.set_key("ernie", "session-key-1")
    assert find_key(ernie) == "session-key-1"
    monkeypatch.setenv("QIANFAN_AK", "ak-1")
    with pytest.raises(MissingKeyError, match="QIANFAN_AK and QIANFAN_SK"):
        require_key(v1)
    monkeypatch.setenv("QIANFAN_SK", "sk-1")
    assert require_key(v1) == "ak-1:sk-1"
    assert require_key(vllm) is None


def test_keyring_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("keyring")
    fake.get_password = lambda service, user: "ring-key-9" if (service, user) == ("nbllm", "deepseek") else None
    monkeypatch.setitem(sys.modules, "keyring", fake)
    assert find_key(get_spec("deepseek")) == "ring-key-9"
    assert find_key(get_spec("kimi")) is None


def test_specs_follow_every_change_of_the_config_file_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_specs keeps its last result; any edit of the file or a base-URL variable must show at once."""
    write_config('[providers.ernie]\nbase_url = "http://a.invalid/v1"\n')
    first = load_specs()
    assert first["ernie"].base_url == "http://a.invalid/v1"
    first["ernie"] = PLUGIN_SPEC  # a caller changing its copy changes nothing for the next caller
    assert load_specs()["ernie"].base_url == "http://a.invalid/v1"
    write_config('[providers.ernie]\nbase_url = "http://b.invalid/v1"\n')  # same size, same second
    assert load_specs()["ernie"].base_url == "http://b.invalid/v1"
    monkeypatch.setenv("NBLLM_ERNIE_BASE_URL", "http://env.invalid/v1")
    assert load_specs()["ernie"].base_url == "http://env.invalid/v1"
    monkeypatch.delenv("NBLLM_ERNIE_BASE_URL")
    assert load_specs()["ernie"].base_url == "http://b.invalid/v1"
    monkeypatch.setenv("OLLAMA_HOST", "http://ollama.invalid:11434")  # a provider's own variable counts too
    assert load_specs()["ollama"].base_url == "http://ollama.invalid:11434"
    Path(os.environ["NBLLM_CONFIG"]).unlink()
    assert load_specs()["ernie"].base_url == BUILTIN_BY_ID["ernie"].base_url


BUILTIN_BY_ID = {spec.id: spec for spec in BUILTIN}
