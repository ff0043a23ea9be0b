"""The one exception tree of nbllm; every failure a user can meet is one of these.

    NbllmError
    ├── ConfigError
    │   ├── MissingKeyError
    │   ├── UnknownProviderError
    │   ├── UnknownModelError
    │   └── ContextError            (a prompt names notebook context that does not exist)
    ├── ProviderError
    │   ├── AuthError
    │   ├── QuotaError
    │   ├── RateLimitError          (retry_after)
    │   ├── ContentFilterError
    │   ├── BadRequestError
    │   ├── ServerError
    │   ├── ProtocolError
    │   ├── ConnectError
    │   ├── RequestTimeout
    │   └── StreamInterrupted       (partial_text)
    ├── ConvertError
    │   ├── NotebookReadError
    │   └── NotebookWriteError
    └── ReplayMissError             (replay mode met a request the log holds no answer for)

Messages are redacted when the error is built, so no key can leak through ``str(err)``,
a log line or IPython's one-paragraph rendering (``_render_traceback_``).
"""

from __future__ import annotations

import re

from nbllm.secrets import redact

_BREAKS = re.compile(r"[\r\n\t\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def one_paragraph(text: str) -> str:
    """Text on one line: line breaks (a server's message may hold some) become spaces, and control
    characters (a terminal would act on them) are shown escaped."""
    text = _BREAKS.sub(" ", text)
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


class NbllmError(Exception):
    """Base class: a one-paragraph message that says what failed and what to do."""

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        self.message = one_paragraph(redact(message))
        self.provider = provider
        super().__init__(self.message)

    def _render_traceback_(self) -> list[str]:
        # IPython prints these lines instead of a traceback.
        return [f"{type(self).__name__}: {self.message}"]


class ConfigError(NbllmError):
    """The request could not be built: configuration, key or name problems."""


class MissingKeyError(ConfigError):
    """No API key was found for a provider that needs one."""


class UnknownProviderError(ConfigError):
    """A provider id that is neither built in, configured nor a plugin."""


class UnknownModelError(ConfigError):
    """A model the provider does not serve."""


class ContextError(ConfigError):
    """A prompt refers to a variable, cell or error the notebook does not have."""


class ProviderError(NbllmError):
    """The provider was reached (or tried) and the call failed."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.status = status
        self.code = code


class AuthError(ProviderError):
    """The key was refused (401/403)."""


class QuotaError(ProviderError):
    """The account is out of balance or quota (402, arrears codes)."""


class RateLimitError(ProviderError):
    """Too many requests (429 or a provider rate-limit code)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ContentFilterError(ProviderError):
    """The provider's content-safety filter blocked the prompt or the answer."""


class BadRequestError(ProviderError):
    """The provider rejected the request itself (400/404/422): model, parameters, length."""


class ServerError(ProviderError):
    """The provider failed on its side (5xx)."""


class ProtocolError(ProviderError):
    """The provider answered with something that is not its documented protocol."""


class ConnectError(ProviderError):
    """The provider's host could not be reached."""


class RequestTimeout(ProviderError):
    """The provider did not answer in time."""


class StreamInterrupted(ProviderError):
    """The stream broke off before it was complete; the text received so far is kept."""

    def __init__(self, message: str, *, partial_text: str = "", **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.partial_text = partial_text


class ConvertError(NbllmError):
    """A notebook could not be converted."""


class NotebookReadError(ConvertError):
    """A notebook could not be read or is not a notebook nbllm can convert."""


class NotebookWriteError(ConvertError):
    """A converted notebook could not be written; the original is untouched."""


class ReplayMissError(NbllmError):
    """Replay mode never calls a provider, and the log holds no answer for this request."""


RETRYABLE: tuple[type[ProviderError], ...] = (ConnectError, RateLimitError, ServerError)
"""Failures worth another try, as long as no text has reached the caller yet."""
