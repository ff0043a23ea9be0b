"""The embeddings wire of each provider family, and texts cut into requests it accepts.

Three shapes (sources: docs/batch.md#embeddings-limits): OpenAI-compatible ``POST embeddings`` with
``input`` a list (Qianfan v2, DashScope, GLM, SiliconFlow, Ark, vLLM, llama.cpp, OpenAI), whose
answer lists ``data`` items with an ``index``; Ollama's own ``POST /api/embed`` answering
``embeddings``; and Hugging Face's router, whose feature-extraction pipeline takes ``inputs`` and
answers a bare list of vectors. The catalogue's ``embed_batch`` is how many texts one request
may carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from nbllm.errors import ConfigError
from nbllm.providers.catalog import ProviderSpec
from nbllm.providers.errormap import make_error

HF_ROUTER = "router.huggingface.co"


def wire(spec: ProviderSpec) -> str:
    """Which embeddings protocol a provider speaks: "openai", "ollama" or "hf"."""
    if spec.dialect == "ollama":
        return "ollama"
    if spec.id == "hf" or urlsplit(spec.base_url).hostname == HF_ROUTER:
        return "hf"
    if spec.dialect == "openai":
        return "openai"
    raise ConfigError(f"{spec.label} ({spec.id}) serves no embeddings nbllm can call; use one of the providers "
                      "docs/batch.md lists (ernie, qwen, glm, siliconflow, doubao, ollama, vllm, llamacpp, hf, openai).",
                      provider=spec.id)


def embedding_model(spec: ProviderSpec, model: str | None) -> str:
    """The model asked for, else the catalogue's embedding tier; a provider without one must be told."""
    chosen = model or spec.tiers.get("embedding")
    if not chosen and not spec.embed_batch:
        raise ConfigError(f"{spec.label} ({spec.id}) serves no embeddings nbllm knows of; use one of the providers "
                          "docs/batch.md lists, or pass model=... if this server has an embeddings endpoint.",
                          provider=spec.id)
    if not chosen:
        raise ConfigError(f"{spec.label} ({spec.id}) has no default embedding model in nbllm's catalogue; pass "
                          "model=... (an embedding model the provider serves).", provider=spec.id)
    return chosen


def batch_size(spec: ProviderSpec, asked: int | None) -> int:
    """Texts per request: the caller's choice, capped by the provider's documented limit."""
    limit = spec.embed_batch or 16  # a config-file provider without the field: a size every API we know accepts
    return max(1, min(asked or limit, limit))


def batches(texts: Sequence[str], size: int) -> Iterator[tuple[int, Sequence[str]]]:
    """``(offset, texts)`` slices of at most ``size`` texts, in order."""
    for start in range(0, len(texts), size):
        yield start, texts[start : start + size]


def request(spec: ProviderSpec, model: str, texts: Sequence[str], params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The path (relative to the base URL, or absolute) and JSON body of one embeddings request."""
    kind = wire(spec)
    if kind == "ollama":
        return "api/embed", {"model": model, "input": list(texts), **params}
    if kind == "hf":
        root = spec.base_url.rstrip("/").removesuffix("/v1")
        return f"{root}/hf-inference/models/{model}/pipeline/feature-extraction", {"inputs": list(texts), **params}
    return "embeddings", {**spec.extra_body, **params, "model": model, "input": list(texts)}


def vectors(spec: ProviderSpec, body: Any, count: int) -> list[list[float]]:
    """The vectors of one answer, in the order the texts were sent; anything else (a wrong count,
    indexes that are not 0..n-1, vectors of different lengths, a value that is no finite number)
    is a clear error: a matrix with a wrong row in it is worse than none."""
    kind = wire(spec)
    problem = None
    if kind == "ollama":
        found = body.get("embeddings") if isinstance(body, dict) else None
    elif kind == "hf":
        found = body
    else:
        found, problem = _ordered(body.get("data") if isinstance(body, dict) else None, count)
    if problem is None:
        problem = _shape_problem(found, count)
    if problem is not None:
        raise make_error(spec, None, f"an embeddings answer with {count} vectors was expected, got {problem}: "
                                     f"{str(body)[:200]}")
    return found  # type: ignore[return-value]


def _ordered(data: Any, count: int) -> tuple[Any, str | None]:
    """OpenAI-style ``data`` items sorted by ``index``; the indexes must be exactly 0..count-1."""
    if not isinstance(data, list) or not all(isinstance(d, dict) and "embedding" in d for d in data):
        return None, "no data list of embeddings"
    indexes = [d.get("index") for d in data]
    if all(i is None for i in indexes):
        return [d["embedding"] for d in data], None  # no indexes at all: the order they came in
    if not all(type(i) is int for i in indexes) or sorted(indexes) != list(range(len(data))):
        return None, f"indexes {indexes[:10]} instead of 0..{count - 1}"
    return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])], None


def _shape_problem(found: Any, count: int) -> str | None:
    if not isinstance(found, list) or len(found) != count:
        return f"{len(found) if isinstance(found, list) else 'no'} vectors"
    if not all(isinstance(v, list) and v for v in found):
        return "an item that is not a list of numbers"
    if len({len(v) for v in found}) > 1:
        return f"vectors of different lengths ({', '.join(sorted({str(len(v)) for v in found}))})"
    for v in found:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
            return "a value that is not a finite number"
    return None
