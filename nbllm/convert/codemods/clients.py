"""Point SDK clients at the provider: ``OpenAI(...)`` gets ``base_url`` and the provider's key.

Covers ``OpenAI``, ``openai.OpenAI``, ``AsyncOpenAI`` and the Azure clients (turned into the
plain client), wherever they are built. A client already pointed at another endpoint is left
alone (that is also what makes a second run a no-op).
"""

from __future__ import annotations

import re

import libcst as cst

from nbllm.convert.codemods.base import (
    NbllmCommand,
    append_args,
    assigned_attr,
    collect,
    dotted,
    insert_after,
    is_openai_url,
    keyword_arg,
    kwarg,
    module_binds_openai,
    replace_arg,
    string_value,
    top_level_import,
)

# A client built only to reach these (``openai.OpenAI().moderations``) stays on OpenAI: the
# v0 migration writes them for calls the target has no equivalent of
# (docs/converter.md#calls-the-provider-cannot-serve).
OPENAI_ONLY_RESOURCES = ("moderations", "images", "audio", "files", "fine_tuning")
AZURE_ONLY = ("azure_endpoint", "azure_deployment", "api_version", "azure_ad_token", "azure_ad_token_provider")
BASE_URL_ENVS = ("OPENAI_BASE_URL", "OPENAI_API_BASE")


class ClientArgs(NbllmCommand):
    DESCRIPTION = "Give every OpenAI SDK client the provider's base_url and api_key."
    TRIGGER = re.compile(r"OpenAI\b")
    # Client constructors and ``from openai import`` lines; ModuleClient rewrites only the module
    # client's settings (``openai.base_url``) and reads nothing ClientArgs writes.
    SHARES_WALK_WITH_NEXT = True

    def __init__(self, context: cst.codemod.CodemodContext) -> None:
        super().__init__(context)
        self.global_key = False  # the notebook sets openai.api_key at top level: clients get it
        self.openai_only: set[cst.Call] = set()

    def visit_Module(self, node: cst.Module) -> None:
        # KEY = "..." at top level, once: a client given api_key=KEY gets the target's key instead
        # (the user would paste an OpenAI key there, which must not reach the target).
        bound: dict[str, list[cst.BaseExpression]] = {}
        for assign in collect(node, cst.Assign):
            for t in assign.targets:
                if isinstance(t.target, cst.Name):
                    bound.setdefault(t.target.value, []).append(assign.value)
        self.literal_names = {name for name, values in bound.items()
                              if len(values) == 1 and isinstance(values[0], (cst.SimpleString, cst.ConcatenatedString))}
        for stmt in node.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign) and any(
                        dotted(t.target) == "openai.api_key" for t in small.targets
                    ):
                        self.global_key = True

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if isinstance(node.value, cst.Call) and node.attr.value in OPENAI_ONLY_RESOURCES:
            self.openai_only.add(node.value)

    def visit_Assign(self, node: cst.Assign) -> None:
        if isinstance(node.value, cst.Call) and "Azure" in (dotted(node.value.func) or "") \
                and self.client_class(node.value):
            self.scratch.azure_clients.update(d for t in node.targets if (d := dotted(t.target)))

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        """``from openai import AzureOpenAI`` -> ``OpenAI`` (the calls are renamed below)."""
        module = dotted(original_node.module) if original_node.module else None
        if module != "openai" or isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        plain = {a.name.value for a in updated_node.names if isinstance(a.name, cst.Name)}
        names: list[cst.ImportAlias] = []
        for alias in updated_node.names:
            old = alias.name.value if isinstance(alias.name, cst.Name) else ""
            new = {"AzureOpenAI": "OpenAI", "AsyncAzureOpenAI": "AsyncOpenAI"}.get(old)
            if new is None or alias.asname is not None:
                names.append(alias)
            elif new not in plain:
                plain.add(new)
                names.append(alias.with_changes(name=cst.Name(new)))
        if len(names) == len(updated_node.names) and all(a is b for a, b in zip(names, updated_node.names, strict=True)):
            return updated_node
        names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        self.note(original_node, "azure", "Azure client import -> the plain client")
        return updated_node.with_changes(names=names)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        cls = self.client_class(original_node)
        if cls is None or original_node in self.openai_only:
            return updated_node
        if any(a.star == "**" for a in original_node.args):
            self.flag(original_node, "client-kwargs", f"{cls}(**...) left alone: add base_url and api_key by hand")
            return updated_node
        call, azure = self._drop_azure(original_node, updated_node, cls)
        call = self._base_url(original_node, call, azure)
        if call is None:
            return updated_node
        return self._api_key(original_node, call, azure)

    def _drop_azure(self, original: cst.Call, call: cst.Call, cls: str) -> tuple[cst.Call, bool]:
        name = dotted(original.func) or ""
        if "Azure" not in name:
            return call, False
        if kwarg(original, "azure_ad_token_provider", "azure_ad_token"):
            self.flag(original, "azure-ad", "Azure AD token provider removed: the provider needs its API key instead")
        args = [a for a in call.args if not (a.keyword and a.keyword.value in AZURE_ONLY)]
        if args:
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        func = call.func
        if isinstance(func, cst.Name):
            func = func.with_changes(value=cls)
        elif isinstance(func, cst.Attribute):
            func = func.with_changes(attr=cst.Name(cls))
        self.note(original, "azure", f"{name} -> {cls} (Azure settings removed)")
        return call.with_changes(func=func, args=args), True

    def _base_url(self, original: cst.Call, call: cst.Call, azure: bool) -> cst.Call | None:
        arg = kwarg(original, "base_url")
        url = self.target.spec.base_url
        if arg is None:
            self.note(original, "client", f"client now calls {url}")
            return append_args(call, [keyword_arg("base_url", self.url_expr())])
        value = string_value(arg.value)
        if value == url:
            return call if azure else None
        code = cst.Module([]).code_for_node(arg.value)
        if (value is not None and is_openai_url(value)) or any(env in code for env in BASE_URL_ENVS):
            self.note(original, "client", f"base_url -> {url}")
            return replace_arg(call, "base_url", self.url_expr())
        self.flag(original, "foreign-client", f"client already points at {value or code}; left alone")
        return None

    def _api_key(self, original: cst.Call, call: cst.Call, azure: bool) -> cst.Call:
        arg = kwarg(original, "api_key")
        if arg is not None and azure:
            self.flag(original, "azure", f"the Azure key is not sent to {self.target.spec.id}; the key is read "
                      f"from {self.target.key_env}")
            return replace_arg(call, "api_key", self.key_expr())
        if arg is None:
            if self.global_key:
                value: cst.BaseExpression = cst.parse_expression("openai.api_key")
            else:
                value = self.key_expr()
            return append_args(call, [keyword_arg("api_key", value)])
        secret = self.secret_literal(arg.value)
        if secret:
            self.flag(original, "hardcoded-key", f"hard-coded key {secret} removed; the key is read from "
                      f"{self.target.key_env}")
        if isinstance(arg.value, (cst.SimpleString, cst.ConcatenatedString)):
            return replace_arg(call, "api_key", self.key_expr())
        if isinstance(arg.value, cst.Name) and arg.value.value in self.literal_names:
            self.flag(original, "hardcoded-key", f"api_key={arg.value.value} held a literal (an OpenAI key or a "
                      f"placeholder); the key is read from {self.target.key_env} instead")
            return replace_arg(call, "api_key", self.key_expr())
        return call


V1_MODULE_RESOURCES = ("chat", "completions", "embeddings", "models", "responses")


class ModuleClient(NbllmCommand):
    DESCRIPTION = "Point openai's module-level v1 client (openai.chat.completions.create) at the provider."
    TRIGGER = re.compile(r"\bopenai\.(?:chat|completions|embeddings|models|responses)\b")

    def __init__(self, context: cst.codemod.CodemodContext) -> None:
        super().__init__(context)
        self.used = False

    def visit_Module(self, node: cst.Module) -> None:
        for call in collect(node, cst.Call):
            parts = (dotted(call.func) or "").split(".")
            if len(parts) > 2 and parts[0] == "openai" and parts[1] in V1_MODULE_RESOURCES:
                self.used = self.used or any(q.startswith("openai.") for q in self.qnames(call.func))

    def _slashed(self) -> cst.SimpleString:
        """The base URL with a final slash: the module client joins it and the route as they are
        (``.../v2`` + ``chat/completions``), unlike ``OpenAI(base_url=...)``, which adds one
        (docs/converter.md#module-level-client)."""
        url = self.target.spec.base_url
        return cst.SimpleString(repr(url if url.endswith("/") else url + "/").replace("'", '"'))

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        if not self.used or len(original_node.targets) != 1:
            return updated_node
        name = dotted(original_node.targets[0].target)
        value = string_value(original_node.value)
        if name == "openai.base_url" and value is not None and is_openai_url(value):
            self.note(original_node, "client", f"openai.base_url -> {self.target.spec.base_url}")
            return updated_node.with_changes(value=self._slashed())
        return updated_node

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if not self.used:
            return updated_node
        body = list(updated_node.body)
        names = {found[0] for stmt in body if (found := assigned_attr(stmt))}
        at = top_level_import(body)
        if at is None or "openai.base_url" in names or not module_binds_openai(updated_node):
            return updated_node
        code = f"openai.base_url = {self._slashed().value}\n"
        if "openai.api_key" not in names:
            code += f"openai.api_key = {cst.Module([]).code_for_node(self.key_expr())}\n"
        self.note(original_node.body[at], "client", f"module-level client now calls {self.target.spec.base_url}")
        return updated_node.with_changes(body=insert_after(body, at, code))
