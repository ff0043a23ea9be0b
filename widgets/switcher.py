"""The provider switcher: an ipywidgets panel bound to the same Session the magics use.

Choosing a provider or model here changes the session at once, and ``%llm use X`` (which
calls ``Session.use``) changes the panel at once, so the two can never disagree. Slow work
(live model listing, the Test button) runs in a background thread so the notebook never
freezes; keys typed into the password field go to ``nbllm.keys.set_key`` and the field is
emptied straight away, so a saved notebook's widget state never holds one.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w
import traitlets

from nbllm.config import load_specs
from nbllm.errors import NbllmError
from nbllm.keys import is_configured, missing_key_hint, set_key
from nbllm.providers.catalog import ProviderSpec
from nbllm.secrets import redact
from nbllm.session import Session, default_session

TEST_PROMPT = "Reply with the single word OK."
TEST_MAX_TOKENS = 16
TEST_TIMEOUT = 30.0
LIST_TIMEOUT = 15.0
DEFAULT_TEMPERATURE = 1.0  # shown until the user moves the slider; nothing is sent before


class _KeyField(w.Password):
    """A password box whose value is never echoed back to the browser by the kernel."""

    value = traitlets.Unicode(help="The typed key; emptied as soon as it arrives.").tag(
        sync=True, echo_update=False
    )


def provider_label(spec: ProviderSpec) -> str:
    """The dropdown text: configured providers get a check mark, the others say so."""
    if is_configured(spec):
        return f"✓ {spec.label} [{spec.id}]"
    return f"✗ {spec.label} [{spec.id}] (no key)"


def _key_placeholder(spec: ProviderSpec) -> str:
    shape = f"{spec.key_env[0]}:{spec.secret_env[0]}" if spec.key_env and spec.secret_env else "API key"
    return f"{shape} for {spec.id}, this session only"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, NbllmError):
        return f"{type(exc).__name__}: {exc.message}"
    return redact(f"{type(exc).__name__}: {exc}")


class ProviderSwitcher(w.VBox):
    """Pick the provider, model and options a Session sends to, see what is configured, test it."""

    def __init__(self, session: Session | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session or default_session()
        self._specs = load_specs()
        self._threads: list[threading.Thread] = []
        self._generation = 0  # bumps on every provider change; stale listings are dropped
        self._quiet = False  # set while the panel itself rewrites its controls
        self._note = ""
        self._note_is_error = False
        self._build()
        self._bind()
        self._show_params()
        self._show_provider()

    # -- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        style = {"description_width": "86px"}
        self.provider = w.Dropdown(options=self._provider_options(), value=self.session.provider or None,
                                   description="Provider", style=style, layout=w.Layout(width="400px"))
        self.model = w.Combobox(description="Model", continuous_update=False, ensure_option=False,
                                style=style, layout=w.Layout(width="320px"))
        self.temperature = w.FloatSlider(value=DEFAULT_TEMPERATURE, min=0.0, max=2.0, step=0.05,
                                         description="Temperature", readout_format=".2f", style=style,
                                         continuous_update=False, layout=w.Layout(width="400px"))
        self.max_tokens = w.BoundedIntText(value=0, min=0, max=1_000_000, description="Max tokens",
                                           tooltip="0 = the provider's default", style=style,
                                           layout=w.Layout(width="220px"))
        self.key_input = _KeyField(description="Key", continuous_update=False, style=style,
                                   layout=w.Layout(width="400px"))
        self.test_button = w.Button(description="Test", icon="plug", tooltip="Send a tiny request",
                                    layout=w.Layout(width="90px"))
        self.status = w.HTML(layout=w.Layout(margin="2px 0 0 8px"))
        row = w.Layout(flex_flow="row wrap", align_items="center")
        self.children = (
            w.HBox([self.provider, self.model], layout=row),
            w.HBox([self.temperature, self.max_tokens], layout=row),
            w.HBox([self.key_input, self.test_button], layout=row),
            self.status,
        )
        self.add_class("nbllm-switcher")

    def _bind(self) -> None:
        self._model_link: traitlets.link | None = traitlets.link((self.session, "model"), (self.model, "value"))
        self.session.observe(self._on_session, names=["provider", "model", "params"])
        self.provider.observe(self._on_pick, names="value")
        self.temperature.observe(self._on_options, names="value")
        self.max_tokens.observe(self._on_options, names="value")
        self.key_input.observe(self._on_key, names="value")
        self.test_button.on_click(self._on_test)

    def close(self) -> None:
        """Stop following the session, then close the panel and every control in it (once)."""
        link: traitlets.link | None = getattr(self, "_model_link", None)
        if link is not None:
            self._model_link = None
            link.unlink()
            self.session.unobserve(self._on_session, names=["provider", "model", "params"])
            controls = (self.provider, self.model, self.temperature, self.max_tokens, self.key_input,
                        self.test_button, self.status)
            for widget in (*self.children, *controls):
                widget.close()
        super().close()

    # -- provider list ---------------------------------------------------------------------
    def _provider_options(self) -> list[tuple[str, str]]:
        return [(provider_label(spec), pid) for pid, spec in self._specs.items()]

    def refresh(self) -> None:
        """Re-read providers and keys (after ``%llm key`` or a config edit) and relabel the list."""
        self._specs = load_specs()
        self._quiet = True
        try:
            self.provider.options = self._provider_options()
            self.provider.value = self.session.provider if self.session.provider in self._specs else None
        finally:
            self._quiet = False
        self._render_status()

    def _spec(self) -> ProviderSpec:
        spec = self._specs.get(self.session.provider)
        if spec is None:  # a provider added after the panel was built
            self.refresh()
            spec = self._specs.get(self.session.provider) or self.session.spec()
        return spec

    # -- session -> panel ------------------------------------------------------------------
    def _on_session(self, change: dict[str, Any]) -> None:
        if change["name"] == "provider":
            self._note = ""  # the last event was about the previous provider
            self.refresh()  # a key may have come from `%llm key` since the list was labelled
            self._show_provider()
        elif change["name"] == "params":
            self._show_params()
        self._render_status()

    def _show_provider(self) -> None:
        """Point the dropdown and the model box at the session's provider; list its models."""
        spec = self._spec()
        self._quiet = True
        try:
            if self.provider.value != spec.id:
                self.provider.value = spec.id
        finally:
            self._quiet = False
        self.model.placeholder = f"{spec.default_model} (default)" if spec.default_model else "model name"
        self.key_input.placeholder = _key_placeholder(spec)
        self.model.options = tuple(spec.models)
        self._generation += 1
        if spec.lists_models and is_configured(spec):
            generation = self._generation
            self._background(lambda: self._list_models(spec, generation))
        self._render_status()

    def _show_params(self) -> None:
        params = self.session.params
        self._quiet = True
        try:
            self.temperature.value = float(params.get("temperature", DEFAULT_TEMPERATURE))
            self.max_tokens.value = int(params.get("max_tokens") or 0)
        finally:
            self._quiet = False

    def _list_models(self, spec: ProviderSpec, generation: int) -> None:
        """Ask the provider for its live model list; keep the catalogue if that fails."""
        try:
            provider, _ = self.session.resolve(spec.id)
            live = provider.models(timeout=LIST_TIMEOUT)
        except Exception as exc:  # the catalogue is still there; say why the live list is not
            if generation == self._generation:
                self._set_note(f"Live model list unavailable, showing the catalogue. {_error_text(exc)}")
            return
        if generation == self._generation:
            self.model.options = tuple(dict.fromkeys([*live, *spec.models]))

    # -- panel -> session ------------------------------------------------------------------
    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._quiet or not change["new"] or change["new"] == self.session.provider:
            return
        try:
            self.session.use(change["new"])
        except NbllmError as exc:
            self._set_note(_error_text(exc))
            self.refresh()

    def _on_options(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        params = dict(self.session.params)
        if change["owner"] is self.temperature:
            params["temperature"] = round(float(change["new"]), 2)
        elif change["new"]:
            params["max_tokens"] = int(change["new"])
        else:
            params.pop("max_tokens", None)
        self.session.params = params

    def _on_key(self, change: dict[str, Any]) -> None:
        """Hand a typed key to the session's key store and empty the field at once."""
        key = change["new"]
        if not key:
            return
        self.key_input.value = ""
        if not key.strip():
            return
        pid = self.session.provider
        set_key(pid, key)
        self.refresh()
        self._show_provider()
        self._set_note(f"Key set for {pid} for this Python session only; it is not saved anywhere.")

    def _on_test(self, _button: w.Button | None = None) -> None:
        target = self.session.target
        self.test_button.disabled = True
        self._set_note(f"Testing {target} …")
        self._background(lambda: self._run_test(target))

    def _run_test(self, target: str) -> None:
        """Send one tiny request and report latency, or the error's one paragraph."""
        try:
            reply = self.session.respond([{"role": "user", "content": TEST_PROMPT}], target, source="widget",
                                         params={"max_tokens": TEST_MAX_TOKENS, "timeout": TEST_TIMEOUT},
                                         cache="off").reply()  # a test asks the provider, never the cache
        except Exception as exc:  # shown in the panel, never raised into the kernel's comm handler
            self._set_note(f"✗ {target} failed. {_error_text(exc)}", error=True)
        else:
            first = f", first token {reply.first_token_s:.2f} s" if reply.first_token_s is not None else ""
            said = reply.text.strip()[:60]
            self._set_note(f"✓ {reply.provider}:{reply.model} answered in {reply.total_s:.2f} s{first}: {said!r}")
        finally:
            self.test_button.disabled = False

    # -- status ----------------------------------------------------------------------------
    def _set_note(self, text: str, error: bool = False) -> None:
        self._note = text
        self._note_is_error = error
        self._render_status()

    def _render_status(self) -> None:
        """One line for the current target, one for the last event (test, key, listing)."""
        spec = self._specs.get(self.session.provider)
        state = "configured" if spec is None or is_configured(spec) else f"not configured: {missing_key_hint(spec)}"
        model = self.session.model or (f"{spec.default_model} (default)" if spec else "")
        sent = ", ".join(f"{k}={v}" for k, v in sorted(self.session.params.items())) or "provider defaults"
        lines = [f"<b>{html.escape(self.session.provider)}</b> · {html.escape(model)} · {html.escape(sent)}"
                 f" · {html.escape(state)}"]
        if self._note:
            color = "var(--jp-error-color1, #b00020)" if self._note_is_error else "inherit"
            lines.append(f'<span style="color:{color}">{html.escape(redact(self._note))}</span>')
        self.status.value = "<br>".join(lines)

    # -- background work -------------------------------------------------------------------
    def _background(self, work: Callable[[], None]) -> None:
        thread = threading.Thread(target=work, name="nbllm-switcher", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    @property
    def busy(self) -> bool:
        """True while a model listing or a Test request is still running."""
        return any(thread.is_alive() for thread in self._threads)

    def wait(self, timeout: float | None = None) -> None:
        """Block until background work (model listing, Test) is done; for scripts and tests."""
        for thread in list(self._threads):
            thread.join(timeout)
