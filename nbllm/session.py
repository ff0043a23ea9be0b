"""The state the magics, the widget and the Python API share: provider, model, options, history.

``Session`` is a traitlets object so the switcher widget can ``link`` to ``provider`` and
``model`` and both sides always agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from traitlets import Dict, HasTraits, Int, Unicode, observe, validate

from nbllm.chat import ChatRequest, Delta, Message, Reply, as_messages
from nbllm.config import default_source, get_spec, load_specs, split_target
from nbllm.errors import ConfigError, NbllmError
from nbllm.keys import require_key
from nbllm.providers.base import Provider, collect, provider_class
from nbllm.providers.catalog import ProviderSpec
from nbllm.secrets import redact_deltas, redact_reply
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
        self._providers: dict[tuple[str, str, str | None], Provider] = {}
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
                timeout: float | None = None) -> tuple[Provider, str]:
        """The provider object and model name a call goes to; a missing key fails here."""
        if target:
            pid, target_model = split_target(target)
        else:
            pid, target_model = self._current(), self.model or None
        specs = load_specs()
        spec = get_spec(pid, specs)
        key = require_key(spec)
        cache_key = (spec.id, spec.base_url, key, timeout)
        provider = self._providers.get(cache_key)  # type: ignore[arg-type]
        if provider is None:
            provider = provider_class(spec.dialect)(spec, key, timeout=timeout)
            self._providers[cache_key] = provider  # type: ignore[index]
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

    # -- the Python API's calls -----------------------------------------------------------
    def _prepare(self, prompt: str | list[Message], target: str | None, model: str | None,
                 system: str | None, params: dict[str, Any]) -> tuple[Provider, ChatRequest]:
        check_options(params)
        timeout = params.get("timeout") or self.params.get("timeout")
        provider, model_name = self.resolve(target, model, timeout=timeout)
        return provider, self.request(as_messages(prompt, system), model_name, params)

    def stream(self, prompt: str | list[Message], target: str | None = None, model: str | None = None,
               system: str | None = None, **params: Any) -> Iterator[Delta]:
        provider, request = self._prepare(prompt, target, model, system, params)
        return redact_deltas(provider.stream(request))

    def chat(self, prompt: str | list[Message], target: str | None = None, model: str | None = None,
             system: str | None = None, **params: Any) -> Reply:
        streamed = params.pop("stream", True)
        provider, request = self._prepare(prompt, target, model, system, params)
        if not streamed:
            return redact_reply(provider.complete(request))
        return collect(provider.spec.id, request.model, redact_deltas(provider.stream(request)))


_default: Session | None = None


def default_session() -> Session:
    """The session the magics and the top-level API share within one Python process."""
    global _default
    if _default is None:
        _default = Session()
    return _default
