"""nbllm: move Jupyter work off OpenAI to ERNIE, HunYuan, Qwen, DeepSeek, GLM, Kimi and local models.

``import nbllm`` and ``%load_ext nbllm`` stay cheap: httpx, libcst and ipywidgets are imported
only when a call needs them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Load the submodule nbllm.redirect (light: no openai until a redirect starts) before the function
# redirect() below is defined: a submodule loaded later would replace the function on the package.
from nbllm import redirect as _redirect_module  # noqa: E402, F401, I001

if TYPE_CHECKING:
    from nbllm.messages import Message
    from nbllm.redirect import Redirect
    from nbllm.response import Response

__all__ = ["__version__", "chat", "stream", "achat", "astream", "map", "imap", "embed", "Failed", "set_key",
           "redirect", "load_ipython_extension", "unload_ipython_extension"]


def chat(prompt_or_messages: str | list[Message], provider: str | None = None, model: str | None = None,
         system: str | None = None, *, cache: str | None = None, **params: Any) -> Response:
    """Ask once and get the finished ``Response`` (text, reasoning, usage, latency); no history is kept.

    ``provider`` is ``"id"`` or ``"id:model"``; ``params`` are options such as temperature,
    max_tokens, top_p or timeout. ``cache="on"`` answers a request seen before from the exchange
    log, ``"replay"`` never calls the provider (a request not in the log fails), ``"off"`` always
    calls it; the default follows ``%llm cache`` and ``NBLLM_CACHE``.
    """
    from nbllm.session import default_session

    return default_session().chat(prompt_or_messages, provider, model, system, cache=cache, **params)


def stream(prompt_or_messages: str | list[Message], provider: str | None = None, model: str | None = None,
           system: str | None = None, *, cache: str | None = None, **params: Any) -> Iterator[str]:
    """Yield the answer's text as it arrives (``cache`` as for ``chat``)."""
    from nbllm.session import default_session

    for delta in default_session().stream(prompt_or_messages, provider, model, system, cache=cache, **params):
        if delta.text:
            yield delta.text


async def achat(prompt_or_messages: str | list[Message], provider: str | None = None, model: str | None = None,
                system: str | None = None, **params: Any) -> Response:
    """``chat`` for asyncio code (``await nbllm.achat(...)``, top-level ``await`` in a notebook)."""
    from nbllm.session import default_session

    return await default_session().achat(prompt_or_messages, provider, model, system, **params)


async def astream(prompt_or_messages: str | list[Message], provider: str | None = None, model: str | None = None,
                  system: str | None = None, **params: Any) -> AsyncIterator[str]:
    """``stream`` for asyncio code: ``async for piece in nbllm.astream(...)``."""
    from nbllm.session import default_session

    async for delta in default_session().astream(prompt_or_messages, provider, model, system, **params):
        if delta.text:
            yield delta.text


def map(prompt: str, rows: Any, provider: str | None = None, *, model: str | None = None,  # noqa: A001
        system: str | None = None, concurrency: int = 8, rpm: float | None = None, tpm: float | None = None,
        progress: bool = True, **params: Any) -> Any:
    """Ask ``prompt`` (a template with ``{column}`` fields) once per row; the answers in row order.

    Rows are dicts, named tuples, DataFrame rows or plain strings (``{text}``); a DataFrame or
    Series gives a Series on its index, anything else a list. A failed row holds an
    ``nbllm.Failed`` value and the summary says why. At most ``concurrency`` requests are in
    flight, paced to ``rpm``/``tpm`` (default: the provider's documented limits; 0 turns one off).
    A row answered before comes from the exchange log (``cache="on"``, the default, so a rerun
    resumes); ``cache="off"`` asks every row again.
    """
    from nbllm.batch.table import run_map

    return run_map(prompt, rows, provider, model, system, concurrency, rpm, tpm, progress, params)


def imap(prompt: str, rows: Any, provider: str | None = None, *, model: str | None = None,
         system: str | None = None, concurrency: int = 8, rpm: float | None = None, tpm: float | None = None,
         **params: Any) -> Iterator[tuple[Any, Any]]:
    """Like ``map`` but yields ``(row key, answer)`` as rows finish, reading rows only as needed."""
    from nbllm.batch.table import run_imap

    return run_imap(prompt, rows, provider, model, system, concurrency, rpm, tpm, params)


def embed(texts: str | Sequence[str], provider: str | None = None, model: str | None = None, *,
          batch_size: int | None = None, concurrency: int = 4, **params: Any) -> Any:
    """One vector per text, in order (a numpy array when numpy is installed; one vector for a string).

    ``model`` defaults to the provider's embedding model in the catalogue; texts are sent in
    requests of the provider's documented size.
    """
    from nbllm.batch.embed import run_embed

    return run_embed(texts, provider, model, batch_size, concurrency, params)


def __getattr__(name: str) -> Any:
    if name == "Failed":  # the slot value of a row without an answer; imported only when asked for
        from nbllm.batch.outcome import Failed

        return Failed
    raise AttributeError(f"module 'nbllm' has no attribute {name!r}")


def set_key(provider: str, key: str) -> None:
    """Use this key for a provider in this Python session only; it is never written anywhere."""
    from nbllm.errors import NbllmError
    from nbllm.keys import set_key as _set_key

    try:
        _set_key(provider, key)
    except NbllmError:
        del key  # a refused key stays out of the traceback's frames (%xmode Verbose prints them)
        raise


def redirect(target: str, models: list[str] | dict[str, str] | None = None) -> Redirect | None:
    """Send this process's OpenAI SDK traffic to a provider: ``redirect("ernie")``, ``"qwen:qwen-max"``.

    Clients made before and after, the module-level client and libraries on the SDK follow it;
    ``models`` overrides the model map (``{"gpt-4o": "ernie-4.5-turbo-128k"}`` or ``["OLD=NEW"]``).
    ``redirect("off")`` ends it; so does leaving ``with nbllm.redirect("ernie"):``.
    """
    if target.strip().lower() == "off":
        _redirect_module.stop()
        return None
    return _redirect_module.redirect(target, models)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbllm``: register the ``llm`` line and cell magic."""
    from nbllm.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from nbllm.magics import unload_ipython_extension as _unload

    _unload(ipython)
