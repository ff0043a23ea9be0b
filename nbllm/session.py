"""The state the magics, the widget and the Python API share: provider, model, options, history.

``Session`` is a traitlets object so the switcher widget can ``link`` to ``provider`` and
``model`` and both sides always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from traitlets import Dict, HasTraits, Int, Unicode, observe, validate

from nbllm.config import default_source, get_spec, load_specs, split_target
from nbllm.errors import ConfigError, NbllmError
from nbllm.keys import find_key, require_key
from nbllm.messages import ChatRequest, Message, as_messages
from nbllm.providers.base import Provider, make_provider
from nbllm.providers.catalog import ProviderSpec
from nbllm.response import Callback, Response
from nbllm.validate import check_options


class Session(HasTraits):
    """Current provider/model/options plus the conversation, shared by every front end."""

    provider = Unicode(help="Current provider id.")
    model = Unicode(help="Current model; empty means the provider's default.")
    params = Dict(help="Default options sent with every call (temperature, max_tokens, ...).")
    max_history = Int(20, help="How many past messages are sent with a new prompt.")

    def __init__(self, target: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.history: list[Message] = []
        self._providers: dict[tuple[str, str, str, str | None], Provider] = {}
        self.default_error: NbllmError | None = None  # why the configured default cannot be used
        if target:
            self.use(target)
        else:
            self.use_default()

    def use_default(self, target: str | None = None, origin: str = "") -> None:
        """Switch to the configured default; a bad default is kept as an error for calls that need it.

        Calls that name their provider, ``use`` and the provider list keep working, so a typo in
        ``NBLLM_DEFAULT`` or the config file never locks the user out.
        """
        try:
            if target is None:
                target, origin = default_source()
            self.use(target)
        except NbllmError as exc:
            self.provider, self.model = "", ""  # calls that name no provider get the error below
            where = f" (set by {origin})" if origin else ""
            self.default_error = ConfigError(
                f"The default provider{where} cannot be used: {exc.message} Name a provider in the call, "
                "or run %llm use ID (nbllm.chat(..., provider=ID))."
            )

    def __repr__(self) -> str:
        return f"<Session {self.target} params={self.params} history={len(self.history)} messages>"

    @property
    def target(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider

    @observe("provider")
    def _provider_changed(self, change: dict[str, Any]) -> None:
        if change["old"] and change["new"] != change["old"]:
            self.model = ""

    @validate("params")
    def _valid_params(self, proposal: dict[str, Any]) -> dict[str, Any]:
        check_options(proposal["value"], "the session options")
        return proposal["value"]

    def use(self, target: str, model: str | None = None) -> None:
        """Switch provider (and model) for the following calls; unknown ids fail here."""
        pid, target_model = split_target(target)
        spec = get_spec(pid)
        self.provider = spec.id
        self.model = model or target_model or ""
        self.default_error = None

    def _current(self) -> str:
        if not self.provider and self.default_error is not None:
            raise self.default_error
        return self.provider

    def spec(self, target: str | None = None) -> ProviderSpec:
        pid = split_target(target)[0] if target else self._current()
        return get_spec(pid)

    def resolve(self, target: str | None = None, model: str | None = None, *,
                key_required: bool = True) -> tuple[Provider, str]:
        """The provider object and model name a call goes to; a missing key fails here.

        Providers are kept per id, address (URL or model file) and key, so a changed config or
        key gets a new one; timeouts travel with each request and never make a second provider.
        ``key_required=False`` (replay mode, which never calls the provider) accepts no key.
        """
        if target:
            pid, target_model = split_target(target)
        else:
            pid, target_model = self._current(), self.model or None
        spec = get_spec(pid, load_specs())
        key = require_key(spec) if key_required else find_key(spec)
        cache_key = (spec.id, spec.base_url, spec.model_path, key)
        provider = self._providers.get(cache_key)
        if provider is None:
            provider = self._providers[cache_key] = make_provider(spec, key)
        return provider, model or target_model or spec.default_model

    def request(self, messages: list[Message], model: str, params: dict[str, Any]) -> ChatRequest:
        merged = {**self.params, **{k: v for k, v in params.items() if v is not None}}
        timeout = merged.pop("timeout", None)
        return ChatRequest(messages=messages, model=model, params=merged, timeout=timeout)

    def windowed_history(self) -> list[Message]:
        return self.history[-self.max_history :] if self.max_history > 0 else []

    def remember(self, prompt: str, answer: str) -> None:
        """Record one successful exchange (callers only do this on success)."""
        self.history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]

    def reset(self) -> None:
        self.history.clear()

    def close(self) -> None:
        for provider in self._providers.values():
            provider.close()
        self._providers.clear()

    def recorder(self, prompt: str, *, fresh: bool = False) -> Callback:
        """A completion callback that keeps a successful exchange (after a reset when ``fresh``)."""
        def record(response: Response) -> None:
            if response.ok:
                if fresh:
                    self.reset()
                self.remember(prompt, response.text)

        return record

    # -- asking ---------------------------------------------------------------------------
    def respond(self, messages: list[Message], target: str | None = None, model: str | None = None, *,
                params: dict[str, Any] | None = None, stream: bool = True, source: str = "api",
                on_done: Iterable[Callback] = (), cache: str | None = None,
                meta: dict[str, Any] | None = None) -> Response:
        """The unread ``Response`` for messages sent to a target with this session's options.

        ``cache`` is "on", "off" or "replay" for this call (default: ``%llm cache``, then
        ``NBLLM_CACHE``); ``meta`` goes to the response for its observers (see nbllm.log.hook).
        """
        from nbllm.log.cache import resolve_mode

        check_options(params or {})
        replaying = resolve_mode(cache) == "replay"
        provider, model_name = self.resolve(target, model, key_required=not replaying)
        request = self.request(messages, model_name, params or {})
        response = provider.respond(request, stream=stream, source=source, on_done=on_done)
        response.meta.update(meta or {}, **({"cache": cache} if cache else {}))
        return response

    def stream(self, prompt: str | list[Message], target: str | None = None, model: str | None = None,
               system: str | None = None, *, cache: str | None = None, **params: Any) -> Response:
        """The Python API's streamed answer: iterate it for deltas."""
        return self.respond(as_messages(prompt, system), target, model, params=params, cache=cache)

    def chat(self, prompt: str | list[Message], target: str | None = None, model: str | None = None,
             system: str | None = None, *, cache: str | None = None, **params: Any) -> Response:
        """The Python API's whole answer (``stream=False`` asks for it in one request)."""
        streamed = params.pop("stream", True)
        return self.respond(as_messages(prompt, system), target, model, params=params, stream=streamed,
                            cache=cache).reply()


_default: Session | None = None


def default_session() -> Session:
    """The session the magics and the top-level API share within one Python process."""
    global _default
    if _default is None:
        _default = Session()
    return _default
