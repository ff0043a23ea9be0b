"""The ``nbllm`` metadata saved with every %%llm answer: who answered what, and what replay needs.

A saved notebook then says, output by output, which provider, model and parameters produced an
answer, its log id, fingerprint, usage, timing, nbllm version and whether it came from the cache.
The answer text itself is added only when the output does not already show it verbatim (a
``-f code`` or ``-f json`` cell shows a transformed text), so ``nbllm cache import`` can always
read back the exact answer without doubling every notebook's size (docs/exchange-log.md#provenance-metadata).
"""

from __future__ import annotations

from typing import Any

from nbllm.log.record import Exchange

KEY = "nbllm"


def provenance(exchange: Exchange, log_id: int | None, shown: str | None = None) -> dict[str, Any]:
    """The metadata of one answer; ``shown`` is the output's text/plain (None: keep the text always)."""
    meta: dict[str, Any] = {
        "provider": exchange.provider,
        "model": exchange.model,
        "params": exchange.params,
        "log_id": log_id,
        "fingerprint": exchange.fingerprint,
        "usage": {"prompt_tokens": exchange.prompt_tokens, "completion_tokens": exchange.completion_tokens,
                  "total_tokens": exchange.total_tokens},
        "timing": {"first_token_s": _round(exchange.first_token_s), "total_s": _round(exchange.total_s)},
        "version": exchange.version,
        "cached": exchange.cached,
    }
    if shown is None or shown != exchange.answer:
        meta["text"] = exchange.answer
    if exchange.reasoning:
        meta["reasoning"] = exchange.reasoning
    if exchange.error_class:
        meta["error"] = exchange.error_class
    return _redacted(meta)


def lanes(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare mode: one entry per lane, each with its own text (the display mixes them)."""
    return {"lanes": entries}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _redacted(value: Any) -> Any:
    from nbllm.secrets import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
