"""The numbers a batch call takes (``concurrency``, ``rpm``, ``tpm``, ``batch_size``, and its ``system``), checked
before anything is sent: a string or a negative rate would otherwise fail every row, or pace
nothing, deep inside the run."""

from __future__ import annotations

import math
from typing import Any

from nbllm.errors import ConfigError


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_batch(where: str, concurrency: Any, rpm: Any = None, tpm: Any = None, batch_size: Any = None,
                system: Any = None) -> None:
    """One clear error for the first argument that is not usable; nothing is sent then."""
    if system is not None and not isinstance(system, str):
        problem = f"system takes the system prompt as a str, not {type(system).__name__}"
    elif not _whole(concurrency):
        problem = f"concurrency takes a whole number of requests at once, 1 or more, not {concurrency!r}"
    elif rpm is not None and not _rate(rpm):
        problem = f"rpm takes requests a minute, a number of 0 (no limit) or more, not {rpm!r}"
    elif tpm is not None and not _rate(tpm):
        problem = f"tpm takes tokens a minute, a number of 0 (no limit) or more, not {tpm!r}"
    elif batch_size is not None and not _whole(batch_size):
        problem = f"batch_size takes a whole number of texts a request, 1 or more, not {batch_size!r}"
    else:
        return
    raise ConfigError(f"{where}: {problem}. Nothing was sent.")
