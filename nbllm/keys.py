"""Where API keys come from: the session (``set_key``), the environment, then keyring.

Keys are registered with ``nbllm.secrets`` the moment they are read, so that no message,
log line or output can carry one afterwards, and checked for characters an HTTP header cannot
carry before any request is built (the error names the variable and the position, never the
key). Frames that held a refused key drop it before the error leaves them, so ``%xmode
Verbose`` has no key to print.
"""

from __future__ import annotations

import os

from nbllm.errors import ConfigError, MissingKeyError
from nbllm.providers.catalog import ProviderSpec
from nbllm.secrets import register_secret
from nbllm.validate import check_key

_session_keys: dict[str, str] = {}


def set_key(provider_id: str, key: str) -> None:
    """Keep a key for this Python session only (never written anywhere).

    A blank key and an unknown provider are refused here; a key an HTTP header cannot carry is
    refused where it is used (``find_key``), like a key from the environment.
    """
    from nbllm.config import get_spec

    if not isinstance(key, str) or not key.strip():
        del key
        raise ConfigError(f"No key given for {provider_id!r}: set_key needs the key as a non-empty string.")
    spec = get_spec(provider_id)
    key = key.strip()
    _register(key)
    _session_keys[spec.id] = key


def _register(key: str) -> None:
    register_secret(key)
    for part in key.split(":", 1):
        register_secret(part)


def _from_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            _register(value)
            try:
                check_key(value, f"in the environment variable {name}")
            except ConfigError:
                del value
                raise
            return value
    return None


def _from_keyring(provider_id: str) -> str | None:
    try:
        import keyring  # optional: only when the user installed it
    except ImportError:
        return None
    try:
        value = keyring.get_password("nbllm", provider_id)
    except Exception:  # a locked or absent backend is the same as no key there
        return None
    if value:
        _register(value)
        try:
            check_key(value, f"in the keyring entry nbllm/{provider_id}")
        except ConfigError:
            del value
            raise
    return value


def find_key(spec: ProviderSpec) -> str | None:
    """The key for a provider, or None; two-part credentials come back as "KEY:SECRET"."""
    key = _session_key(spec) or _env_key(spec)
    if key is None:
        key = _from_keyring(spec.id)
    if key:
        _register(key)
    return key


def _session_key(spec: ProviderSpec) -> str | None:
    value = _session_keys.get(spec.id)
    if value is not None:
        try:
            also = f" Set it again, or put it in {spec.key_env[0]} instead." if spec.key_env else " Set it again."
            check_key(value, f"given for {spec.id} with nbllm.set_key or %llm key", also)
        except ConfigError:
            del value
            raise
    return value


def _env_key(spec: ProviderSpec) -> str | None:
    first = _from_env(spec.key_env)
    if not spec.secret_env:
        return first
    try:
        second = _from_env(spec.secret_env)
    except ConfigError:
        first = None  # noqa: F841 - the first half leaves the locals a verbose traceback shows
        raise
    return f"{first}:{second}" if first and second else None


def has_key(spec: ProviderSpec) -> bool:
    """A key is set (a key that cannot be sent counts: the call says what is wrong with it)."""
    try:
        return find_key(spec) is not None
    except ConfigError:
        return True


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
    return not spec.key_required or has_key(spec)
