"""Keep API keys out of every string that leaves the process.

Two nets: every key nbllm reads is registered and replaced verbatim wherever it appears, and
patterns catch key-shaped text nbllm never saw (a key echoed back by a provider, a token in a
query string).
"""

from __future__ import annotations

import re

_known: set[str] = set()

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A value in a query string or message; not code such as api_key=os.environ["X"] (the value
    # must end at a delimiter, never run into a call or subscript).
    (re.compile(r"(access_token|api_key|apikey|key|token|client_secret)=([^&\s\"'()\[\]]+)(?=[&\s\"'),;\]}]|$)",
                re.I), r"\1=***"),
    (re.compile(r"(Bearer\s+)[^\s\"',]+", re.I), r"\1***"),
    (re.compile(r"\bbce-v3/ALTAK-[A-Za-z0-9]+/[A-Za-z0-9]+"), "bce-v3/***"),
    (re.compile(r"\b(sk|hf|ms)-?_?[A-Za-z0-9_\-]{16,}"), lambda m: mask(m.group(0))),  # type: ignore[list-item]
    (re.compile(r"\b24\.[0-9a-f]{16,}\.[0-9.\-]+"), "24.***"),  # Baidu OAuth access tokens
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that redact() removes it wherever it shows up."""
    if value and len(value) >= 4:
        _known.add(value)


def known_secrets() -> int:
    """How many secrets are registered (it only grows): a cache of redacted text is stale when it changes."""
    return len(_known)


def mask(value: str) -> str:
    """Show only enough of a secret to recognise it: its first three characters."""
    return f"{value[:3]}***" if value else "***"


def redact(text: str) -> str:
    """Return text with every known secret and key-shaped token masked."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, mask(secret))
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)  # type: ignore[arg-type]
    return text
