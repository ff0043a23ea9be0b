"""``nbllm.embed``: one vector per text, in order, in as few requests as the provider allows.

Texts are cut into requests of the provider's documented size (``embeddings.batch_size``) and
sent a few at a time through the provider's limiter (requests a minute only: embeddings are
cheap in tokens). A failed request fails the call: a matrix with holes in it is no use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from nbllm.batch import embeddings
from nbllm.batch.limiter import limiter_for
from nbllm.batch.options import check_batch
from nbllm.batch.outcome import Failed
from nbllm.batch.runner import in_thread, run_bounded
from nbllm.errors import ConfigError


def run_embed(texts: str | Sequence[str], provider: str | None, model: str | None, batch_size: int | None,
              concurrency: int, params: dict[str, Any]) -> Any:
    """Vectors for ``texts`` (one vector for a single string): a numpy array when numpy is installed."""
    from nbllm.config import split_target
    from nbllm.session import default_session

    check_batch("nbllm.embed", concurrency, batch_size=batch_size)
    single = isinstance(texts, str)
    if not single and not isinstance(texts, Iterable):
        raise ConfigError(f"nbllm.embed takes a text or a list of texts, not {type(texts).__name__}. Nothing was sent.")
    items = [texts] if single else list(texts)  # type: ignore[list-item]
    _check_texts(items)
    session = default_session()
    named_model = split_target(provider)[1] if provider else None
    timeout = params.pop("timeout", None)
    chosen, _ = session.resolve(provider, None)
    spec = chosen.spec
    embeddings.wire(spec)  # a provider with no embeddings protocol says so before any advice on models
    model_name = embeddings.embedding_model(spec, model or named_model)
    size = embeddings.batch_size(spec, batch_size)
    limiter = limiter_for(spec.id, spec.base_url + "#embeddings", spec.rpm, None)
    found: list[list[float] | None] = [None] * len(items)

    async def one(batch: tuple[int, Sequence[str]]) -> tuple[int, list[list[float]]]:
        offset, chunk = batch
        path, body = embeddings.request(spec, model_name, chunk, params)
        answer = await chosen.arequest_json("POST", path, json=body, timeout=timeout, gate=limiter)
        return offset, embeddings.vectors(spec, answer, len(chunk))

    async def requests() -> AsyncIterator[tuple[int, Any]]:
        try:
            async for outcome in run_bounded(embeddings.batches(items, size), one, concurrency):
                yield outcome
        finally:
            await chosen.aclose()

    for _, outcome in in_thread(requests):
        if isinstance(outcome, Failed):
            raise outcome.error or RuntimeError(outcome.message)
        offset, vectors = outcome
        found[offset : offset + len(vectors)] = vectors
    return _shape(found, single)


def _check_texts(items: list[Any]) -> None:
    """Every item a text with something in it, before anything is sent: OpenAI-compatible APIs refuse
    a whole request over one empty string ("'$.input' is invalid"), and a missing value (None, NaN)
    turned into the text "None" or "nan" would get a vector that means nothing."""
    bad = [i for i, t in enumerate(items) if not isinstance(t, str) or not t.strip()]
    if not bad:
        return
    first = items[bad[0]]
    what = "empty (or only spaces)" if isinstance(first, str) else f"{type(first).__name__} {first!r}, not a text"
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise ConfigError(f"nbllm.embed: text {bad[0]} is {what}{more}; providers refuse empty texts and a missing "
                      "value has no meaning to embed. Drop or fill them first (e.g. df['text'].dropna(), then "
                      "skip blank ones). Nothing was sent.")


def _shape(found: list[Any], single: bool) -> Any:
    try:
        import numpy as np
    except ImportError:
        return found[0] if single else found
    matrix = np.asarray(found, dtype=np.float32) if found else np.zeros((0, 0), dtype=np.float32)
    return matrix[0] if single else matrix
