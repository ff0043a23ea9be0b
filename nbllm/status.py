"""Which providers are ready, and a tiny real request to prove it: shared by the CLI, the magics
and the switcher, so all three say the same thing in the same words."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from nbllm.config import get_spec, load_specs
from nbllm.errors import ConfigError, NbllmError
from nbllm.keys import find_key, has_key, require_key
from nbllm.messages import ChatRequest
from nbllm.providers.base import make_provider
from nbllm.providers.catalog import BUILTIN, ProviderSpec
from nbllm.secrets import redact

CHECK_PROMPT = "Reply with one word: pong"


def key_status(spec: ProviderSpec) -> str:
    """"ready", "no key needed", or which variable is missing."""
    try:
        if find_key(spec) is not None:
            return "ready"
    except ConfigError:
        return "key cannot be sent (nbllm check " + spec.id + " says why)"
    if not spec.key_required or not (spec.key_env or spec.secret_env):
        return "no key needed"
    return "missing " + " + ".join([*spec.key_env[:1], *spec.secret_env[:1]])


def check_targets(ids: Sequence[str] = ()) -> list[ProviderSpec]:
    """The providers named, else every one with a key or a base URL the user changed."""
    specs = load_specs()
    if ids:
        return [get_spec(i, specs) for i in dict.fromkeys(ids)]  # one row per provider, however often named
    builtin = {s.id: (s.base_url, s.model_path) for s in BUILTIN}
    return [s for s in specs.values()
            if (s.key_env and has_key(s)) or (s.base_url, s.model_path) != builtin.get(s.id)]


@dataclass(frozen=True)
class CheckResult:
    provider: str
    model: str
    error: str | None  # the error class's name, None when the provider answered
    first_token_s: float | None
    total_s: float
    detail: str  # the answer, or the error's one-paragraph message

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self) -> list[str]:
        if not self.ok:
            return [self.provider, self.model, str(self.error), "-", "-", clip(self.detail, 70)]
        first = f"{self.first_token_s:.2f} s" if self.first_token_s is not None else "-"
        return [self.provider, self.model, "ok", first, f"{self.total_s:.2f} s", clip(self.detail, 30)]


CHECK_HEADERS = ["ID", "MODEL", "RESULT", "FIRST TOKEN", "TOTAL", "ANSWER / ERROR"]


def check_provider(spec: ProviderSpec, timeout: float = 30.0, source: str = "cli") -> CheckResult:
    """Send CHECK_PROMPT once (no retries) and time it; failures are results, not raised."""
    model = spec.default_model
    start = time.perf_counter()
    try:
        provider = make_provider(spec, require_key(spec), timeout=timeout, max_retries=0)
        request = ChatRequest(messages=[{"role": "user", "content": CHECK_PROMPT}], model=model,
                              params={"max_tokens": 16})
        try:
            response = provider.respond(request, source=source)
            response.meta["cache"] = "off"  # a check asks the provider, never the exchange log's cache
            reply = response.reply()
        finally:
            provider.close()
    except NbllmError as exc:
        return CheckResult(spec.id, model, type(exc).__name__, None, time.perf_counter() - start, exc.message)
    except Exception as exc:  # every provider keeps its row, whatever went wrong (a plugin's own error)
        detail = redact(f"{type(exc).__name__}: {exc}")
        return CheckResult(spec.id, model, type(exc).__name__, None, time.perf_counter() - start, detail)
    return CheckResult(spec.id, model, None, reply.first_token_s, reply.total_s, reply.text)


def clip(text: str, n: int) -> str:
    """One line of at most n characters."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
