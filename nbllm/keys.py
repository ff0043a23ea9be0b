"""Where API keys come from: the session (``set_key``), the environment, then keyring.

Keys are registered with ``nbllm.secrets`` the moment they are read, so that no message,
log line or output can carry one afterwards.
"""

from __future__ import annotations

import os

from nbllm.errors import MissingKeyError
from nbllm.providers.catalog import ProviderSpec
from nbllm.secrets import register_secret

_session_keys: dict[str, str] = {}


def set_key(provider_id: str, key: str) -> None:
    """Keep a key for this Python session only (never written anywhere)."""
    key = key.strip()
    register_secret(key)
    for part in key.split(":", 1):
        register_secret(part)
    _session_keys[provider_id] = key


def _from_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _from_keyring(provider_id: str) -> str | None:
    try:
        import keyring  # optional: only when the user installed it
    except ImportError:
        return None
    try:
        return keyring.get_password("nbllm", provider_id)
    except Exception:  # a locked or absent backend is the same as no key there
        return None


def find_key(spec: ProviderSpec) -> str | None:
    """The key for a provider, or None; two-part credentials come back as "KEY:SECRET"."""
    key = _session_keys.get(spec.id)
    if key is None:
        first = _from_env(spec.key_env)
        if spec.secret_env:
            second = _from_env(spec.secret_env)
            key = f"{first}:{second}" if first and second else None
        else:
            key = first
    if key is None:
        key = _from_keyring(spec.id)
    if key:
        register_secret(key)
        for part in key.split(":", 1):
            register_secret(part)
    return key


def missing_key_hint(spec: ProviderSpec) -> str:
    """Which variables or command would configure the provider."""
    names = " and ".join(n for n in (spec.key_env[:1] + spec.secret_env[:1]))
    aliases = [*spec.key_env[1:], *spec.secret_env[1:]]
    also = f" (or {', '.join(aliases)})" if aliases else ""
    return f"set {names}{also}, or run %llm key {spec.id} in a notebook"


def require_key(spec: ProviderSpec) -> str | None:
    """The key, or MissingKeyError when the provider needs one and none is set."""
    key = find_key(spec)
    if key is None and spec.key_required and (spec.key_env or spec.secret_env):
        raise MissingKeyError(
            f"No API key for {spec.label} ({spec.id}): {missing_key_hint(spec)}. "
            f"Keys are read from the environment, never from notebooks.",
            provider=spec.id,
        )
    return key


def is_configured(spec: ProviderSpec) -> bool:
    return not spec.key_required or find_key(spec) is not None
