"""Things the provider may not do: reported with cell and line, code left as it is.

Responses API, files/fine-tuning/batches/assistants/images/audio/moderation/evals, structured
output, legacy ``functions=``, hard-coded embedding sizes and ``openai.embeddings_utils``.
"""

from __future__ import annotations

import re

import libcst as cst

from nbllm.convert.codemods.base import ApiCalls, NbllmCommand, chain_root, dotted, kwarg, string_value

NO_EQUIVALENT = ("files", "fine_tuning", "batches", "beta.assistants", "beta.threads", "beta.vector_stores",
                 "vector_stores", "images", "audio", "moderations", "evals", "uploads", "containers")
EMBEDDING_SIZES = ("1536", "3072")


class Flags(NbllmCommand):
    DESCRIPTION = "Warn about OpenAI features the provider may lack; change nothing."
    TRIGGER = re.compile(r"responses|images|files|fine_tuning|batches|assistants|threads|audio|moderations|evals|"
                         r"uploads|vector_stores|containers|response_format|function|dimensions|1536|3072|"
                         r"embeddings_utils|\.parse|azure")
    SHARES_WALK_WITH_NEXT = True  # it only reads the code as written and changes nothing

    def visit_Module(self, node: cst.Module) -> None:
        self.api = ApiCalls(self, node)
        self.embeds = False

    def visit_Call(self, node: cst.Call) -> None:
        pid = self.target.spec.id
        kind = self.api.kind(node)
        if kind == "responses.create":
            self.flag(node, "responses-api", f"Responses API (responses.create) is not served by {pid}; "
                      "left unchanged, rewrite it with chat.completions.create")
        elif kind in ("chat.completions.parse", "beta.chat.completions.parse"):
            self.flag(node, "structured-output", f"{kind} needs json_schema support at {pid}; check it")
        if kind is None:
            self._no_equivalent(node)
            return
        self.embeds = self.embeds or "mbedding" in kind
        fmt = kwarg(node, "response_format")
        if fmt is not None:
            code = cst.Module([]).code_for_node(fmt.value)
            which = "json_schema" if "json_schema" in code else "json_object" if "json_object" in code else "a format"
            self.flag(node, "structured-output", f"response_format {which}: check that {pid} supports it")
        if kwarg(node, "functions", "function_call"):
            self.flag(node, "functions", "legacy functions=/function_call=: use tools=/tool_choice= "
                      f"(kept; many providers, {pid} included, may only support tools)")
        if kwarg(node, "dimensions"):
            self.flag(node, "embedding-size", f"dimensions= is OpenAI-specific; {pid}'s embedding model may "
                      "ignore or reject it")

    def _no_equivalent(self, node: cst.Call) -> None:
        root, path = chain_root(node.func)
        base = dotted(root)
        for area in NO_EQUIVALENT:
            at = f".{path}".find(f".{area}.")
            if base is None or at < 0:
                continue
            head = path[: max(at - 1, 0)]
            owner = f"{base}.{head}" if head else base
            module_level = any(q.startswith(f"openai.{area}.") for q in self.qnames(node.func))
            if owner in self.api.clients or module_level:
                self.flag(node, "no-equivalent", f"{area.replace('beta.', '')} has no equivalent at "
                          f"{self.target.spec.id}; left unchanged")
                return

    def visit_Integer(self, node: cst.Integer) -> None:
        if node.value in EMBEDDING_SIZES:
            self.flag(node, "embedding-size", f"hard-coded embedding size {node.value}: the "
                      f"{self.target.spec.id} embedding model may have another dimension")

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.module is not None and (dotted(node.module) or "").startswith("openai.embeddings_utils"):
            self.flag(node, "embeddings-utils", "openai.embeddings_utils is gone in openai>=1: copy the helpers "
                      "you need (cosine_similarity, get_embedding) into the notebook")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if dotted(node) == "openai.embeddings_utils" and "openai.embeddings_utils" in self.qnames(node):
            self.flag(node, "embeddings-utils", "openai.embeddings_utils is gone in openai>=1")

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        value = string_value(node) or ""
        if value.startswith("https://") and ".openai.azure.com" in value:
            self.flag(node, "azure", "an Azure OpenAI endpoint is still named here; check it")
