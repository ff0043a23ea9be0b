"""Answering a request from the log: cache modes and the lookup of a finished answer.

``off`` (the default) calls the provider every time; ``on`` answers a request seen before (same
fingerprint) from the log without a network call; ``replay`` never calls a provider and fails on
a miss. The mode comes from, later wins: ``NBLLM_CACHE``, ``%llm cache MODE`` for the kernel,
then ``--cache``/``--no-cache`` on a cell or ``cache=`` in ``nbllm.chat``. Replay, from the
environment or ``%llm cache replay``, wins over everything: a notebook re-run in CI with
``NBLLM_CACHE=replay`` must never reach a provider, whatever its cells say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbllm.errors import ConfigError, ReplayMissError
from nbllm.messages import Message, Usage

MODES = ("off", "on", "replay")

_kernel_mode: str | None = None  # set by %llm cache


def check_mode(mode: str, where: str) -> str:
    value = mode.strip().lower()
    if value not in MODES:
        raise ConfigError(f"{where} must be off, on or replay, not {mode!r}.")
    return value


def env_mode() -> str | None:
    value = os.environ.get("NBLLM_CACHE", "").strip()
    return check_mode(value, "NBLLM_CACHE") if value else None


def set_kernel_mode(mode: str | None) -> None:
    """``%llm cache MODE``: the mode of every following call in this process (None: back to NBLLM_CACHE)."""
    global _kernel_mode
    _kernel_mode = check_mode(mode, "%llm cache") if mode else None


def kernel_mode() -> str | None:
    return _kernel_mode


def resolve_mode(explicit: str | None = None) -> str:
    """The mode one call runs in (see the module docstring for the order)."""
    env = env_mode()
    if "replay" in (env, _kernel_mode):
        return "replay"
    chosen = check_mode(explicit, "cache") if explicit else None
    return chosen or _kernel_mode or env or "off"


MEANING = {"off": "every call asks the provider", "on": "a request seen before is answered from the log",
           "replay": "never calls a provider; a request the log lacks fails"}


def describe_mode() -> str:
    """One line: the mode calls run in, what it means and which setting chose it."""
    mode, env = resolve_mode(), env_mode()
    if env == "replay" or (env and not _kernel_mode):
        origin = f"NBLLM_CACHE={env}"
    elif _kernel_mode:
        origin = "%llm cache"
    else:
        origin = "the default"
    return f"cache: {mode} ({MEANING[mode]}; set by {origin})"


@dataclass(frozen=True)
class CachedAnswer:
    """A finished answer found in the log, enough to answer the same request again."""

    log_id: int
    provider: str
    model: str
    text: str
    reasoning: str
    usage: Usage
    finish_reason: str | None


def lookup(fingerprint: str) -> CachedAnswer | None:
    """The newest complete answer (no error) logged for a fingerprint, or None.

    No log (turned off, not created yet) and a log that cannot be read are both misses.
    """
    import sqlite3

    from nbllm.log.paths import log_path
    from nbllm.log.store import store_at

    path = log_path()
    if path is None:
        return None
    sql = ("SELECT id, provider, model, answer, reasoning, prompt_tokens, completion_tokens, total_tokens, "
           "finish_reason FROM exchanges WHERE fingerprint = ? AND error_class IS NULL ORDER BY id DESC LIMIT 1")
    try:
        with store_at(path).reading() as conn:
            row = None if conn is None else conn.execute(sql, (fingerprint,)).fetchone()
    except (sqlite3.Error, OSError):
        return None
    if row is None:
        return None
    return CachedAnswer(row[0], row[1], row[2], row[3], row[4], Usage(row[5], row[6], row[7]), row[8])


def find_answer(provider: str, model: str, messages: list[Message],
                params: dict[str, Any] | None = None) -> CachedAnswer | None:
    """A finished answer for this exact request, if the log holds one (e.g. to resume a batch)."""
    from nbllm.log.fingerprint import fingerprint

    return lookup(fingerprint(provider, model, messages, params))


def replay_miss(provider: str, model: str, fingerprint: str, prompt: str, where: str) -> ReplayMissError:
    """The error of a request replay has no answer for: which one, and how to record it."""
    from nbllm.log.fingerprint import short
    from nbllm.log.paths import log_path, off_reason
    from nbllm.status import clip

    path = log_path()
    log = f"the log {path}" if path else f"the log, which is turned off ({off_reason()})"
    broken = unreadable_reason(path) if path else None
    if broken:
        log = f"the log {path}, which could not be read ({broken}; fix or move it, or point NBLLM_LOG elsewhere)"
    return ReplayMissError(
        f"Replay mode (NBLLM_CACHE=replay or %llm cache replay) has no recorded answer for {where} asking "
        f"{clip(prompt, 60)!r} ({provider}:{model}, fingerprint {short(fingerprint)}) in {log}, and it never "
        "calls a provider. Record it by running this once with a key and NBLLM_CACHE=on (or off), or load a "
        "notebook that holds its saved answer with `nbllm cache import NOTEBOOK`.",
        provider=provider,
    )


def unreadable_reason(path: Path) -> str | None:
    """Why a log file that exists cannot be read (a lookup counts that as a miss), or None."""
    import sqlite3

    from nbllm.log.store import store_at

    try:
        with store_at(path).reading() as conn:
            if conn is not None:
                conn.execute("SELECT fingerprint, answer FROM exchanges LIMIT 1").fetchall()
    except (sqlite3.Error, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None
