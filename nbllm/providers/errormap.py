"""The one place where provider answers and transport failures become ``NbllmError``s.

Provider error codes and their sources are listed per provider in docs/providers.md#errors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from time import time
from typing import Any, Protocol

from nbllm.errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    ConnectError,
    ContentFilterError,
    ProtocolError,
    ProviderError,
    QuotaError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    StreamInterrupted,
)
from nbllm.providers.catalog import ProviderSpec

# Provider codes (and error types) that mean "blocked by content safety" or "out of money",
# whatever HTTP status they arrive with (docs/providers.md#errors).
CONTENT_FILTER_CODES = {"content_filter", "1301", "data_inspection_failed", "datainspectionfailed", "sensitive",
                        "336003_safety", "inputtextriskdetection", "outputtextriskdetection"}
QUOTA_CODES = {"insufficient_quota", "1113", "arrearage", "insufficient_balance", "17", "19",
               "exceeded_current_quota_error", "accountoverdueerror"}
RATE_LIMIT_CODES = {"rate_limit_exceeded", "rpm_rate_limit_exceeded", "tpm_rate_limit_exceeded",
                    "1302", "1303", "18", "336501", "336502"}
AUTH_CODES = {"invalid_api_key", "invalid_authentication_error", "incorrect_api_key_error",
              "1000", "1001", "1002", "1003", "1004", "110", "111", "14", "13"}
# Baidu v1 codes that arrive with HTTP 200 (so they count only without an error status):
# no permission / app missing, a bad request, a failure on the service's side.
V1_AUTH_CODES = {"6", "15", "336004"}
BAD_REQUEST_CODES = {"3", "100", "336001", "336002", "336003", "336005", "336101", "336104", "336105"}
SERVER_CODES = {"1", "2", "4", "336000", "336100"}
# OpenAI-style error types seen inside a 200 stream (no status to go by).
SERVER_TYPES = {"server_error", "internal_error", "api_error", "overloaded_error", "service_unavailable"}

_ADVICE = {
    AuthError: "Check the key ({env}); keys are read from the environment or %llm key {id}.",
    QuotaError: "Top up the account or check its quota in the provider's console.",
    RateLimitError: "Wait a moment and try again, or lower the request rate.",
    ContentFilterError: "The provider's content-safety filter blocked it; rephrase the prompt.",
    BadRequestError: "Check the model name and parameters (nbllm models {id} lists models).",
    ServerError: "The provider failed on its side; try again later.",
    ProtocolError: "Check that the base URL ({url}) points at a {label} endpoint.",
}
# Codes that say the model is the problem: the advice names the model that was sent.
MODEL_CODES = {"invalid_model", "model_not_found", "model_not_exist", "model_not_supported", "invalid_model_name"}
MODEL_ADVICE = "The model {model!r} is not one {label} serves here: `nbllm models {id}` lists them, -m picks one."

MAX_MESSAGE = 500  # characters of a provider's own message quoted in an error
MAX_ERROR_BODY = 64 * 1024  # bytes of an error body read at all (a 5 MB page is not a paragraph)

# What decoding a provider's reply can raise when the reply has an unexpected shape.
SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError, UnicodeError, RecursionError)


def cap(text: str, limit: int = MAX_MESSAGE) -> str:
    """At most ``limit`` characters, saying how many more there were."""
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters]"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        seconds = _seconds(ms)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        return max(parsedate_to_datetime(value).timestamp() - time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


def _seconds(text: str) -> float | None:
    """A finite number of seconds, 0 or more; ``nan``, ``inf`` and words are not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return max(value, 0.0) if math.isfinite(value) else None


def extract_error(body: Any) -> tuple[str, str | None]:
    """The provider's own message and code from any of the error shapes providers use."""
    if not isinstance(body, dict):
        return (str(body)[:300] if body not in (None, "") else ""), None
    err = body.get("error")
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        return str(err.get("message") or err.get("msg") or json.dumps(err)), _str(code)
    if isinstance(err, str):
        return str(body.get("error_description") or err), _str(body.get("error_type") or body.get("code"))
    if "error_code" in body:  # Baidu v1
        return str(body.get("error_msg", "")), _str(body["error_code"])
    if "message" in body:  # vLLM / TGI: {"object": "error", "message", "type", "code"}
        return str(body["message"]), _str(body.get("code") or body.get("type"))
    return json.dumps(body, ensure_ascii=False)[:300], None


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def classify(status: int | None, code: str | None, etype: str | None = None) -> type[ProviderError]:
    """Pick the error class from the provider's code first, then the HTTP status."""
    tags = {t.lower() for t in (code, etype) if t}
    if tags & CONTENT_FILTER_CODES:
        return ContentFilterError
    if tags & QUOTA_CODES or status == 402:
        return QuotaError
    if tags & RATE_LIMIT_CODES or status == 429:
        return RateLimitError
    if tags & AUTH_CODES or status in (401, 403):
        return AuthError
    if status is None and tags & V1_AUTH_CODES:
        return AuthError
    if status is None and tags & (SERVER_CODES | SERVER_TYPES):
        return ServerError
    if status is None and tags & BAD_REQUEST_CODES:
        return BadRequestError
    if status is not None and status >= 500:
        return ServerError
    if status in (400, 404, 409, 413, 422):
        return BadRequestError
    return ProtocolError if status is None or status < 400 else ServerError


def make_error(
    spec: ProviderSpec,
    status: int | None,
    body: Any,
    headers: Mapping[str, str] | None = None,
    model: str | None = None,
) -> ProviderError:
    """Build the one-paragraph error for a failed answer (body already decoded if JSON).

    The provider's own message is quoted, capped at MAX_MESSAGE characters; ``model`` (what
    was asked for) lets the advice name it when the provider says the model is wrong.
    """
    message, code = extract_error(body)
    error = body.get("error") if isinstance(body, dict) else None
    etype = error.get("type") if isinstance(error, dict) else None
    cls = classify(status, code, etype if isinstance(etype, str) else None)
    where = f"HTTP {status}" if status is not None else "an error"
    quoted = f': "{cap(message.strip())}"' if message.strip() else ""
    code_txt = f" (code {cap(code, 80)})" if code else ""
    template = MODEL_ADVICE if model and code and code.lower() in MODEL_CODES else _ADVICE.get(cls, "")
    advice = template.format(
        env=" or ".join(spec.key_env) or "no key variable", id=spec.id, url=spec.base_url, label=spec.label,
        model=model,
    )
    text = f"{spec.label} ({spec.id}) answered {where}{code_txt}{quoted}. {advice}".strip()
    if cls is RateLimitError:
        retry_after = parse_retry_after(headers or {})
        if retry_after is not None:
            text += f" The provider asks to wait {retry_after:.1f} s."
        return RateLimitError(text, retry_after=retry_after, provider=spec.id, status=status, code=code)
    return cls(text, provider=spec.id, status=status, code=code)


def decode_body(raw: bytes) -> Any:
    """JSON if the body is JSON, else the text itself (HTML error pages, plain text)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


class StreamState(Protocol):
    """What a stream reader knows when its connection fails: the text so far, and whether the
    provider already said the answer was complete (a finish reason)."""

    finished: bool

    @property
    def text(self) -> str: ...


@contextmanager
def http_errors(spec: ProviderSpec, stream: StreamState | None = None) -> Iterator[None]:
    """The one boundary where httpx's failures become nbllm's, for sending and for reading.

    Before a stream is read (``stream`` None): timeouts, refused connections and broken
    connections. While a stream is read, whatever the dialect: a break after the finish reason
    only loses the usage chunk and is ignored; a timeout before any text is a timeout; any other
    break is ``StreamInterrupted`` carrying the text so far (never retried).
    """
    import httpx

    try:
        yield
    except httpx.DecodingError as exc:  # a Content-Encoding (gzip, br) the body does not match
        raise ProtocolError(
            f"{spec.label} ({spec.id}) sent a body that could not be decoded ({cap(str(exc), 200)}). "
            f"Check that the base URL ({spec.base_url}) points at a {spec.label} endpoint, and any proxy between.",
            provider=spec.id,
        ) from exc
    except SHAPE_ERRORS as exc:
        if stream is None:  # sending: the request itself could not be built
            raise unsendable(spec, exc) from exc
        raise unreadable(spec, exc) from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        if stream is None:
            raise _send_error(spec, exc) from exc
        if stream.finished:
            return
        if isinstance(exc, httpx.TimeoutException):
            if not stream.text:
                raise RequestTimeout(
                    f"{spec.label} ({spec.id}) stopped sending before any text arrived ({type(exc).__name__}). "
                    "Try again or raise the timeout.",
                    provider=spec.id,
                ) from exc
            raise interrupted(spec, f"the stream stalled ({type(exc).__name__})", stream.text) from exc
        raise interrupted(spec, f"the connection broke ({type(exc).__name__}: {exc})", stream.text) from exc


@contextmanager
def readable(spec: ProviderSpec) -> Iterator[None]:
    """Around a whole dialect call: whatever a reply's shape, decoding it ends in an NbllmError."""
    import httpx

    try:
        yield
    except SHAPE_ERRORS as exc:
        raise unreadable(spec, exc) from exc
    except httpx.HTTPError as exc:  # any httpx failure that reached past the reading boundary
        raise ProtocolError(f"The connection to {spec.label} ({spec.id}) failed: {type(exc).__name__}: "
                            f"{cap(str(exc), 200)}. Try again.", provider=spec.id) from exc


def unreadable(spec: ProviderSpec, exc: Exception | str) -> ProtocolError:
    """A reply nbllm cannot read: what was wrong with it, and where to look."""
    what = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return ProtocolError(
        f"{spec.label} ({spec.id}) sent an answer nbllm cannot read ({cap(what, 200)}). Check that the base URL "
        f"({spec.base_url}) points at a {spec.label} endpoint; if it does, the provider changed its format.",
        provider=spec.id,
    )


def unsendable(spec: ProviderSpec, exc: Exception) -> ConfigError:
    """A request httpx could not build (a value JSON cannot carry, such as NaN or a date)."""
    return ConfigError(
        f"The request to {spec.label} ({spec.id}) could not be built ({type(exc).__name__}: {cap(str(exc), 200)}). "
        "Options and extra_body must be plain JSON: no NaN or infinity, no dates or other objects.",
        provider=spec.id,
    )


def redirect_error(spec: ProviderSpec, status: int, location: str) -> ProtocolError:
    """nbllm never follows a redirect: the key would go to a host the user did not name."""
    return ProtocolError(
        f"{spec.label} ({spec.id}) answered HTTP {status}, a redirect to {cap(location, 200) or 'nowhere'}. nbllm "
        "does not follow redirects, so a key never goes to a host you did not name: if the new address is "
        f"right, make it the base URL (now {spec.base_url}).",
        provider=spec.id, status=status,
    )


def _send_error(spec: ProviderSpec, exc: Exception) -> ProviderError:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(
            f"{spec.label} ({spec.id}) did not answer in time ({type(exc).__name__}) at {spec.base_url}. "
            "Try again, raise the timeout (--timeout or timeout=), or check the network and proxy settings.",
            provider=spec.id,
        )
    if isinstance(exc, (httpx.ConnectError, httpx.ProxyError)):
        return ConnectError(
            f"Could not connect to {spec.label} ({spec.id}) at {spec.base_url}: {exc}. Check the network, "
            f"HTTPS_PROXY/NO_PROXY, or set NBLLM_{spec.id.upper().replace('-', '_')}_BASE_URL to a reachable endpoint.",
            provider=spec.id,
        )
    return ProtocolError(
        f"The connection to {spec.label} ({spec.id}) failed: {type(exc).__name__}: {exc}. Try again.",
        provider=spec.id,
    )


def interrupted(spec: ProviderSpec, why: str, partial: str) -> StreamInterrupted:
    """A stream that broke off: why, how much arrived, and that the partial text is kept."""
    return StreamInterrupted(
        f"{spec.label} ({spec.id}): {why}, after {len(partial)} characters of text. "
        "The partial answer is kept; run the request again for a full one.",
        provider=spec.id, partial_text=partial,
    )
