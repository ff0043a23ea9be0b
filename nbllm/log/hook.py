"""Where the log and the cache meet the engine: one observer and one responder on ``Response``.

``nbllm.response`` installs both, as thin wrappers that import this module on the first call,
so every front end (CLI, magics, API, compare lanes, the switcher's Test button) logs and
replays the same way and ``%load_ext nbllm`` never loads any of it.

A front end passes per-call choices in ``Response.meta``: ``cache`` ("on", "off", "replay"; the
cell's ``--cache``/``--no-cache``, ``cache=`` of ``nbllm.chat``) and ``where`` (how a replay miss
names the call, e.g. "item 7 of the batch"). A batch run also passes ``log_later`` (its rows go
to the background writer, nbllm/log/writer.py, off the run's event loop; ``log_id`` stays None)
and ``host`` (its provider's host, found once for the whole run). The observer leaves
``meta["log_id"]`` and ``meta["fingerprint"]`` for the provenance a front end saves with the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nbllm.config import get_spec
from nbllm.errors import NbllmError
from nbllm.log.cache import lookup, replay_miss, resolve_mode
from nbllm.log.fingerprint import fingerprint
from nbllm.log.record import Exchange, host_of, notebook_path
from nbllm.log.store import write
from nbllm.messages import Delta

if TYPE_CHECKING:
    from nbllm.response import Response

WHERE = {"magic": "this %%llm cell", "compare": "this %%llm comparison", "api": "this nbllm.chat call",
         "cli": "this nbllm chat command", "widget": "the switcher's Test button"}


def fingerprint_of(response: Response) -> str:
    fp = response.meta.get("fingerprint")
    if fp is None:
        request = response.request
        fp = response.meta["fingerprint"] = fingerprint(response.provider, response.model, request.messages,
                                                        request.params)
    return str(fp)


def respond(response: Response) -> Iterable[Delta] | None:
    """Answer from the log when the cache mode says so; in replay mode a miss is an error."""
    mode = resolve_mode(response.meta.get("cache"))
    if mode == "off":
        return None
    fp = fingerprint_of(response)
    found = lookup(fp)
    if found is not None:
        response.meta["cached_from"] = found.log_id
        return [Delta(text=found.text, reasoning=found.reasoning, finish_reason=found.finish_reason, usage=found.usage)]
    if mode == "replay":
        response.meta["replay_miss"] = True
        prompt = next((m["content"] for m in reversed(response.request.messages) if m.get("role") == "user"), "")
        where = response.meta.get("where") or WHERE.get(response.source, "this call")
        raise replay_miss(response.provider, response.model, fp, prompt, where)
    return None


def exchange_of(response: Response) -> Exchange:
    """The log row of a finished response."""
    error = response.error
    error_class = type(error).__name__ if error is not None else ("Stopped" if response.stopped else None)
    if error is not None:
        message: str | None = getattr(error, "message", None) or str(error)
    else:
        message = "the answer was stopped before its end" if response.stopped else None
    usage = response.usage
    request = response.request
    return Exchange(
        source=response.source, provider=response.provider, model=response.model, messages=list(request.messages),
        fingerprint=fingerprint_of(response), params=dict(request.params), host=_host(response),
        answer=response.text, reasoning=response.reasoning, prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens,
        first_token_s=response.first_token_s, total_s=response.total_s, finish_reason=response.finish_reason,
        error_class=error_class, error_message=message, cached=bool(response.meta.get("replayed")),
        notebook=notebook_path() if response.source in ("magic", "compare") else None,
    )


def _host(response: Response) -> str | None:
    """The host the provider's base URL names (a Response keeps only the provider's id)."""
    if "host" in response.meta:
        return response.meta["host"]  # type: ignore[no-any-return]
    try:
        return host_of(get_spec(response.provider).base_url)
    except NbllmError:  # a provider made outside the config (tests, plugins gone since)
        return None


def record(response: Response) -> None:
    """Write the finished response to the log; a replay miss never reached a provider and is not logged."""
    if response.meta.get("replay_miss"):
        return
    if response.meta.get("log_later"):
        from nbllm.log.writer import write_later

        response.meta["log_id"] = None
        write_later(exchange_of(response))
        return
    response.meta["log_id"] = write(exchange_of(response))


def provenance_of(response: Response, shown: str | None = None) -> dict[str, Any]:
    """The ``nbllm`` output metadata of a finished response (after ``record`` ran)."""
    from nbllm.log.provenance import provenance

    return provenance(exchange_of(response), response.meta.get("log_id"), shown)
