"""Rewrites inside masked IPython lines (``%env OPENAI_API_KEY=...``, ``openai==0.28`` pins).

Named apart from ``nbllm.magics`` (the ``%llm`` magics): this module only edits the text of the
IPython lines found in notebooks being converted.

These lines never reach libcst (they are masked), so the few rewrites they need are done on
their text here; everything else in a magic line is restored byte for byte.
"""

from __future__ import annotations

import re

from nbllm.convert.codemods.base import KEY_LITERAL, Event, Target
from nbllm.secrets import mask

_ENV = re.compile(r"^(?P<head>\s*%(?:set_)?env\s+)OPENAI_API_KEY(?P<sep>\s*=\s*|\s+)(?P<value>\S.*?)?\s*$")
_PIN = re.compile(r"(?<![\w.\-])openai(?P<extra>\[[^\]\s]*\])?\s*(?:(?:==|~=|<=)\s*0(?:\.[\d*]+)*|<\s*1(?:\.0)*)"
                  r"(?![\w.])")
_INSTALL = re.compile(r"^\s*[%!]\s*(?:pip|pip3|conda|mamba|uv\s+pip)\b.*\binstall\b")


def rewrite_magic(line: str, target: Target, migrated: bool, lineno: int) -> tuple[str, list[Event]]:
    """The line as it should be after conversion, and what was done to it."""
    events: list[Event] = []
    env = target.key_env
    m = _ENV.match(line)
    if m and env:
        value = (m.group("value") or "").strip().strip("'\"")
        if KEY_LITERAL.match(value):
            events.append(Event("hardcoded-key", f"hard-coded key {mask(value)} removed from %env; set {env} "
                                "in the environment", lineno, warning=True))
            indent = line[: len(line) - len(line.lstrip())]
            return f"{indent}# nbllm: set {env} in the environment (a hard-coded OpenAI key was removed)", events
        if value:  # a placeholder: renamed, it would overwrite the target's real key
            return line, events
        events.append(Event("env", f"%env OPENAI_API_KEY -> {env}", lineno))
        return line.replace("OPENAI_API_KEY", env, 1), events
    if migrated and _INSTALL.match(line) and _PIN.search(line):
        new = _PIN.sub(lambda p: _pin(line, p), line)
        events.append(Event("migrate", "openai<1 pin -> openai>=1 (the code now uses the v1 client)", lineno))
        return new, events
    return line, events


def _pin(line: str, match: re.Match[str]) -> str:
    """``openai>=1``, quoted unless it already is (a bare ``>`` is a shell redirect)."""
    spec = f"openai{match.group('extra') or ''}>=1"
    quoted = match.start() > 0 and line[match.start() - 1] in "'\""
    return spec if quoted else f'"{spec}"'
