"""Ollama's native API: ``/api/chat`` streamed as NDJSON, ``/api/tags`` for the model list.

The host comes from ``OLLAMA_HOST`` in any form Ollama itself accepts (docs/providers.md#ollama);
``ollama_base_url`` reads it the way Ollama's ``envconfig.Host`` does, and then, like Ollama's
client, connects to loopback when the value is a bind-everything address such as ``0.0.0.0``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nbllm.errors import BadRequestError, ConnectError, ServerError, UnknownModelError
from nbllm.messages import ChatRequest, Delta
from nbllm.providers.catalog import ProviderSpec
from nbllm.providers.errormap import make_error
from nbllm.providers.http import HTTPProvider
from nbllm.providers.streams import Decoder, json_object, sendable, usage_from

if TYPE_CHECKING:
    import httpx

DEFAULT_PORT = "11434"
# Request options Ollama takes inside "options" (with nbllm's OpenAI-style name on the left);
# everything not named here or in _TOP_LEVEL also goes into "options", as Ollama's own clients do.
_OPTION_NAMES = {"max_tokens": "num_predict", "max_completion_tokens": "num_predict",
                 "repetition_penalty": "repeat_penalty"}
_TOP_LEVEL = {"format", "keep_alive", "think", "tools"}
_MISSING_MODEL = re.compile(r"model ['\"][^'\"]+['\"] not found")


def ollama_base_url(value: str | None) -> str:
    """Normalise an ``OLLAMA_HOST``-style value into a base URL to connect to."""
    text = (value or "").strip().strip("\"'").strip()
    default_port = DEFAULT_PORT
    scheme, sep, hostport = text.partition("://")
    if not sep:
        scheme, hostport = "http", text
        if text == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport, _, path = hostport.partition("/")
    host, port = _split_host_port(hostport, default_port)
    if not port.isdigit() or int(port) > 65535:
        port = default_port
    host = _connectable(host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = path.rstrip("/")
    return f"{scheme}://{netloc}" + (f"/{path}" if path else "")


def _split_host_port(hostport: str, default_port: str) -> tuple[str, str]:
    """Go's net.SplitHostPort, falling back to the whole text as a host (as Ollama does)."""
    if hostport.startswith("[") and "]:" in hostport:
        host, _, port = hostport[1:].partition("]:")
        return host, port
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    bare = hostport.strip("[]")
    try:
        return str(ipaddress.ip_address(bare)), default_port
    except ValueError:
        return (hostport or "127.0.0.1"), default_port


def _connectable(host: str) -> str:
    """A listen-on-everything address (or none) means this machine when connecting."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def chat_body(request: ChatRequest, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``/api/chat`` body: messages as they are, sampling options under ``options``."""
    body: dict[str, Any] = {"model": request.model, "messages": [dict(m) for m in request.messages],
                            "stream": True, **(extra or {})}
    options: dict[str, Any] = dict(body.pop("options", {}) or {})
    for name, value in sendable(request.params).items():
        if name in _TOP_LEVEL:
            body[name] = value
        elif name == "options" and isinstance(value, dict):
            options.update(value)
        else:
            options[_OPTION_NAMES.get(name, name)] = [value] if name == "stop" and isinstance(value, str) else value
    if options:
        body["options"] = options
    return body


class LineDecoder(Decoder):
    """``/api/chat`` NDJSON: one JSON object per line, ``done: true`` on the last."""

    incomplete = "the stream ended before its last line (done: true)"

    def feed(self, data: str, event: str = "") -> list[Delta]:
        item = json_object(data)
        if item is None:
            if not self.text:
                raise make_error(self.spec, None, f"not NDJSON: {data[:200]}")
            raise self.interrupted(f"a line that is not JSON arrived ({data[:80]!r})")
        if "error" in item:
            said = str(item["error"])
            if self.text:
                raise self.interrupted(f'the server reported an error mid-answer: "{said}"')
            raise ServerError(
                f'Ollama ({self.spec.id}) at {self.spec.base_url} reported an error: "{said}". Check the server '
                "log (`ollama serve` output); the model may not fit in memory or its file may be damaged.",
                provider=self.spec.id,
            )
        message = item.get("message") or {}
        text = str(message.get("content") or "")
        reasoning = str(message.get("thinking") or "")
        if not item.get("done"):
            return [Delta(text=text, reasoning=reasoning)]
        self.done = True
        usage = usage_from(item.get("prompt_eval_count"), item.get("eval_count"))
        return [Delta(text=text, reasoning=reasoning, finish_reason=str(item.get("done_reason") or "stop"), usage=usage)]


class OllamaProvider(HTTPProvider):
    """A local (or remote) Ollama server through its native API."""

    def __init__(self, spec: ProviderSpec, key: str | None = None, **kw: Any) -> None:
        super().__init__(spec.with_changes(base_url=ollama_base_url(spec.base_url)), key, **kw)

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        body = chat_body(request, self.spec.extra_body)
        response = self._open("api/chat", request.model, json=body, timeout=request.timeout)
        yield from self.read_lines(response, LineDecoder(self.spec))

    def models(self, timeout: float | None = None) -> list[str]:
        """The models pulled on the server (``/api/tags``)."""
        try:
            body = self.request_json("GET", "api/tags", timeout=timeout)
        except ConnectError as exc:
            raise self._not_running() from exc
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise make_error(self.spec, None, f"/api/tags did not list models: {str(body)[:200]}")
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    def _open(self, path: str, model: str, **kwargs: Any) -> httpx.Response:
        """POST and return the open stream; a missing model or a stopped server explained."""
        try:
            return self.send("POST", path, **kwargs)
        except ConnectError as exc:
            raise self._not_running() from exc
        except BadRequestError as exc:
            if exc.status == 404 and _MISSING_MODEL.search(exc.message):
                raise UnknownModelError(
                    f"Ollama at {self.spec.base_url} does not have the model {model!r}. Download it with "
                    f"`ollama pull {model}`, or pick one it has (`ollama list`, or nbllm models ollama).",
                    provider=self.spec.id,
                ) from exc
            raise

    def _not_running(self) -> ConnectError:
        return ConnectError(
            f"Ollama is not answering at {self.spec.base_url}. Start it with `ollama serve` (or the Ollama app), "
            "or point OLLAMA_HOST (or NBLLM_OLLAMA_BASE_URL) at the machine that runs it.",
            provider=self.spec.id,
        )
