"""Send this process's OpenAI SDK traffic to another provider: ``%llm redirect``, ``nbllm.redirect``.

Why a patch, and why this one: the SDK's public settings (``base_url``, ``api_key``,
``http_client``, ``OPENAI_BASE_URL``) reach only clients created afterwards and cannot rename
models, while a notebook already holds clients and names OpenAI models in its code. Every v1
client (``OpenAI``, ``AsyncOpenAI``, the module-level ``openai.chat...`` client, LangChain's)
builds each HTTP request in one method, ``BaseClient._build_request``; wrapping it lets us
rewrite the requests bound for OpenAI (``api.openai.com`` or ``OPENAI_BASE_URL``) and no
others: URL, key and model. The SDK then sends, retries, streams and raises exactly as it
would against OpenAI; its ``_make_status_error_from_response`` is wrapped too, to put nbllm's
one-paragraph message into the SDK's own exception. The one public setting we do use is
``OPENAI_API_KEY``: unset, it gets a placeholder so ``OpenAI()`` can be built without an OpenAI
account. ``off`` puts every attribute and the variable back.
The SDK facts: docs/redirect.md#where-every-request-is-built and docs/redirect.md#errors.

Redirected chat requests are written to the exchange log too (``nbllm.log.redirected`` builds the
row): a rewritten request carries a ``Call`` in its extensions, and a response hook on the SDK
client's httpx client reads the answer (a whole JSON body) or copies a stream's bytes as the
SDK reads them, without holding them back (docs/exchange-log.md#redirected-openai-sdk-calls).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from nbllm.errors import ConfigError, NbllmError
from nbllm.modelmap import ModelMap, is_openai_model, parse_overrides, tier_of
from nbllm.providers.catalog import ProviderSpec
from nbllm.validate import header_problem

OPENAI_HOST = "api.openai.com"
PLACEHOLDER_KEY = "nbllm-redirect-no-openai-key"
# Headers that carry OpenAI credentials or account ids: never forwarded to another host.
_DROPPED = {"authorization", "api-key", "x-api-key", "proxy-authorization", "cookie", "host"}
KEY_REMOVED = "[OpenAI key removed by nbllm]"  # stands where a prompt quoted the OpenAI key
LOGGED = "nbllm_log_call"  # the request extension that carries a redirected chat call to the log hook


@dataclass
class Target:
    """Where redirected requests go, and how their model names change."""

    spec: ProviderSpec
    key: str | None = field(repr=False)  # never in a repr
    model: str | None = None  # ``ID:model``: every OpenAI chat model becomes this one
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.spec.base_url.rstrip("/")

    @property
    def shown_url(self) -> str:
        """``base_url`` for messages and reprs: without a ``user:password@``."""
        return _shown(self.base_url)

    def map_model(self, name: str) -> tuple[str, str | None]:
        """The model to send instead of ``name``, and why (None when it is kept)."""
        if name in self.overrides:
            return self.overrides[name], "--model"
        if self.model and is_openai_model(name) and tier_of(name) != "embedding":
            return self.model, f"{self.spec.id}:{self.model}"
        mapping = ModelMap(self.spec, self.overrides).lookup(name)
        if mapping is None or mapping.new == name:
            return name, mapping.warning if mapping else None
        reason = f"{mapping.tier} tier" + (f"; {mapping.warning}" if mapping.warning else "")
        return mapping.new, reason


@dataclass
class _State:
    target: Target
    mapped: dict[str, str] = field(default_factory=dict)  # old -> new, in the order first seen
    noted: set[str] = field(default_factory=set)
    placeholder: bool = False


_lock = threading.RLock()
_state: _State | None = None
_patches: list[tuple[Any, str, Any]] = []  # (owner, attribute, original) to put back


# -- public API ------------------------------------------------------------------------------
class Redirect:
    """An active redirect; ``with nbllm.redirect("ernie"):`` ends it (or restores the previous one)."""

    def __init__(self, target: Target, previous: Target | None, message: str = "") -> None:
        self.target = target
        self._previous = previous
        self.message = message  # what was said (or would have been, when quiet)

    def __enter__(self) -> Redirect:
        with _lock:  # a handle entered again after its redirect ended starts it again
            current = active()
            if current != self.target:
                self._previous = current
                start_target(self.target, quiet=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._previous is None:
            stop(quiet=True)
        else:
            start_target(self._previous, quiet=True)

    def off(self) -> str:
        return stop()

    def __repr__(self) -> str:
        return f"<nbllm redirect to {self.target.spec.id} at {self.target.shown_url}>"


def redirect(target: str, models: list[str] | dict[str, str] | None = None, *, quiet: bool = False) -> Redirect:
    """Route OpenAI SDK traffic to ``target`` (``"ernie"``, ``"qwen:qwen-max"``) until ``off``."""
    overrides = dict(models) if isinstance(models, dict) else parse_overrides(models)
    return start_target(resolve(target, overrides), quiet=quiet)


def resolve(target: str, overrides: dict[str, str] | None = None) -> Target:
    """Check the provider, its protocol and its key before anything is changed."""
    from nbllm.config import get_spec, split_target
    from nbllm.keys import require_key

    if not target or not target.strip():
        raise ConfigError("%llm redirect needs a provider id, for example %llm redirect ernie (or off).")
    pid, model = split_target(target)
    spec = get_spec(pid)
    if spec.id == "openai":
        raise ConfigError("openai is where the traffic goes without a redirect; %llm redirect off stops redirecting.")
    if not spec.openai_compatible:
        raise ConfigError(
            f"{spec.label} ({spec.id}) speaks its own protocol ({spec.dialect}), not OpenAI's, so OpenAI SDK "
            "requests cannot be sent to it. Redirect to an OpenAI-compatible provider (nbllm providers lists them)."
        )
    key = require_key(spec)
    if key is not None and (header_problem(key) or " " in key):  # a key never holds a space either
        raise ConfigError(
            f"The key for {spec.id} has spaces, line breaks or non-ASCII characters, which an HTTP header cannot "
            f"carry. Set it again ({' or '.join(spec.key_env) or '%llm key ' + spec.id}) without them."
        )
    return Target(spec, key, model, dict(overrides or {}))


def start_target(target: Target, *, quiet: bool = False) -> Redirect:
    """Make ``target`` the active redirect (replacing any other) and install the patches once."""
    global _state
    with _lock:
        previous = _state.target if _state else None
        if previous == target:
            message = f"Already redirecting to {target.spec.id}; nothing changed."
        else:
            _install()
            placeholder = _state.placeholder if _state else _set_placeholder_key()
            _state = _State(target, placeholder=placeholder)
            message = started_text(target, previous)
    if not quiet:
        _say(message)
    return Redirect(target, previous, message)


def stop(*, quiet: bool = False) -> str:
    """End the redirect: every patched attribute and the placeholder key are put back."""
    global _state
    with _lock:
        state, _state = _state, None
        _uninstall()
        if state is not None and state.placeholder and os.environ.get("OPENAI_API_KEY") == PLACEHOLDER_KEY:
            del os.environ["OPENAI_API_KEY"]
    if state is None:
        text = "No redirect was active; OpenAI SDK traffic already goes where each client points."
    else:
        text = (f"Redirect to {state.target.spec.id} ended: OpenAI SDK requests go to "
                f"{_shown_bases()} again.")
        if state.placeholder:
            text += (" Clients created during the redirect hold nbllm's placeholder instead of an OpenAI key; "
                     "create them again with a key to use OpenAI.")
    if not quiet:
        _say(text)
    return text


def active() -> Target | None:
    with _lock:
        return _state.target if _state else None


def status() -> str:
    """What is redirected, where, and which model names were mapped so far."""
    with _lock:
        state = _state
        mapped = dict(state.mapped) if state else {}
    if state is None:
        return "No redirect: OpenAI SDK traffic goes where each client points (%llm redirect ID starts one)."
    spec = state.target.spec
    names = ", ".join(f"{old} -> {new}" for old, new in mapped.items()) or "none yet"
    return (f"OpenAI SDK requests for {_shown_bases()} go to {spec.label} ({spec.id}) at "
            f"{state.target.shown_url}, from every OpenAI and AsyncOpenAI client (old or new, the module-level "
            f"one and libraries such as LangChain). Clients with another base_url and Azure clients are left "
            f"alone. Models mapped so far: {names}. %llm redirect off restores direct OpenAI traffic.")


def started_text(target: Target, previous: Target | None) -> str:
    from nbllm.modelmap import describe

    spec = target.spec
    was = f" (instead of {previous.spec.id})" if previous and previous.spec.id != spec.id else ""
    if target.model:
        models = (f"OpenAI chat models become {target.model}; embedding models "
                  f"{spec.tiers.get('embedding') or spec.default_model}")
    else:
        models = "model map: " + "; ".join(describe(spec, target.overrides))
    return (f"OpenAI SDK traffic in this process now goes to {spec.label} ({spec.id}) at {target.shown_url}"
            f"{was}, with the {spec.id} key; {models}. %llm redirect off restores it.")


# -- rewriting one request ----------------------------------------------------------------------
def _openai_bases() -> list[str]:
    """The URLs whose requests are OpenAI's: the SDK default and ``OPENAI_BASE_URL`` (0.x: ``OPENAI_API_BASE``)."""
    bases = [f"https://{OPENAI_HOST}/v1"]
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        env = os.environ.get(name, "").strip().rstrip("/")
        if env and env not in bases:
            bases.append(env)
    return bases


def _shown_bases() -> str:
    """``_openai_bases`` for a message: a relay's ``user:password@`` is left out."""
    return " or ".join(map(_shown, _openai_bases()))


def _shown(url: str) -> str:
    return "{}://{}{}".format(*_origin(url))


def _origin(url: str) -> tuple[str, str, str]:
    """Scheme, host[:port] and path as HTTP compares them: case-blind host, no default port, no credentials."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a malformed port: compared as written
        port = None
    host = (parts.hostname or "") + (f":{port}" if port and port != {"http": 80, "https": 443}.get(scheme) else "")
    return scheme, host, parts.path


def provider_url(url: str, target: Target) -> str | None:
    """The provider URL for a request URL bound for OpenAI, else None (left alone)."""
    parts = urlsplit(url)
    scheme, host, path = _origin(url)
    if parts.hostname == OPENAI_HOST:
        path = path[3:] if path.startswith("/v1/") else path
    else:
        prefixes = [b[2].rstrip("/") for b in map(_origin, _openai_bases()[1:]) if b[:2] == (scheme, host)]
        prefix = next((p for p in prefixes if path == p or path.startswith(p + "/")), None)
        if prefix is None:
            return None
        path = path[len(prefix):]
    query = f"?{parts.query}" if parts.query else ""
    return f"{target.base_url}/{path.lstrip('/')}{query}"


def rewrite(request: Any, client_key: str | None = None) -> Any:
    """A new request of the same httpx flavour for the provider, or None to send it unchanged.

    ``client_key`` is the OpenAI key of the client that built it: any header or query value carrying
    it (or ``OPENAI_API_KEY``), under whatever name, stays behind.
    """
    with _lock:
        state = _state
    if state is None:
        return None
    url = provider_url(str(request.url), state.target)
    if url is None:
        return None
    target = state.target
    secrets = _openai_keys(client_key)
    url = _without_keys_in_url(url, secrets, target)
    body = _json_body(request)
    dropped = _DROPPED | ({"content-length"} if body is not None else set())
    headers = _provider_headers(request.headers.multi_items(), target, dropped, secrets)
    kwargs: dict[str, Any] = {"extensions": request.extensions}
    if body is None:  # multipart uploads and the like: the same bytes, to the new URL
        _refuse_keys_in_bytes(_chunks(request), secrets, target)
        kwargs["stream"] = request.stream
        headers.append(("Host", urlsplit(url).netloc.rpartition("@")[2]))  # httpx adds it only for content=
    else:
        sent = _without_keys(_map_body(body, state), secrets)
        kwargs["content"] = json.dumps(sent, ensure_ascii=False).encode()
        kwargs["extensions"] = {**request.extensions, **_log_call(url, sent, target)}
    return type(request)(request.method, url, headers=headers, **kwargs)


def _log_call(url: str, body: dict[str, Any], target: Target) -> dict[str, Any]:
    """The extension that gets a chat request's answer logged (nothing for other endpoints)."""
    from nbllm.log.redirected import CHAT_PATH, Call

    if not urlsplit(url).path.endswith(CHAT_PATH):
        return {}
    return {LOGGED: Call(target.spec, target.base_url, body)}


def _openai_keys(client_key: str | None) -> set[str]:
    keys = {client_key, os.environ.get("OPENAI_API_KEY", "").strip()}
    return {k for k in keys if isinstance(k, str) and len(k) >= 8 and k != PLACEHOLDER_KEY}


def _without_keys_in_url(url: str, secrets: set[str], target: Target) -> str:
    """``url`` without the query parameters that name or hold an OpenAI key; a key left in the path is refused."""
    parts = urlsplit(url)
    if parts.query and any(s in unquote_plus(parts.query) for s in secrets):
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                if not any(s in k or s in v for s in secrets)]
        url = parts._replace(query=urlencode(kept)).geturl()
    if any(s in unquote_plus(url) for s in secrets):
        raise _key_refused("URL", target)
    return url


def _without_keys(value: Any, secrets: set[str]) -> Any:
    """A JSON body without OpenAI keys: a field holding one (``"api_key": ...``, a relay's
    ``"Bearer ..."``) is dropped, and a text quoting one keeps the rest with KEY_REMOVED in its place."""
    if not secrets:
        return value
    if isinstance(value, dict):
        return {k: _without_keys(v, secrets) for k, v in value.items()
                if not _holds_key(v, secrets) and not any(s in str(k) for s in secrets)}
    if isinstance(value, list):
        return [_without_keys(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, KEY_REMOVED)
    return value


def _holds_key(value: Any, secrets: set[str]) -> bool:
    """A value that is a credential: the key itself, maybe after ``Bearer``, and nothing else."""
    return isinstance(value, str) and value.strip().removeprefix("Bearer ").strip() in secrets


def _chunks(request: Any) -> Collection[bytes] | Any:
    """The bytes of a non-JSON body: read already, or the upload stream (httpx re-reads it to send)."""
    try:
        return [request.content]
    except Exception:  # a streamed upload not read yet (httpx and httpx2 name that error apart)
        return request.stream if hasattr(request.stream, "__iter__") else []


def _refuse_keys_in_bytes(chunks: Any, secrets: set[str], target: Target) -> None:
    """An upload or form holding the OpenAI key cannot be edited safely: it is not sent at all."""
    if not secrets:
        return
    longest = max(map(len, secrets))
    tail = b""
    for chunk in chunks:
        data = tail + bytes(chunk)
        if any(s.encode() in data for s in secrets):
            raise _key_refused("body", target)
        tail = data[-longest:]


def _key_refused(where: str, target: Target) -> ConfigError:
    return ConfigError(
        f"nbllm redirect: this OpenAI SDK request carries your OpenAI key in its {where}, which nbllm will not "
        f"send to {target.spec.label} ({target.spec.id}); nothing was sent. Take the key out of the data, or "
        "%llm redirect off to send it to OpenAI."
    )


def _provider_headers(pairs: Any, target: Target, dropped: set[str],
                      secrets: Collection[str] = ()) -> list[tuple[str, str]]:
    """The request's headers without OpenAI's credentials, with the provider's added."""
    headers = [(k, v) for k, v in pairs if k.lower() not in dropped and not k.lower().startswith("openai-")
               and not any(s in v for s in secrets)]
    if target.key:
        headers.append(("Authorization", f"Bearer {target.key}"))
    headers += list(target.spec.extra_headers.items())
    headers += [(name, os.environ[var]) for name, var in target.spec.headers_from_env.items() if os.environ.get(var)]
    return headers


def _json_body(request: Any) -> dict[str, Any] | None:
    if "json" not in request.headers.get("content-type", ""):
        return None
    try:
        body = json.loads(request.content)
    except Exception:  # not JSON, or a streamed body not read yet (httpx and httpx2 name that error apart)
        return None
    return body if isinstance(body, dict) else None


def _map_body(body: dict[str, Any], state: _State) -> dict[str, Any]:
    body = {**state.target.spec.extra_body, **body}
    name = body.get("model")
    if isinstance(name, str):
        new, reason = state.target.map_model(name)
        body["model"] = new
        _note_mapping(state, name, new, reason)
    return body


def _note_mapping(state: _State, old: str, new: str, reason: str | None) -> None:
    """One line the first time each name is mapped (or kept with a warning)."""
    with _lock:
        if old in state.noted:
            return
        state.noted.add(old)
        if new != old:
            state.mapped[old] = new
    if new != old:
        _say(f"nbllm redirect: {old} -> {new}" + (f" ({reason})" if reason else ""))
    elif reason:
        _say(f"nbllm redirect: {reason}")


def _note_once(key: str, text: str) -> None:
    with _lock:
        if _state is None or key in _state.noted:
            return
        _state.noted.add(key)
    _say(text)


# -- errors ------------------------------------------------------------------------------------
def provider_message(response: Any) -> str | None:
    """nbllm's paragraph for a failed answer from the active target, else None."""
    from nbllm.providers.errormap import decode_body, make_error

    target = active()
    if target is None or not str(response.request.url).startswith(target.base_url + "/"):
        return None
    try:
        body = decode_body(response.content)
    except Exception:  # a body that could not be read: the status alone
        body = None
    error = make_error(target.spec, response.status_code, body, response.headers)
    return (f"{error.message} (nbllm redirected this OpenAI SDK request; %llm redirect shows the model map, "
            "--model OLD=NEW changes it, %llm redirect off stops it.)")


def _with_message(exc: Any, message: str) -> Any:
    exc.message = message
    exc.args = (message,)
    return exc


# -- the patches -------------------------------------------------------------------------------
def _install() -> None:
    if _patches:
        return
    try:
        import openai
    except ImportError:
        raise NbllmError("The openai package is not installed in this Python, so there is no OpenAI SDK traffic "
                         "to redirect (pip install openai, or use %%llm directly).") from None
    if not hasattr(openai, "OpenAI"):
        _install_v0(openai)
        return
    from openai import _base_client
    from openai.lib import _old_api

    base = _base_client.BaseClient
    _patch(base, "_build_request", _wrap_build_request(base._build_request))
    _patch(base, "_make_status_error_from_response", _wrap_status_error(base._make_status_error_from_response))
    _patch(_old_api.APIRemovedInV1, "__init__", _wrap_removed_api(_old_api.APIRemovedInV1.__init__))


def _install_v0(openai: Any) -> None:
    """openai<1: every request's URL, headers and body come from ``APIRequestor._prepare_request_raw``."""
    from openai import api_requestor

    owner = api_requestor.APIRequestor
    _patch(owner, "_prepare_request_raw", _wrap_prepare_raw(owner._prepare_request_raw))
    _patch(owner, "request_raw", _wrap_request_raw(owner.request_raw))
    if openai.api_key is None:  # 0.x reads the key from the module; unset, every call raises first
        _patch_value(openai, "api_key", PLACEHOLDER_KEY)


def _wrap_prepare_raw(original: Callable[..., Any]) -> Callable[..., Any]:
    def _prepare_request_raw(self: Any, *args: Any, **kwargs: Any) -> Any:
        abs_url, headers, data = original(self, *args, **kwargs)
        with _lock:
            state = _state
        url = provider_url(abs_url, state.target) if state and str(self.api_type).endswith("OPEN_AI") else None
        if state is None or url is None:
            return abs_url, headers, data
        secrets = _openai_keys(getattr(self, "api_key", None))
        url = _without_keys_in_url(url, secrets, state.target)
        if isinstance(data, bytes) and "json" in str(headers.get("Content-Type", "")):
            sent = _without_keys(_map_body(json.loads(data), state), secrets)
            data = json.dumps(sent, ensure_ascii=False).encode()
            _v0_call.pending = _log_call(url, sent, state.target).get(LOGGED)  # request_raw logs its answer
        elif isinstance(data, dict):  # the form fields of an upload (the files go to requests apart)
            data = _without_keys(data, secrets)
        elif data is not None:
            _refuse_keys_in_bytes([data], secrets, state.target)
        return url, dict(_provider_headers(headers.items(), state.target, _DROPPED, secrets)), data

    return _prepare_request_raw


_v0_call = threading.local()  # .pending: the Call _prepare_request_raw made for the request_raw around it


def _wrap_request_raw(original: Callable[..., Any]) -> Callable[..., Any]:
    """openai<1's blocking send: its ``requests`` answer is logged as the v1 hook logs httpx's
    (0.x's asyncio path, over aiohttp, is not logged)."""
    def request_raw(self: Any, *args: Any, **kwargs: Any) -> Any:
        _v0_call.pending = None
        result = original(self, *args, **kwargs)
        call, _v0_call.pending = getattr(_v0_call, "pending", None), None
        if call is not None and not 300 <= result.status_code < 400:
            _log_v0(result, call)
        return result

    return request_raw


def _log_v0(result: Any, call: Any) -> None:
    status = result.status_code
    if call.streamed and status < 400 and "text/event-stream" in result.headers.get("Content-Type", ""):
        lines = result.iter_lines

        def iter_lines(*args: Any, **kwargs: Any) -> Any:  # what 0.x reads a stream with
            seen: list[bytes] = []
            try:
                for line in lines(*args, **kwargs):
                    call.arrived()
                    seen.append(line)
                    yield line
            finally:  # the end, or the notebook stopped reading (the generator is closed)
                _finish(call, status, b"\n".join(seen))

        result.iter_lines = iter_lines
        return
    raw = result.content  # 0.x reads it next anyway
    call.arrived()
    _finish(call, status, raw, result.headers)


def _patch_value(owner: Any, name: str, value: Any) -> None:
    _patches.append((owner, name, getattr(owner, name)))
    setattr(owner, name, value)


def _patch(owner: Any, name: str, replacement: Callable[..., Any]) -> None:
    _patches.append((owner, name, owner.__dict__[name]))
    setattr(owner, name, replacement)


def _uninstall() -> None:
    while _patches:
        owner, name, original = _patches.pop()
        if isinstance(owner, ModuleType) and getattr(owner, name) != PLACEHOLDER_KEY:
            continue  # the notebook set its own value since: keep it
        setattr(owner, name, original)


def _wrap_build_request(original: Callable[..., Any]) -> Callable[..., Any]:
    def _build_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = original(self, *args, **kwargs)
        if _left_alone(self):
            return request
        new = rewrite(request, getattr(self, "api_key", None))
        if new is None:
            return request
        if LOGGED in new.extensions and getattr(self, "_client", None) is not None:
            _hook_log(self._client)
        return new

    return _build_request


# -- the exchange log ----------------------------------------------------------------------------
def _hook_log(http_client: Any) -> None:
    """Add the log's response hook to an SDK client's httpx client, once (it stays: without a
    ``Call`` on the request, after ``off`` too, it does nothing)."""
    hook = _alog_response if inspect.iscoroutinefunction(http_client.send) else _log_response
    with _lock:
        hooks = http_client.event_hooks
        if hook not in hooks["response"]:
            http_client.event_hooks = {**hooks, "response": [*hooks["response"], hook]}


def _log_response(response: Any) -> None:
    call = _call_of(response)
    if call is None:
        return
    if _teed(response, call):
        return
    response.read()  # the SDK reads it next anyway: a whole answer or an error body
    call.arrived()
    _finish(call, response.status_code, response.content, response.headers)


async def _alog_response(response: Any) -> None:
    call = _call_of(response)
    if call is None:
        return
    if _teed(response, call):
        return
    await response.aread()
    call.arrived()
    _finish(call, response.status_code, response.content, response.headers)


def _call_of(response: Any) -> Any:
    """The ``Call`` of a redirected chat answer to log, or None (3xx: the SDK follows it on)."""
    call = response.request.extensions.get(LOGGED)
    if call is None or call.logged or 300 <= response.status_code < 400:
        return None
    return call


def _teed(response: Any, call: Any) -> bool:
    """For a streamed answer, copy its bytes to the log as the SDK reads them (never ahead of it)."""
    if not (call.streamed and response.status_code < 400
            and "event-stream" in response.headers.get("content-type", "")):
        return False
    flavour = sys.modules[type(response).__module__.partition(".")[0]]  # httpx or httpx2
    tee = _tee_class(flavour.SyncByteStream, flavour.AsyncByteStream)
    response.stream = tee(response.stream, call, response.status_code)
    return True


def _finish(call: Any, status: int, raw: bytes, headers: Any = None) -> None:
    try:
        call.finish(status, raw, headers)
    except Exception as exc:  # the log must never cost the user the SDK's answer
        warnings.warn(f"nbllm: a redirected call was not logged: {type(exc).__name__}: {exc}", RuntimeWarning,
                      stacklevel=2)


@functools.cache
def _tee_class(sync_base: type, async_base: type) -> type:
    """A byte stream of the response's own httpx flavour that passes every chunk on and keeps a copy;
    when the SDK has read it to the end or closed it (a ``break``), the copy is logged."""

    class Tee(sync_base, async_base):  # type: ignore[valid-type, misc]
        def __init__(self, stream: Any, call: Any, status: int) -> None:
            self._stream, self._call, self._status = stream, call, status
            self._chunks: list[bytes] = []

        def __iter__(self) -> Any:
            for chunk in self._stream:
                self._call.arrived()
                self._chunks.append(chunk)
                yield chunk
            self._end()

        async def __aiter__(self) -> Any:
            async for chunk in self._stream:
                self._call.arrived()
                self._chunks.append(chunk)
                yield chunk
            self._end()

        def close(self) -> None:
            try:
                self._stream.close()
            finally:
                self._end()

        async def aclose(self) -> None:
            try:
                await self._stream.aclose()
            finally:
                self._end()

        def _end(self) -> None:
            _finish(self._call, self._status, b"".join(self._chunks))

    return Tee


def _left_alone(client: Any) -> bool:
    """Azure clients and clients with their own auth machinery keep their requests."""
    from openai.lib.azure import BaseAzureClient

    if isinstance(client, BaseAzureClient):
        _note_once("azure", "nbllm redirect: an Azure OpenAI client is left alone (it targets Azure on purpose).")
        return True
    return getattr(client, "_provider_runtime", None) is not None or \
        getattr(client, "workload_identity", None) is not None


def _wrap_status_error(original: Callable[..., Any]) -> Callable[..., Any]:
    def _make_status_error_from_response(self: Any, response: Any) -> Any:
        exc = original(self, response)
        message = provider_message(response)
        return _with_message(exc, message) if message else exc

    return _make_status_error_from_response


def _wrap_removed_api(original: Callable[..., Any]) -> Callable[..., Any]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces a constructor
        original(self, *args, **kwargs)
        note = ("This is openai<1 code and the installed openai is 1.0 or newer, so the SDK itself refuses it "
                "(the redirect cannot help). Run `nbllm convert NOTEBOOK.ipynb --to ID` (or %llm convert) to "
                "migrate it to the v1 client; then the redirect or the converted code reaches the provider.")
        self.args = (f"{note}\n{self.args[0] if self.args else ''}",)

    return __init__


# -- small helpers -----------------------------------------------------------------------------
def _set_placeholder_key() -> bool:
    if os.environ.get("OPENAI_API_KEY", "").strip():
        return False
    os.environ["OPENAI_API_KEY"] = PLACEHOLDER_KEY
    return True


def _say(text: str) -> None:
    from nbllm.secrets import redact

    print(redact(text), file=sys.stderr, flush=True)
