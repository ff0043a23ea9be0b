"""Run a GGUF model in-process with llama-cpp-python: no server, no key, no network.

This is the self-reliant way to use an open model (Qwen, DeepSeek distills, ... from ModelScope).
The model file is the spec's ``model_path``: ``NBLLM_LOCAL_MODEL``, or ``model_path`` under
``[providers.local]`` in the config file (``base_url`` there, the older spelling, still works), or a
``.gguf`` path given as the model name; the chat template is the one in the GGUF.
``extra_body`` keys that ``Llama()`` takes (``n_ctx``, ``n_gpu_layers``, ...) are used when
loading, the others are default sampling options. A loaded model is kept per path and used by one call at a time.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nbllm.errors import BadRequestError, ConfigError, ServerError
from nbllm.messages import ChatRequest, Delta, Usage
from nbllm.providers.base import Provider
from nbllm.providers.streams import sendable

DEFAULT_N_CTX = 4096
_LOAD_OPTIONS = {"n_ctx", "n_gpu_layers", "n_threads", "n_batch", "seed", "chat_format", "flash_attn",
                 "use_mmap", "use_mlock", "main_gpu", "rope_freq_base", "verbose"}
_SAMPLING = {"temperature", "top_p", "top_k", "min_p", "typical_p", "max_tokens", "stop", "seed",
             "presence_penalty", "frequency_penalty", "repeat_penalty", "response_format", "logit_bias"}
_ALIASES = {"max_completion_tokens": "max_tokens", "repetition_penalty": "repeat_penalty"}

_loaded: dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[Any, threading.Lock]] = {}
_loading = threading.Lock()


def _llama_class() -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ConfigError(
            "The local provider runs GGUF models in-process with llama-cpp-python, which is not installed. "
            "Install it with pip install 'nbllm[local]' (it compiles llama.cpp, which takes a few minutes), "
            "or use a model server instead (-p ollama or -p llamacpp)."
        ) from exc
    return Llama


def load_model(path: Path, options: dict[str, Any]) -> tuple[Any, threading.Lock]:
    """The Llama for a file, loaded once per path and options, with the lock that serialises its use."""
    key = (str(path), tuple(sorted(options.items())))
    with _loading:
        if key not in _loaded:
            llama = _llama_class()
            settings = {"n_ctx": DEFAULT_N_CTX, "verbose": False, **options}
            try:
                model = llama(model_path=str(path), **settings)
            except (ValueError, RuntimeError, OSError) as exc:
                raise ConfigError(
                    f"llama-cpp-python could not load {path} ({exc}). Check that it is a complete GGUF file "
                    "(re-download it) and that this llama-cpp-python version supports its architecture."
                ) from exc
            if not _loaded:
                # Free models before interpreter shutdown tears down llama_cpp's module globals
                # (registering again after an unload is harmless: unloading twice frees nothing).
                atexit.unregister(unload_models)
                atexit.register(unload_models)
            _loaded[key] = (model, threading.Lock())
        return _loaded[key]


def unload_models() -> None:
    """Free every loaded model, each once no call is using it."""
    with _loading:
        models = list(_loaded.values())
        _loaded.clear()
    for model, lock in models:
        with lock:
            model.close()


class _TokenCounter:
    """A logits processor that only counts: prompt length at the first token, then one per token."""

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None
        self.completion_tokens = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        self.completion_tokens += 1
        return scores

    def usage(self) -> Usage:
        prompt = self.prompt_tokens or 0
        return Usage(prompt, self.completion_tokens, prompt + self.completion_tokens)


class LocalProvider(Provider):
    """A GGUF model run by llama-cpp-python inside this Python process."""

    def model_path(self, model: str = "") -> Path:
        """The GGUF file: a ``.gguf`` model name, else the configured path."""
        chosen = model if model.lower().endswith(".gguf") else self.spec.model_path
        if not chosen.strip():
            raise ConfigError(
                "The local provider needs a GGUF model file: set NBLLM_LOCAL_MODEL=/path/to/model.gguf, or put "
                "model_path = \"/path/to/model.gguf\" under [providers.local] in the nbllm config file "
                "(nbllm providers shows where it is). GGUF files of Qwen, DeepSeek distills and others can be "
                "downloaded from ModelScope or Hugging Face."
            )
        path = Path(chosen.strip()).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"The local model file {path} does not exist. Set NBLLM_LOCAL_MODEL (or model_path under "
                "[providers.local] in the nbllm config file) to the path of a downloaded .gguf file."
            )
        return path

    def models(self, timeout: float | None = None) -> list[str]:
        configured = self.spec.model_path.strip()
        return [Path(configured).name] if configured else list(self.spec.models)

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        path = self.model_path(request.model)
        load = {k: v for k, v in self.spec.extra_body.items() if k in _LOAD_OPTIONS}
        defaults = {k: v for k, v in self.spec.extra_body.items() if k not in _LOAD_OPTIONS}
        kwargs = self._sampling({**defaults, **request.params})
        model, lock = load_model(path, load)
        counter = _TokenCounter()
        with lock:
            try:
                chunks = model.create_chat_completion(messages=[dict(m) for m in request.messages], stream=True,
                                                      logits_processor=[counter], **kwargs)
                yield from self._deltas(chunks, counter)
            except ValueError as exc:  # e.g. "Requested tokens (5000) exceed context window of 4096"
                raise BadRequestError(
                    f"The local model {path.name} refused the request: {exc}. Shorten the prompt or history "
                    "(%llm reset), lower max_tokens, or load it with a larger n_ctx (extra_body under "
                    "[providers.local]).", provider=self.spec.id,
                ) from exc
            except RuntimeError as exc:
                raise ServerError(f"The local model {path.name} failed while generating: {exc}.",
                                  provider=self.spec.id) from exc

    def _sampling(self, params: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        unknown = []
        for name, value in sendable(params).items():
            name = _ALIASES.get(name, name)
            if name in _SAMPLING:
                kwargs[name] = value
            else:
                unknown.append(name)
        if unknown:
            raise BadRequestError(
                f"The local provider does not know the option(s) {', '.join(sorted(unknown))}; it takes "
                f"{', '.join(sorted(_SAMPLING))}.", provider=self.spec.id,
            )
        return kwargs

    @staticmethod
    def _deltas(chunks: Iterator[dict[str, Any]], counter: _TokenCounter) -> Iterator[Delta]:
        for chunk in chunks:
            choice = (chunk.get("choices") or [{}])[0]
            text = str((choice.get("delta") or {}).get("content") or "")
            finish = choice.get("finish_reason")
            if finish:
                yield Delta(text=text, finish_reason=str(finish), usage=counter.usage())
                return
            if text:
                yield Delta(text=text)
