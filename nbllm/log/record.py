"""The row one exchange becomes: every field the log keeps, redacted before it reaches the file.

Every string passes through ``nbllm.secrets.redact`` here, the one way into the database, so no
key the process knows (nor anything shaped like one) is ever stored.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from nbllm import __version__
from nbllm.messages import Message
from nbllm.secrets import redact, secret_values

SESSION_ID = uuid.uuid4().hex  # this process: "%llm usage" totals "this session" by it


def now_utc() -> str:
    """The time format of the ``time`` column: ISO 8601 in UTC, so text order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def host_of(base_url: str | None) -> str | None:
    """Only the host (and port) of a base URL: never a path, query or user info that could hold a key."""
    if not base_url:
        return None
    try:
        parts = urlsplit(base_url)
        return parts.hostname and (f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname)
    except ValueError:  # a base URL that is no URL (the call itself reports it): no host to log
        return None


def notebook_path() -> str | None:
    """The running notebook's path when the kernel knows it (Jupyter server sets JPY_SESSION_NAME)."""
    return os.environ.get("JPY_SESSION_NAME") or None


@dataclass
class Exchange:
    """One request and what came back (or how it failed), as the log stores it."""

    source: str  # cli, magic, api, compare, widget, import
    provider: str
    model: str
    messages: list[Message]
    fingerprint: str
    params: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    answer: str = ""
    reasoning: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    first_token_s: float | None = None
    total_s: float | None = None
    finish_reason: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    cached: bool = False
    notebook: str | None = None
    time: str = field(default_factory=now_utc)
    version: str = __version__
    session: str = SESSION_ID

    def row(self) -> dict[str, Any]:
        """Column -> value, every string that can hold user or provider text redacted.

        The secrets are read once per row (reading them scans the environment), and the fields
        nbllm itself makes (time, version, session, fingerprint, source, error class) are not scanned.
        """
        secrets = secret_values()
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        sent = values.pop("messages")
        messages = [{**m, "content": _redact_repeated(m.get("content"), secrets, remember=i < len(sent) - 1)}
                    for i, m in enumerate(sent)]
        system = next((m["content"] for m in messages if m.get("role") == "system"), None)
        prompt = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        for name in SCANNED:
            if isinstance(values[name], str):
                values[name] = redact(values[name], values=secrets)
        values.update(answer=redact(self.answer, values=secrets), messages=_json(messages),
                      params=redact(_json(self.params), values=secrets), system=system, prompt=prompt,
                      cached=int(self.cached))
        return values


SCANNED = ("provider", "model", "host", "reasoning", "finish_reason", "error_message", "notebook")
"""The string columns besides messages, answer and params that can hold text from a user or a provider."""


# Every call resends the conversation so far, so most message texts were redacted before (the
# system prompt and the history). Remembering their redacted form keeps the log's cost per call
# to the new text, not the whole history; it is recomputed whenever the secrets change (one
# registered, a key set in the environment). The last message and the answer are new with each
# call and are not remembered: a batch of a thousand rows would otherwise keep its last 512
# prompts alive for nothing (they are remembered once they come back as history).
_memo: dict[str, str] = {}
_memo_secrets: frozenset[str] = frozenset()
MEMO_SIZE = 512


def _redact_repeated(text: Any, secrets: frozenset[str], remember: bool = True) -> Any:
    global _memo_secrets
    if not isinstance(text, str) or len(text) < 64 or not remember:
        return redact(text, values=secrets) if isinstance(text, str) else text
    if secrets != _memo_secrets:
        _memo.clear()
        _memo_secrets = secrets
    found = _memo.get(text)
    if found is None:
        if len(_memo) >= MEMO_SIZE:
            _memo.clear()
        found = _memo[text] = redact(text, values=secrets)
    return found


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


COLUMNS = tuple(Exchange("", "", "", [], "").row())
"""The columns an exchange fills, in insert order."""
