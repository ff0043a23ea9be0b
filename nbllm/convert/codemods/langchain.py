"""Point LangChain's OpenAI classes at the provider (they are not the SDK class; resolved by import).

``ChatOpenAI`` / ``OpenAI`` / ``OpenAIEmbeddings`` get the base URL and key (``base_url``/``api_key``
for ``langchain_openai``, ``openai_api_base``/``openai_api_key`` for the old ``langchain``
packages) and an explicit model where they relied on an OpenAI default. Embeddings also get
``check_embedding_ctx_length=False``: otherwise LangChain sends token ids, which compatible
providers reject. llama_index's ``OpenAI`` is reported, not touched.
"""

from __future__ import annotations

import re

import libcst as cst

from nbllm.convert.codemods.base import (
    LANGCHAIN,
    NbllmCommand,
    append_args,
    is_openai_url,
    keyword_arg,
    kwarg,
    replace_arg,
    string_value,
)

DEFAULT_MODELS = {"ChatOpenAI": "gpt-3.5-turbo", "OpenAI": "gpt-3.5-turbo-instruct",
                  "OpenAIEmbeddings": "text-embedding-ada-002"}


class LangChainArgs(NbllmCommand):
    DESCRIPTION = "Point LangChain ChatOpenAI/OpenAI/OpenAIEmbeddings at the provider."
    TRIGGER = re.compile(r"langchain|llama_index")

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        names = self.qnames(original_node.func)
        match = next((q for q in names if LANGCHAIN.match(q)), None)
        if match is None:
            if any(q.startswith("llama_index") and q.endswith((".OpenAI", ".OpenAIEmbedding")) for q in names):
                self.flag(original_node, "llama-index", "llama_index OpenAI class left alone: use OpenAILike("
                          f"api_base={self.target.spec.base_url!r}, ...) for {self.target.spec.id}")
            return updated_node
        cls = match.rsplit(".", 1)[1]
        if cls.startswith("Azure"):
            self.flag(original_node, "azure", f"LangChain {cls} left alone: use the non-Azure class with base_url")
            return updated_node
        new_pkg = match.startswith("langchain_openai")
        url_kw, key_kw = ("base_url", "api_key") if new_pkg else ("openai_api_base", "openai_api_key")
        call = self._url(original_node, updated_node, url_kw)
        if call is None:
            return updated_node
        call = self._key(original_node, call, key_kw)
        return self._model(original_node, call, cls)

    def _url(self, original: cst.Call, call: cst.Call, url_kw: str) -> cst.Call | None:
        arg = kwarg(original, "base_url", "openai_api_base")
        if arg is None:
            self.note(original, "langchain", f"LangChain now calls {self.target.spec.base_url}")
            return append_args(call, [keyword_arg(url_kw, self.url_expr())])
        value = string_value(arg.value)
        if value == self.target.spec.base_url:
            return None
        if value is not None and is_openai_url(value):
            self.note(original, "langchain", f"{arg.keyword.value if arg.keyword else url_kw} -> "
                      f"{self.target.spec.base_url}")
            return replace_arg(call, arg.keyword.value if arg.keyword else url_kw, self.url_expr())
        self.flag(original, "foreign-client", f"LangChain model already points at {value or 'a custom URL'}; "
                  "left alone")
        return None

    def _key(self, original: cst.Call, call: cst.Call, key_kw: str) -> cst.Call:
        arg = kwarg(original, "api_key", "openai_api_key")
        if arg is None:
            return append_args(call, [keyword_arg(key_kw, self.key_expr())])
        if isinstance(arg.value, cst.SimpleString) and arg.keyword:
            secret = self.secret_literal(arg.value)
            if secret:
                self.flag(original, "hardcoded-key", f"hard-coded key {secret} removed; the key is read from "
                          f"{self.target.key_env}")
            return replace_arg(call, arg.keyword.value, self.key_expr())
        return call

    def _model(self, original: cst.Call, call: cst.Call, cls: str) -> cst.Call:
        if cls == "OpenAIEmbeddings" and kwarg(original, "check_embedding_ctx_length") is None:
            call = append_args(call, [keyword_arg("check_embedding_ctx_length", cst.Name("False"))])
        if kwarg(original, "model", "model_name") is not None or cls not in DEFAULT_MODELS:
            return call
        mapping = self.target.models.lookup(DEFAULT_MODELS[cls])
        if mapping is None or mapping.new == DEFAULT_MODELS[cls]:
            return call
        self.note(original, "model", f"{cls} default {DEFAULT_MODELS[cls]} -> {mapping.new} ({mapping.tier})")
        return append_args(call, [keyword_arg("model", cst.SimpleString(f'"{mapping.new}"'))])
