"""Shared fixtures: every test runs isolated from the user's config, keys and sessions."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fakes.openai_server import FakeOpenAIServer

if TYPE_CHECKING:
    from tests.magics_shell import Shell

UseFake = Callable[..., str]


def _provider_env_vars() -> set[str]:
    from nbllm.providers.catalog import BUILTIN

    names: set[str] = set()
    for spec in BUILTIN:
        names.update(spec.key_env, spec.secret_env, spec.headers_from_env.values())
        if spec.base_url_env:
            names.add(spec.base_url_env)
    return names


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Empty config file, a log of its own, no provider keys or other NBLLM_* variables, no session keys,
    no default session, no cache mode set by %llm cache."""
    import nbllm.keys
    import nbllm.secrets
    import nbllm.session

    config = tmp_path / "nbllm-config.toml"
    config.write_text("", encoding="utf-8")
    for name in list(os.environ):
        if name.startswith("NBLLM_") or name in _provider_env_vars():
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBLLM_CONFIG", str(config))
    monkeypatch.setenv("NBLLM_LOG", str(tmp_path / "nbllm-log" / "logs.db"))  # never the user's own log
    for var in ("NO_PROXY", "no_proxy"):  # loopback servers must never go through a proxy
        current = os.environ.get(var, "")
        monkeypatch.setenv(var, ",".join(filter(None, [current, "127.0.0.1", "localhost"])))
    nbllm.keys._session_keys.clear()
    monkeypatch.setattr(nbllm.session, "_default", None)
    # secrets registered by one test (a one-letter key) must not mask another test's text
    monkeypatch.setattr(nbllm.secrets, "_known", set(nbllm.secrets._known))
    yield
    if nbllm.session._default is not None:
        nbllm.session._default.close()
    nbllm.keys._session_keys.clear()
    if "nbllm.log.cache" in sys.modules:  # only when a test used the log: never imported for this
        sys.modules["nbllm.log.cache"].set_kernel_mode(None)
    if "nbllm.log.store" in sys.modules:
        sys.modules["nbllm.log.store"].close_all()


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A started loopback OpenAI-compatible server (Qianfan flavour)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch) -> UseFake:
    """``use_fake(provider_id, server, key=...)``: route a provider to a fake and give it a key."""

    def _use(provider_id: str, server: FakeOpenAIServer, key: str | None = None) -> str:
        from nbllm.config import env_name, get_spec

        key = key if key is not None else f"nbllm-fake-{uuid.uuid4().hex[:16]}"
        monkeypatch.setenv(f"NBLLM_{env_name(provider_id)}_BASE_URL", server.base_url)
        spec = get_spec(provider_id)
        if spec.key_env and key:
            monkeypatch.setenv(spec.key_env[0], key)
        return key

    return _use


@pytest.fixture
def ipy(capsys: pytest.CaptureFixture[str]) -> Iterator[Shell]:
    """A real IPython shell with ``%load_ext nbllm``, capturing displays and printed text."""
    from tests.magics_shell import open_shell

    yield from open_shell(capsys)


@pytest.fixture
def ernie(ipy: Shell, openai_server: FakeOpenAIServer, use_fake: UseFake) -> FakeOpenAIServer:
    """The shell's default provider (ernie) answered by the loopback server."""
    ipy.secrets.append(use_fake("ernie", openai_server))
    return openai_server
