"""Checks for values where they enter nbllm: keys, base URLs and call options.

The CLI, the magics, ``%llm set``, the config file and ``nbllm.chat`` all call these, so a bad
value is refused with the same one paragraph wherever it is typed, before any request is built,
and never stored to break a later call.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from nbllm.errors import ConfigError

# Options whose values nbllm can check; every other option goes to the provider as given.
POSITIVE_NUMBERS = ("timeout",)
FINITE_NUMBERS = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "repetition_penalty")
POSITIVE_INTEGERS = ("max_tokens", "max_completion_tokens")


def header_problem(value: str) -> str | None:
    """Why a text cannot travel in an HTTP header (printable ASCII only), or None.

    Says where (1-based) without showing the value, so it is safe for keys.
    """
    for index, char in enumerate(value, 1):
        if not " " <= char <= "~":
            return f"character {index} of {len(value)} is {describe_char(char)}"
    return None


def describe_char(char: str) -> str:
    """``U+200B (ZERO WIDTH SPACE)``, with a word on where such characters come from."""
    code = f"U+{ord(char):04X}"
    if char in "\r\n":
        return f"a line break ({code})"
    if char == "\ufeff":
        return f"a byte-order mark ({code}), which editors leave at the start of a file"
    name = unicodedata.name(char, "a control character")
    return f"{code} ({name})"


def check_key(value: str, where: str, also: str = "") -> None:
    """Refuse a key an HTTP header cannot carry; the message names ``where`` it came from (``in the
    environment variable X``) and the position, and ends with ``also`` (another way to set it).

    The key leaves this frame's locals before the error is raised, so a verbose traceback
    (``%xmode Verbose`` shows every frame's variables) cannot print it.
    """
    problem = header_problem(value)
    del value
    if problem:
        fix = ("Remove the line break: it comes along when a key is copied out of a file or a terminal"
               if "line break" in problem else
               "HTTP headers carry only printable ASCII, so copy the key again without that character")
        raise ConfigError(f"The key {where} cannot be sent: {problem}. {fix} (the key itself is not shown).{also}")


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def header_name_problem(name: str) -> str | None:
    return None if _TOKEN.fullmatch(name) else "a header name is letters, digits and -_.!#$%&'*+^`|~ only"


def env_name_problem(name: str) -> str | None:
    return None if _ENV_NAME.fullmatch(name) else "a variable name is letters, digits and _ (not starting with a digit)"


def check_header_value(value: str, where: str) -> None:
    problem = header_problem(value)
    if problem:
        raise ConfigError(f"{where} cannot be sent as an HTTP header: {problem}.")


def base_url_problem(url: str) -> str | None:
    """Why a text is not an http(s) base URL, or None."""
    from urllib.parse import urlsplit

    index = next((i for i, c in enumerate(url) if c.isspace() or not c.isprintable()), None)
    if index is not None:
        where = "at the end" if not url[index:].strip() else f"at character {index + 1}"
        return f"it holds {describe_char(url[index])} {where}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"it cannot be parsed ({exc})"
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    return None


def check_base_url(url: Any, where: str) -> None:
    """A clear ConfigError for a base URL that httpx would choke on."""
    problem = "it is not a string" if not isinstance(url, str) else base_url_problem(url)
    if problem:
        from nbllm.secrets import redact

        shown = redact(url) if isinstance(url, str) else repr(url)
        raise ConfigError(f"The base URL {shown!r} from {where} is not usable: {problem}. Write it as "
                          "http(s)://host[:port]/path.")


# -- call options -----------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def option_problem(name: str, value: Any) -> str | None:
    """Why ``name=value`` is not a usable option, or None (unknown options are not judged)."""
    problem = _value_problem(name, value)
    return f"{name} {problem}" if problem else None


def _value_problem(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if name in POSITIVE_NUMBERS or name in FINITE_NUMBERS:
        number = _number(value)
        if number is None or not math.isfinite(number):
            return f"must be a finite number, not {value!r}"
        if name in POSITIVE_NUMBERS and number <= 0:
            return f"must be more than 0 (seconds), not {value!r}"
    if name in POSITIVE_INTEGERS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return f"must be a whole number of 1 or more, not {value!r}"
    if _has_non_finite(value):
        return f"holds a number JSON cannot carry (NaN or infinity): {value!r}"
    return None


def _has_non_finite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth > 20:
        return False
    if isinstance(value, dict):
        return any(_has_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v, depth + 1) for v in value)
    return False


def check_options(options: Mapping[str, Any], where: str = "") -> None:
    """Refuse options nbllm can tell are wrong (a non-numeric timeout, an infinite temperature)."""
    for name, value in options.items():
        problem = option_problem(name, value)
        if problem:
            raise ConfigError(f"Bad option{f' in {where}' if where else ''}: {problem}. Nothing was sent.")


# -- argparse types (the CLI and the magics share them) ---------------------------------------
def _arg(name: str, text: str) -> Any:
    import argparse

    try:
        value: Any = int(text) if name in POSITIVE_INTEGERS else float(text)
    except ValueError:
        value = text
    problem = _value_problem(name, value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def seconds(text: str) -> float:
    """argparse type for ``--timeout``: a finite number above 0."""
    return _arg("timeout", text)


def finite(text: str) -> float:
    """argparse type for ``-t``/``--top-p``: a finite number."""
    return _arg("temperature", text)


def token_count(text: str) -> int:
    """argparse type for ``--max-tokens``: a whole number of 1 or more."""
    return _arg("max_tokens", text)
