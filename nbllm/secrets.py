"""Keep API keys out of every string that leaves the process, and leave every other byte alone.

Three nets, and only secret values are replaced:

- every key nbllm reads or is given is registered and masked wherever it appears;
- the values of every key variable a provider row names (``key_env``, ``secret_env``) are read
  from the environment each time masking runs, so a key nbllm has not used yet is masked too;
- key-shaped tokens nbllm never saw: ``sk-``/``hf_``/``ms-`` keys, Qianfan ``bce-v3/ALTAK-``
  keys, Baidu OAuth tokens, bearer tokens, key parameters of a URL's query string and the
  password of a URL's ``user:password@``.

Code that merely talks about keys (``sorted(xs, key=len)``, ``dict(token=3)``,
``api_key=os.environ["X"]``) is not a secret and is never changed. Secrets shorter than
``SHORT`` characters are masked only as whole words (a short key must not eat every "abc" in a
text) and, like every secret under ``PREFIX_MIN`` characters, are never shown in part. Values
of one or two characters (placeholders such as ``OPENAI_API_KEY=x`` for a local server) are
masked in nbllm's own messages but not in prompts and answers (``redact_text``), where they
would rewrite every ``x`` of the user's code.

``StreamRedactor`` masks a text that arrives in pieces: it holds back the tail that could be
the start of a secret, so a key split across several deltas is still masked.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace

from nbllm.messages import Delta

SHORT = 6  # secrets shorter than this are masked as whole words only
TINY = 3  # secrets shorter than this are not masked in prompts and answers
PREFIX_MIN = 12  # only secrets at least this long keep a recognisable prefix when masked
_HOLD_MAX = 512  # longest tail held back while a stream could still be inside a secret

_known: set[str] = set()
_key_env: set[str] = set()  # names of variables that hold keys (the catalogue's and the config file's)

_WORD = r"[A-Za-z0-9_]"
_USERINFO = r"[A-Za-z0-9._~%!$&*+,;=\-]"  # what a URL's user or password is written with (RFC 3986)


def _key_like(body: str) -> bool:
    """A random-looking key body: a run of 16+ letters/digits or a digit, and 4+ different characters."""
    if len(set(body)) < 4:
        return False  # sk-xxxxxxxxxxxxxxxxxxxx is a placeholder in an example, not a key
    return bool(re.search(r"[0-9]", body) or re.search(r"[A-Za-z0-9]{16,}", body))


def _mask_key_shaped(match: re.Match[str]) -> str:
    head, body = match.group("head"), match.group("body")
    return f"{head}***" if _key_like(body) else match.group(0)


_PATTERNS: tuple[tuple[re.Pattern[str], object], ...] = (
    # sk-... (OpenAI, DeepSeek, DashScope, Kimi, SiliconFlow), hf_ + letters and digits (Hugging Face),
    # ms- + a UUID (ModelScope); identifiers such as hf_hub_download are code, not keys
    (re.compile(rf"(?<!{_WORD})(?P<head>sk-)(?P<body>[A-Za-z0-9_\-]{{20,}})"), _mask_key_shaped),
    (re.compile(rf"(?<!{_WORD})(?P<head>hf_)(?P<body>[A-Za-z0-9]{{30,}})"), _mask_key_shaped),
    (re.compile(rf"(?<!{_WORD})(?P<head>ms-)(?P<body>[0-9a-fA-F\-]{{30,}})"), _mask_key_shaped),
    (re.compile(r"(?<![A-Za-z0-9])bce-v3/ALTAK-[A-Za-z0-9]+/[A-Za-z0-9]+"), "bce-v3/***"),
    (re.compile(r"(?<![A-Za-z0-9.])24\.[0-9a-f]{16,}\.[0-9.\-]+"), "24.***"),  # Baidu OAuth access tokens
    # "Bearer <token>" where the token looks like one (not "Bearer {key}" in code, not prose)
    (re.compile(rf"(?P<head>(?<!{_WORD})Bearer\s+)(?P<body>[A-Za-z0-9._~+/=\-]{{8,}})", re.I),
     lambda m: f"{m.group('head')}***" if re.search(r"[0-9]", m.group("body")) else m.group(0)),
    # a key in a URL's query string: ?api_key=... or &access_token=... (six characters or more)
    (re.compile(r"(?P<head>[?&](?:access_token|api_key|apikey|key|token|client_secret|secret|sig)=)"
                r"(?P<body>[A-Za-z0-9._~+/=%\-]{6,})", re.I), r"\g<head>***"),  # not f"?key={key}" templates
    # the credentials of http(s)://user:password@host (base URLs)
    (re.compile(rf"(?P<head>(?<!{_WORD})https?://){_USERINFO}*:{_USERINFO}*@", re.I), r"\g<head>***@"),
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that redact() masks it wherever it shows up."""
    if value and value.strip():
        _known.add(value.strip())


def register_key_env(names: Iterable[str]) -> None:
    """Names of environment variables whose values are keys (read on every masking)."""
    _key_env.update(name for name in names if name)


def _catalogue_key_env() -> set[str]:
    if not _key_env:
        from nbllm.providers.catalog import BUILTIN  # plain data, cheap to import

        for spec in BUILTIN:
            _key_env.update(spec.key_env, spec.secret_env)
    return _key_env


def _env_secrets() -> set[str]:
    values: set[str] = set()
    for name in _catalogue_key_env():
        value = os.environ.get(name, "").strip()
        if value:
            values.add(value)
    return values


def secret_values() -> frozenset[str]:
    """Every secret value masking knows of right now: registered ones and the keys in the environment."""
    values = _known | _env_secrets()
    for value in list(values):
        if ":" in value:  # "KEY:SECRET" credentials: each half is a secret too
            values.update(part.strip() for part in value.split(":", 1) if part.strip())
    return frozenset(values)


def known_secrets() -> int:
    """How many secrets are registered (it only grows): a cache of redacted text is stale when it changes."""
    return len(_known)


def mask(value: str) -> str:
    """What is shown instead of a secret: its first three characters only when it is long."""
    return f"{value[:3]}***" if len(value) >= PREFIX_MIN else "***"


@functools.lru_cache(maxsize=8)
def _secret_regex(values: frozenset[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    parts = []
    for value in sorted(values, key=len, reverse=True):
        escaped = re.escape(value)
        parts.append(escaped if len(value) >= SHORT else rf"(?<!{_WORD}){escaped}(?!{_WORD})")
    return re.compile("|".join(parts))


def redact(text: str, *, tiny: bool = True, values: frozenset[str] | None = None) -> str:
    """Return text with every secret value masked; everything else stays byte for byte.

    ``tiny=False`` leaves values of one or two characters alone (see ``redact_text``);
    ``values`` are the secrets to mask when the caller read them already (``secret_values()``).
    """
    if not text:
        return text
    values = secret_values() if values is None else values
    pattern = _secret_regex(values if tiny else frozenset(v for v in values if len(v) >= TINY))
    if pattern is not None:
        text = pattern.sub(lambda m: mask(m.group(0)), text)
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)  # type: ignore[call-overload]
    return text


def redact_text(text: str, values: frozenset[str] | None = None) -> str:
    """Mask a prompt or an answer: user and model text, where a one-letter placeholder key stays."""
    return redact(text, tiny=False, values=values)


class StreamRedactor:
    """Mask a text that arrives piece by piece, as if it had been masked whole.

    ``feed`` returns what can be shown now; the rest (a tail that a later piece could turn
    into a secret) waits for the next piece or for ``flush`` at the end.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._shown = ""  # the last characters shown: a word may go on in the next piece
        self._values = secret_values()  # read once when masking starts, not for every piece

    def feed(self, piece: str) -> str:
        if not piece:
            return ""
        text = self._pending + piece
        cut = _safe_cut(text, self._values)
        self._pending = text[cut:]
        return self._mask(text[:cut])

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self._mask(text)

    def _mask(self, text: str) -> str:
        """Mask text that follows what was shown, reading it in that context (``xsk-...`` is no key)."""
        if not text:
            return ""
        masked = redact_text(self._shown + text, self._values)
        masked = masked[len(self._shown):] if masked.startswith(self._shown) else redact_text(text, self._values)
        self._shown = (self._shown + masked)[-2:]
        return masked


# How each key-shaped pattern begins; a last word that could still grow into one is held back.
_STARTS = ("sk-", "hf_", "ms-", "bce-v3/altak-", "24.", "bearer", "https://", "http://")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9]*")


def _word_start(text: str) -> int:
    """Where the run of printable ASCII at the end of text begins (keys are printable ASCII, so
    CJK text and whitespace end such a run)."""
    start = len(text)
    while start > 0 and "!" <= text[start - 1] <= "~":
        start -= 1
    return start


def _before_bearer(text: str, cut: int) -> int:
    """Move the cut back over every "Bearer <token>" whose token starts at or after it (the token
    may still grow), to the start of the word that ends in Bearer (it may be "?key=Bearer")."""
    while True:
        before = text[:cut].rstrip()
        if not (before.lower().endswith("bearer") and cut > len(before)):
            return cut
        cut = _word_start(before)


def _safe_cut(text: str, secrets: frozenset[str]) -> int:
    """Where text can be split so that no secret or key-shaped token spans the split.

    Key-shaped tokens are runs of printable ASCII that begin at a word's start or after
    punctuation. So the last such run is shown at once when it is plain letters and digits that
    begin none of them (prose streams word by word, CJK text character by character), and held
    back otherwise, with the word before it when that is "Bearer". Any tail that begins (or is)
    a registered secret is held back too.
    """
    start = _word_start(text)
    word = text[start:].lower()
    plain = _PLAIN_WORD.fullmatch(word) and not any(s.startswith(word) for s in _STARTS if word)
    cut = len(text) if plain else start
    bearer = _before_bearer(text, start)  # the last word may be the token of a "Bearer" before it
    if bearer < start:
        cut = bearer
    for secret in secrets:
        if len(secret) < TINY:
            continue
        for size in range(min(len(secret), len(text)), 0, -1):
            if text.endswith(secret[:size]):
                cut = min(cut, _word_start(text[: len(text) - size]) if secret[0] > " " else len(text) - size)
                break
    return max(cut, len(text) - _HOLD_MAX)


class _DeltaMasker:
    """The masking of one answer's deltas, shared by the blocking and the asyncio readers."""

    def __init__(self) -> None:
        self.text, self.reasoning = StreamRedactor(), StreamRedactor()

    def mask(self, delta: Delta) -> Delta:
        shown, thought = self.text.feed(delta.text), self.reasoning.feed(delta.reasoning)
        if delta.finish_reason:  # the answer is complete: nothing is left to hold back
            shown, thought = shown + self.text.flush(), thought + self.reasoning.flush()
        return replace(delta, text=shown, reasoning=thought)

    def rest(self) -> Delta | None:
        rest = Delta(text=self.text.flush(), reasoning=self.reasoning.flush())
        return rest if rest.text or rest.reasoning else None


def mask_partial(exc: BaseException) -> None:
    """Mask the partial answer a broken-off stream's error carries."""
    partial = getattr(exc, "partial_text", None)
    if isinstance(partial, str):
        exc.partial_text = redact_text(partial)  # type: ignore[attr-defined]


def redact_deltas(deltas: Iterator[Delta]) -> Iterator[Delta]:
    """An answer's deltas with secrets masked, as if the whole answer had been masked at once.

    The front ends (CLI, magics display, ``-o``, history, ``nbllm.chat``) all read answers
    through this, so they agree; a stream that breaks off keeps its masked partial text.
    """
    from nbllm.errors import NbllmError

    masker = _DeltaMasker()
    try:
        for delta in deltas:
            yield masker.mask(delta)
        if (rest := masker.rest()) is not None:
            yield rest
    except NbllmError as exc:
        mask_partial(exc)
        if (rest := masker.rest()) is not None:
            yield rest
        raise
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()


async def aredact_deltas(deltas: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    """``redact_deltas`` for an asyncio stream (``nbllm.achat``, ``astream``, ``map``)."""
    from nbllm.errors import NbllmError

    masker = _DeltaMasker()
    try:
        async for delta in deltas:
            yield masker.mask(delta)
        if (rest := masker.rest()) is not None:
            yield rest
    except NbllmError as exc:
        mask_partial(exc)
        if (rest := masker.rest()) is not None:
            yield rest
        raise
    finally:
        aclose = getattr(deltas, "aclose", None)
        if aclose is not None:
            await aclose()

