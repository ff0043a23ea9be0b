"""The request fingerprint: what the cache and replay look a finished answer up by.

It covers what decides an answer: provider id, model, the messages sent (history included) and
the sampling parameters. It leaves out what does not: the key, the base URL (a proxy or another
machine's server answers the same request), the timeout and whether the answer was streamed
(docs/exchange-log.md#fingerprint).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

SCHEME = 1  # bumped if what the fingerprint covers ever changes, so old fingerprints stop matching
NOT_COVERED = frozenset({"timeout", "stream"})


def fingerprint(provider: str, model: str, messages: Sequence[Mapping[str, Any]],
                params: Mapping[str, Any] | None = None) -> str:
    """A 64-hex-digit SHA-256 of the canonical JSON of the request."""
    payload = {
        "scheme": SCHEME,
        "provider": provider,
        "model": model,
        "messages": [{"role": m.get("role"), "content": m.get("content")} for m in messages],
        "params": {k: v for k, v in sorted((params or {}).items()) if k not in NOT_COVERED and v is not None},
    }
    data = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def short(fp: str) -> str:
    """The first 12 digits, enough to tell fingerprints apart in a message."""
    return fp[:12]
