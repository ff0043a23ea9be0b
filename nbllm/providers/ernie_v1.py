"""Baidu's legacy wenxinworkshop (ERNIE v1) API: OAuth access token, endpoint suffixes, ``is_end`` SSE.

Older accounts and many tutorials still use it (docs/providers.md#ernie-v1). The key arrives as
"API_KEY:SECRET_KEY"; the access token it buys is cached until it expires, fetched once for
all concurrent calls, and refreshed once when the service answers 110/111.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nbllm.errors import AuthError, BadRequestError, ContentFilterError, MissingKeyError, ProviderError
from nbllm.messages import ChatRequest, Delta, Message, Usage
from nbllm.providers.catalog import ProviderSpec
from nbllm.providers.errormap import decode_body, http_errors, make_error
from nbllm.providers.http import HTTPProvider
from nbllm.providers.streams import Decoder, json_object, sendable, usage_from
from nbllm.secrets import register_secret

if TYPE_CHECKING:
    import httpx

# Model name (lower-case, SDK names and old aliases) -> wenxinworkshop endpoint suffix.
# Unknown names are sent lower-cased, which is also how custom deployments are named.
ENDPOINTS: dict[str, str] = {
    "ernie-4.0-8k": "completions_pro",
    "ernie-bot-4": "completions_pro",
    "ernie-4.0-8k-preemptible": "completions_pro_preemptible",
    "ernie-4.0-8k-preview-0518": "completions_adv_pro",
    "ernie-3.5-8k": "completions",
    "ernie-bot": "completions",
    "ernie-3.5-8k-preemptible": "completions_preemptible",
    "ernie-bot-8k": "ernie_bot_8k",
    "ernie-speed-8k": "ernie_speed",
    "ernie-speed": "ernie_speed",
    "ernie-lite-8k-0922": "eb-instant",
    "ernie-bot-turbo": "eb-instant",
    "ernie-lite-8k-0308": "ernie-lite-8k",
    "ernie-character-8k": "ernie-char-8k",
    "ernie-character-fiction-8k": "ernie-char-fiction-8k",
    "ernie-function-8k": "ernie-func-8k",
    "ernie-functions-8k": "ernie-func-8k",
    "ernie-speed-appbuilder": "ai_apaas",
    "ernie-lite-appbuilder-8k-0614": "ai_apaas_lite",
    "llama-2-7b-chat": "llama_2_7b",
    "llama-2-13b-chat": "llama_2_13b",
    "llama-2-70b-chat": "llama_2_70b",
    "meta-llama-3-8b": "llama_3_8b",
    "meta-llama-3-70b": "llama_3_70b",
    "bloomz-7b": "bloomz_7b1",
    "qianfan-bloomz-7b-compressed": "qianfan_bloomz_7b_compressed",
    "chatglm2-6b-32k": "chatglm2_6b_32k",
    "aquilachat-7b": "aquilachat_7b",
    "yi-34b-chat": "yi_34b_chat",
    "mixtral-8x7b-instruct": "mixtral_8x7b_instruct",
    "gemma-7b-it": "gemma_7b_it",
    "xuanyuan-70b-chat-4bit": "xuanyuan_70b_chat",
    "chatlaw": "chatlaw",
}

# Request options with another name on this API; everything else is sent as given.
_PARAM_NAMES = {"max_tokens": "max_output_tokens", "user": "user_id", "repetition_penalty": "penalty_score"}
_FINISH = {"normal": "stop", "stop": "stop", "length": "length", "content_filter": "content_filter",
           "function_call": "tool_calls"}
_EXPIRED_CODES = {110, 111}
_CHAT_PREFIX = "rpc/2.0/ai_custom/v1/wenxinworkshop/"


def endpoint_for(model: str) -> str:
    """The URL suffix that serves a model name."""
    return ENDPOINTS.get(model.strip().lower(), model.strip().lower())


class _TokenExpired(Exception):
    """The service refused the access token (110/111); carries the mapped error."""

    def __init__(self, token: str, error: ProviderError) -> None:
        super().__init__(error.message)
        self.token = token
        self.error = error


class ErnieV1Provider(HTTPProvider):
    """ERNIE through wenxinworkshop v1 with an OAuth client-credentials access token."""

    def __init__(self, spec: ProviderSpec, key: str | None = None, **kw: Any) -> None:
        super().__init__(spec, key, **kw)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        self.token_fetches = 0  # tokens bought so far, for diagnostics
        for part in (key or "").split(":", 1):
            register_secret(part)

    def auth_headers(self) -> dict[str, str]:
        return {}  # the access token travels in the query string

    # -- the access token ---------------------------------------------------------------
    def _credentials(self) -> tuple[str, str]:
        api_key, _, secret = (self._key or "").partition(":")
        if not api_key or not secret:
            env = " and ".join((*self.spec.key_env[:1], *self.spec.secret_env[:1])) or "QIANFAN_AK and QIANFAN_SK"
            raise MissingKeyError(
                f"{self.spec.label} ({self.spec.id}) needs an API Key and a Secret Key: set {env}, or run "
                f"%llm key {self.spec.id} with the value API_KEY:SECRET_KEY.",
                provider=self.spec.id,
            )
        return api_key, secret

    def access_token(self, stale: str | None = None) -> str:
        """The cached token, or a new one; concurrent callers wait for a single fetch."""
        with self._token_lock:
            fresh = self._token is not None and time.monotonic() < self._token_expires
            if fresh and self._token != stale:
                return self._token  # type: ignore[return-value]
            self._token, lifetime = self._fetch_token()
            # Renew a little early so a call never starts with a token about to expire.
            self._token_expires = time.monotonic() + max(lifetime - min(300.0, lifetime / 10), 1.0)
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        api_key, secret = self._credentials()
        params = {"grant_type": "client_credentials", "client_id": api_key, "client_secret": secret}
        url = f"{_origin(self.spec.base_url)}/oauth/2.0/token"

        def attempt() -> dict[str, Any]:
            with http_errors(self.spec):
                response = self.client.post(url, params=params, headers={"Accept": "application/json"})
            body = decode_body(response.content)
            if not isinstance(body, dict) or not body.get("access_token"):
                raise self._token_error(response.status_code, body)
            return body

        body = self.retrying(attempt)
        self.token_fetches += 1
        token = str(body["access_token"])
        register_secret(token)
        try:
            lifetime = float(body.get("expires_in", 2592000))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, lifetime

    def _token_error(self, status: int, body: Any) -> ProviderError:
        if isinstance(body, dict) and body.get("error"):
            error = make_error(self.spec, status if status >= 400 else None, body)
            if not isinstance(error, AuthError) and body.get("error") in ("invalid_client", "unauthorized_client"):
                error = AuthError(error.message, provider=self.spec.id, status=status, code=str(body["error"]))
            return error
        return make_error(self.spec, status if status >= 400 else None, f"no access_token in the token reply: {body}")

    # -- the chat call ------------------------------------------------------------------
    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        return self._deltas(request, streamed=True)

    def fetch(self, request: ChatRequest) -> Iterator[Delta]:
        """One non-streamed call: the whole answer in one JSON body."""
        return self._deltas(request, streamed=False)

    def chat_path(self, model: str) -> str:
        path = urlsplit(self.spec.base_url).path.rstrip("/")
        prefix = "" if path.endswith("/wenxinworkshop") else _CHAT_PREFIX
        return f"{prefix}chat/{endpoint_for(model)}"

    def _deltas(self, request: ChatRequest, *, streamed: bool) -> Iterator[Delta]:
        body = build_body(request, streamed, self.spec.extra_body)  # checked before anything is sent
        answer = self._call(self.chat_path(request.model), body, request.timeout)
        if isinstance(answer, dict):
            yield final_delta(answer, answer.get("result", ""))
            return
        yield from self.read_events(answer, ResultDecoder(self.spec))

    def _call(self, path: str, body: dict[str, Any], timeout: float | None) -> httpx.Response | dict[str, Any]:
        """Send the chat request; on an expired token buy a new one and send it once more."""
        try:
            return self.retrying(lambda: self._attempt(path, body, self.access_token(), timeout))
        except _TokenExpired as expired:
            token = self.access_token(stale=expired.token)
        try:
            return self.retrying(lambda: self._attempt(path, body, token, timeout))
        except _TokenExpired as again:
            raise again.error from None

    def _attempt(self, path: str, body: dict[str, Any], token: str,
                 timeout: float | None) -> httpx.Response | dict[str, Any]:
        response = self.send("POST", path, params={"access_token": token}, json=body, timeout=timeout)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response
        payload = decode_body(self.read(response))
        if not isinstance(payload, dict):
            raise make_error(self.spec, None, f"not JSON: {str(payload)[:200]}")
        check_payload(self.spec, payload, token)
        return payload


class ResultDecoder(Decoder):
    """wenxinworkshop SSE: ``result`` pieces, ``is_end`` on the last; a content-safety verdict
    arrives as a canned answer with ``need_clear_history`` and is raised once it is complete."""

    incomplete = "the stream ended without its last chunk (is_end)"

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self._refusal: list[str] | None = None  # the canned answer of a content-safety verdict

    def feed(self, data: str, event: str = "") -> list[Delta]:
        chunk = _parse_chunk(self.spec, data)
        self.done = bool(chunk.get("is_end"))
        if chunk.get("need_clear_history") or self._refusal is not None:
            self._refusal = [*(self._refusal or []), str(chunk.get("result") or "")]
            if self.done:
                raise refused(self.spec, chunk, "".join(self._refusal))
            return []
        if self.done:
            return [final_delta(chunk, chunk.get("result", ""))]
        return [Delta(text=str(chunk.get("result") or ""), usage=_usage(chunk.get("usage")))]


def _parse_chunk(spec: ProviderSpec, data: str) -> dict[str, Any]:
    chunk = json_object(data)
    if chunk is None:
        raise make_error(spec, None, f"a stream chunk that is not a JSON object: {data[:200]}")
    check_payload(spec, chunk, None)  # mid-stream an expired token is too late to renew: AuthError
    return chunk


def check_payload(spec: ProviderSpec, payload: dict[str, Any], token: str | None) -> None:
    """Raise for an ``error_code`` body (sent with HTTP 200) or a content-safety verdict.

    ``token`` is the one the request used, when a new one can still be bought and the call sent again.
    """
    if "error_code" in payload:
        error = make_error(spec, None, payload)
        if token is not None and payload["error_code"] in _EXPIRED_CODES:
            raise _TokenExpired(token, error)
        raise error
    if payload.get("need_clear_history") and "sentence_id" not in payload:
        raise refused(spec, payload, str(payload.get("result") or ""))


def refused(spec: ProviderSpec, payload: dict[str, Any], said: str) -> ContentFilterError:
    """ERNIE answers a blocked prompt with a canned text and ``need_clear_history``."""
    said = said.strip()
    return ContentFilterError(
        f"{spec.label} ({spec.id}) refused the conversation on content-safety grounds "
        f"(need_clear_history, ban_round {payload.get('ban_round', -1)})"
        + (f': "{said}"' if said else "")
        + ". Rephrase the prompt and clear the history (%llm reset) before asking again.",
        provider=spec.id, code="need_clear_history",
    )


def final_delta(payload: dict[str, Any], text: Any) -> Delta:
    reason = str(payload.get("finish_reason") or "normal")
    return Delta(text=str(text or ""), finish_reason=_FINISH.get(reason, reason), usage=_usage(payload.get("usage")))


def build_body(request: ChatRequest, streamed: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The v1 request body: system prompt apart, options renamed, message rule checked."""
    system = "\n\n".join(m["content"] for m in request.messages if m["role"] == "system")
    messages = [{"role": m["role"], "content": m["content"]} for m in request.messages if m["role"] != "system"]
    _check_turns(messages)
    body: dict[str, Any] = {"messages": messages, "stream": streamed, **(extra or {})}
    if system:
        body["system"] = system
    for name, value in sendable(request.params).items():
        if name == "stop" and isinstance(value, str):
            value = [value]
        body[_PARAM_NAMES.get(name, name)] = value
    return body


def _check_turns(messages: list[Message] | list[dict[str, str]]) -> None:
    """ERNIE v1 wants user/assistant turns alternating, starting and ending with the user."""
    roles = [m["role"] for m in messages]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))]
    if roles and roles == expected and len(roles) % 2 == 1:
        return
    shown = ", ".join(roles) or "none"
    raise BadRequestError(
        "Baidu ERNIE v1 (ernie-v1) needs an odd number of messages alternating user, assistant, user, ... "
        f"and ending with the user (besides the system prompt); this request has: {shown}. Trim or reset "
        "the history (%llm reset), or use the Qianfan v2 provider `ernie`, which has no such rule.",
        provider="ernie-v1",
    )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return usage_from(raw.get("prompt_tokens"), raw.get("completion_tokens"), raw.get("total_tokens"))


def _origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"

