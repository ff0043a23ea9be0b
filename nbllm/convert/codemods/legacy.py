"""Old ``openai<1`` code: migrate it to the v1 client (as ``openai migrate`` does), or retarget it.

Migration: ``openai.ChatCompletion.create`` -> ``client.chat.completions.create`` (``acreate`` ->
an ``AsyncOpenAI`` client), ``engine=``/``deployment_id=`` -> ``model=``, a client built where the
key was set (or just before the first call), module config moved into the constructor, and
``openai.error.X`` renamed. With ``--keep-v0`` the code stays v0 and only ``openai.api_base`` and
the key are pointed at the provider.
"""

from __future__ import annotations

import re

import libcst as cst
from libcst.metadata import ScopeProvider

from nbllm.convert.codemods.base import (
    V0_RESOURCES,
    NbllmCommand,
    assigned_attr,
    collect,
    dotted,
    module_binds_openai,
    string_value,
    top_level_import,
)

ERRORS = {"OpenAIError": "OpenAIError", "APIError": "APIError", "Timeout": "APITimeoutError",
          "APIConnectionError": "APIConnectionError", "InvalidRequestError": "BadRequestError",
          "AuthenticationError": "AuthenticationError", "PermissionError": "PermissionDeniedError",
          "RateLimitError": "RateLimitError", "ServiceUnavailableError": "InternalServerError"}
# v0 exported its error classes at the top level too (``openai.InvalidRequestError``).
TOP_LEVEL_ERRORS = {old: new for old, new in ERRORS.items() if old != new}
# v0 calls the target cannot serve: moved to v1 syntax on a client that still calls OpenAI.
OPENAI_ONLY = {("Moderation", "create"): "moderations.create", ("Image", "create"): "images.generate",
               ("Image", "create_edit"): "images.edit", ("Image", "create_variation"): "images.create_variation",
               ("Audio", "transcribe"): "audio.transcriptions.create",
               ("Audio", "translate"): "audio.translations.create",
               ("File", "create"): "files.create", ("File", "list"): "files.list",
               ("File", "retrieve"): "files.retrieve", ("File", "delete"): "files.delete",
               ("File", "download"): "files.content",
               ("FineTuningJob", "create"): "fine_tuning.jobs.create",
               ("FineTuningJob", "retrieve"): "fine_tuning.jobs.retrieve",
               ("FineTuningJob", "list"): "fine_tuning.jobs.list",
               ("FineTuningJob", "cancel"): "fine_tuning.jobs.cancel",
               ("FineTuningJob", "list_events"): "fine_tuning.jobs.list_events"}
POSITIONAL = {"Audio": ("model", "file")}  # v0 took these positionally; v1 wants keywords
OPENAI_ONLY_COMMENT = "# nbllm: still calls OpenAI"
CONFIG = ("openai.api_base", "openai.api_type", "openai.api_version", "openai.organization",
          "openai.api_key_path", "openai.proxy", "openai.api_key")
NO_EQUIVALENT = ("Image", "Moderation", "FineTune", "FineTuningJob", "File", "Audio", "Edit", "Deployment",
                 "Customer")
V0_MARKERS = tuple(f"openai.{n}" for n in (*V0_RESOURCES, *NO_EQUIVALENT, *TOP_LEVEL_ERRORS, "error", "Engine",
                                          "Model", "api_base", "api_type", "api_version", "requestssession"))
RENAMED_KW = {"engine": "model", "deployment_id": "model", "request_timeout": "timeout"}


def uses_v0(cmd: NbllmCommand, module: cst.Module) -> bool:
    """Does the module use any openai<1 API (old resources, openai.error, module config)?"""
    for node in collect(module, cst.Attribute):
        if any(q == m or q.startswith(m + ".") for q in cmd.qnames(node) for m in V0_MARKERS):
            return True
    return False


class _V0Base(NbllmCommand):
    METADATA_DEPENDENCIES = (ScopeProvider,)
    TRIGGER = re.compile(r"\b(?:ChatCompletion|Completion|Embedding|Engine|FineTune|FineTuningJob|Moderation|Image|File|"
                         r"Audio|Edit|Deployment|Customer|Model|error|api_base|api_type|api_version|requestssession|"
                         r"InvalidRequestError|Timeout|PermissionError|ServiceUnavailableError)\b")

    def __init__(self, context: cst.codemod.CodemodContext) -> None:
        super().__init__(context)
        self.active = False

    def visit_Module(self, node: cst.Module) -> None:
        self.active = uses_v0(self, node)

    def v0_call(self, call: cst.Call) -> tuple[str, str] | None:
        """("ChatCompletion", "create") for an old resource call."""
        for q in self.qnames(call.func):
            parts = q.split(".")
            if len(parts) == 3 and parts[0] == "openai":
                return parts[1], parts[2]
        return None


class LegacyMigrate(_V0Base):
    DESCRIPTION = "Migrate openai<1 module calls to the v1 client, as `openai migrate` does."

    def visit_Module(self, node: cst.Module) -> None:
        super().visit_Module(node)
        self.mark = False  # the statement being left holds a call still sent to OpenAI
        if not self.active:
            return
        calls = [c for c in collect(node, cst.Call) if (k := self.v0_call(c)) and k[0] in V0_RESOURCES]
        self.is_async = any(self.v0_call(c)[1] == "acreate" for c in calls)  # type: ignore[index]
        scope = self.get_metadata(ScopeProvider, node)
        self.client = "client" if "client" not in scope.assignments else "openai_client"
        self.aclient = "aclient" if "aclient" not in scope.assignments else "openai_aclient"
        self.first_use = next((i for i, stmt in enumerate(node.body)
                               if any(self._uses_client(c) for c in collect(stmt, cst.Call))), None)
        nested = [a for a in collect(node, cst.Assign) if any(dotted(t.target) == "openai.api_key"
                                                                 for t in a.targets)]
        self.top_keys = {i for i, stmt in enumerate(node.body) if (f := assigned_attr(stmt))
                         and f[0] == "openai.api_key"}
        self.nested_key = len(nested) > len(self.top_keys)
        self.azure = any(found[0] == "openai.api_type" and "azure" in (string_value(found[1].value) or "")
                         for stmt in node.body if (found := assigned_attr(stmt)))
        self.scratch.migrated.update({self.client, self.aclient})

    def _uses_client(self, call: cst.Call) -> bool:
        """The call becomes a call on the migrated client (not an OpenAI-only one)."""
        found = self.v0_call(call)
        return found is not None and (found[0] in V0_RESOURCES or found in (("Model", "list"), ("Engine", "list")))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        found = self.v0_call(original_node) if self.active else None
        if found is None:
            return updated_node
        resource, method = found
        if resource in ("Model", "Engine") and method == "list":
            self.note(original_node, "migrate", f"openai.{resource}.list() -> {self.client}.models.list()")
            return updated_node.with_changes(func=cst.parse_expression(f"{self.client}.models.list"))
        if (resource, method) in OPENAI_ONLY:
            return self._openai_only(original_node, updated_node, resource, method)
        if resource not in V0_RESOURCES:
            self.flag(original_node, "no-equivalent", f"openai.{resource}.{method} has no equivalent at "
                      f"{self.target.spec.id} nor in openai>=1; left unchanged")
            return updated_node
        owner = self.aclient if method == "acreate" else self.client
        func = cst.parse_expression(f"{owner}.{V0_RESOURCES[resource]}.create")
        self.note(original_node, "migrate", f"openai.{resource}.{method} -> {owner}.{V0_RESOURCES[resource]}.create")
        if resource == "Completion":
            self.flag(original_node, "completions", f"legacy completions endpoint: {self.target.spec.id} may "
                      "serve chat only; consider chat.completions")
        args = self._args(original_node, updated_node.args)
        if self.azure:
            args = self._deployment(original_node, args, "embedding" if resource == "Embedding" else "strong")
        return updated_node.with_changes(func=func, args=args)

    def _openai_only(self, original: cst.Call, updated: cst.Call, resource: str, method: str) -> cst.Call:
        """``openai.Moderation.create(...)`` -> ``openai.OpenAI().moderations.create(...)``, marked:
        v1 syntax (v0 code crashes under openai>=1) on a client that reads OPENAI_API_KEY."""
        new = OPENAI_ONLY[(resource, method)]
        args = list(updated.args)
        for i, name in enumerate(POSITIONAL.get(resource, ())):
            if i < len(args) and not args[i].keyword and not args[i].star:
                args[i] = args[i].with_changes(keyword=cst.Name(name), equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")))
        self.mark = True
        self.note(original, "migrate", f"openai.{resource}.{method} -> openai.OpenAI().{new}")
        self.flag(original, "openai-only", f"openai.{resource}.{method} -> openai.OpenAI().{new}: "
                  f"{self.target.spec.id} has no equivalent, so this call still goes to OpenAI (OPENAI_API_KEY)")
        return updated.with_changes(func=cst.parse_expression(f"openai.OpenAI().{new}"), args=args)

    def _deployment(self, original: cst.Call, args: list[cst.Arg], tier: str) -> list[cst.Arg]:
        """An Azure deployment name is no model the target knows: the tier's model instead."""
        model = self.target.models.tier_model(tier)
        out = []
        for arg in args:
            value = string_value(arg.value)
            if arg.keyword and arg.keyword.value == "model" and model and not (
                    value and self.target.models.lookup(value)):
                self.flag(original, "azure", f"Azure deployment {value or cst.Module([]).code_for_node(arg.value)}"
                          f" -> {model} ({tier})")
                arg = arg.with_changes(value=cst.SimpleString(f'"{model}"'))
            out.append(arg)
        return out

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        if not self.mark:
            return updated_node
        self.mark = False
        trailing = updated_node.trailing_whitespace
        if trailing.comment is not None:
            return updated_node
        return updated_node.with_changes(trailing_whitespace=trailing.with_changes(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(OPENAI_ONLY_COMMENT)))

    def _args(self, original: cst.Call, args: tuple[cst.Arg, ...] | list[cst.Arg]) -> list[cst.Arg]:
        present = {a.keyword.value for a in args if a.keyword}
        out: list[cst.Arg] = []
        for arg in args:
            name = arg.keyword.value if arg.keyword else None
            if name in ("api_key", "api_base", "organization", "api_type", "api_version"):
                self.flag(original, "migrate", f"per-call {name}= dropped: the client holds it now")
                continue
            if name in RENAMED_KW:
                new = RENAMED_KW[name]
                if new in present and new != name:
                    continue
                present.add(new)
                arg = arg.with_changes(keyword=cst.Name(new))
            out.append(arg)
        if out:
            out[-1] = out[-1].with_changes(comma=args[-1].comma if args else cst.MaybeSentinel.DEFAULT)
        return out

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        names = self.qnames(original_node) if self.active else set()
        if self.active and not names and (name := dotted(original_node) or "").startswith("openai."):
            names = {name}  # `openai` unbound (only `from openai import ...`): the migration imports it
        for q in names:
            parts = q.split(".")
            if len(parts) == 3 and parts[:2] == ["openai", "error"] and dotted(original_node):
                return self._error(original_node, updated_node, parts[2])
            if len(parts) == 2 and parts[0] == "openai" and parts[1] in TOP_LEVEL_ERRORS and dotted(original_node):
                new = TOP_LEVEL_ERRORS[parts[1]]
                self.note(original_node, "migrate", f"openai.{parts[1]} -> openai.{new}")
                return updated_node.with_changes(attr=cst.Name(new))
        return updated_node

    def _error(self, original: cst.Attribute, updated: cst.Attribute, name: str) -> cst.BaseExpression:
        new = ERRORS.get(name)
        if new is None:
            self.flag(original, "migrate", f"openai.error.{name} has no v1 equivalent; left unchanged")
            return updated
        root = updated.value.value if isinstance(updated.value, cst.Attribute) else updated.value
        self.note(original, "migrate", f"openai.error.{name} -> openai.{new}")
        return cst.Attribute(value=root, attr=cst.Name(new))

    def leave_ImportFrom(self, original_node: cst.ImportFrom,
                         updated_node: cst.ImportFrom) -> cst.ImportFrom:
        if not self.active or dotted(original_node.module) != "openai.error" or \
                isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        names = []
        for alias in updated_node.names:
            old = alias.name.value if isinstance(alias.name, cst.Name) else ""
            new = ERRORS.get(old, old)
            asname = alias.asname or (cst.AsName(name=cst.Name(old)) if new != old else None)
            names.append(alias.with_changes(name=cst.Name(new), asname=asname))
        self.note(original_node, "migrate", "from openai.error import ... -> from openai import ...")
        return updated_node.with_changes(module=cst.Name("openai"), names=names)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if not self.active:
            return updated_node
        slots: list[list[cst.BaseStatement]] = [[stmt] for stmt in updated_node.body]
        drop: set[int] = set()
        for i, stmt in enumerate(updated_node.body):
            found = assigned_attr(stmt)
            if found and found[0] == "openai.api_key" and i in self.top_keys:
                slots[i] = self._clients(self._key_value(original_node.body[i], found[1]), stmt)
                self.note(original_node.body[i], "migrate", f"openai.api_key = ... -> {self.client} = openai.OpenAI("
                          f"base_url={self.target.spec.base_url!r}, api_key=...)")
            elif found and found[0] in CONFIG:
                self._config(original_node.body[i], found)
                drop.add(i)
        if not self.top_keys and self.first_use is not None:
            at = self.first_use
            imp = top_level_import(list(updated_node.body))
            if imp is not None and imp >= at:
                at = imp + 1
            new = self._clients(cst.parse_expression("openai.api_key") if self.nested_key else None, None)
            if not module_binds_openai(updated_node):
                new = [*cst.parse_module("import openai\n").body, *new]
            if at < len(slots):
                first = slots[at][0]
                new[0] = new[0].with_changes(leading_lines=first.leading_lines)
                slots[at] = [*new, first.with_changes(leading_lines=()), *slots[at][1:]]
            else:
                slots.append(new)
            self.note(original_node.body[min(at, len(slots) - 1)], "migrate", f"{self.client} created for "
                      f"{self.target.spec.base_url}")
        body, orphans = _flatten(slots, drop)
        return updated_node.with_changes(body=body, footer=[*orphans, *updated_node.footer])

    def _key_value(self, original: cst.BaseStatement, assign: cst.Assign) -> cst.BaseExpression:
        if self.azure:
            self.flag(original, "azure", f"the Azure key is not sent to {self.target.spec.id}; the key is read from "
                      f"{self.target.key_env}")
            return self.key_expr()
        if isinstance(assign.value, (cst.SimpleString, cst.ConcatenatedString)):
            secret = self.secret_literal(assign.value)
            if secret:
                self.flag(original, "hardcoded-key", f"hard-coded key {secret} removed; the key is read from "
                          f"{self.target.key_env}")
            return self.key_expr()
        return assign.value

    def _config(self, original: cst.BaseStatement, found: tuple[str, cst.Assign]) -> None:
        name, assign = found
        if name == "openai.api_type" and "azure" in (string_value(assign.value) or "azure"):
            self.flag(original, "azure", "Azure api_type/api_version removed: the provider is not Azure")
        self.note(original, "migrate", f"{name} removed: the client holds its configuration")

    def _clients(self, key: cst.BaseExpression | None, like: cst.BaseStatement | None) -> list[cst.BaseStatement]:
        """``client = openai.OpenAI(base_url=..., api_key=...)`` (and the async twin when needed)."""
        key_code = cst.Module([]).code_for_node(key if key is not None else self.key_expr())
        url = self.url_expr().value
        code = f"{self.client} = openai.OpenAI(base_url={url}, api_key={key_code})\n"
        if self.is_async:
            code += f"{self.aclient} = openai.AsyncOpenAI(base_url={url}, api_key={key_code})\n"
        stmts = list(cst.parse_module(code).body)
        if like is not None:
            stmts[0] = stmts[0].with_changes(leading_lines=like.leading_lines)
        return stmts


def _flatten(slots: list[list[cst.BaseStatement]], drop: set[int]) -> tuple[list[cst.BaseStatement],
                                                                             list[cst.EmptyLine]]:
    """Join statement slots, dropping some; their comments move to the next statement kept."""
    out: list[cst.BaseStatement] = []
    carry: list[cst.EmptyLine] = []
    for i, group in enumerate(slots):
        if i in drop:
            carry.extend(group[0].leading_lines)
            continue
        if carry and group:
            group = [group[0].with_changes(leading_lines=[*carry, *group[0].leading_lines]), *group[1:]]
            carry = []
        out.extend(group)
    return out, carry


class LegacyRetarget(_V0Base):
    DESCRIPTION = "Keep openai<1 code (--keep-v0) but point openai.api_base and the key at the provider."

    def visit_Module(self, node: cst.Module) -> None:
        super().visit_Module(node)
        self.names = {f[0]: i for i, stmt in enumerate(node.body) if (f := assigned_attr(stmt))}

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        name = dotted(original_node.targets[0].target) if self.active and len(original_node.targets) == 1 else None
        value = string_value(original_node.value)
        if name == "openai.api_base" and value != self.target.spec.base_url:
            self.note(original_node, "retarget", f"openai.api_base -> {self.target.spec.base_url}")
            return updated_node.with_changes(value=self.url_expr())
        if name == "openai.api_type" and value and "azure" in value:
            self.flag(original_node, "azure", "api_type azure -> open_ai: the provider is not Azure")
            self.note(original_node, "retarget", "openai.api_type -> open_ai")
            return updated_node.with_changes(value=cst.SimpleString('"open_ai"'))
        return updated_node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        found = self.v0_call(original_node) if self.active else None
        if found is None or found[0] not in V0_RESOURCES:
            return updated_node
        args = []
        for arg in updated_node.args:
            if arg.keyword and arg.keyword.value in ("engine", "deployment_id"):
                self.note(original_node, "retarget", f"{arg.keyword.value}= -> model=")
                arg = arg.with_changes(keyword=cst.Name("model"))
            args.append(arg)
        return updated_node.with_changes(args=args)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if not self.active or "openai.api_base" in self.names or not module_binds_openai(updated_node):
            return updated_node
        body = list(updated_node.body)
        at = self.names.get("openai.api_key", top_level_import(body))
        if at is None:
            return updated_node
        code = f"openai.api_base = {self.url_expr().value}\n"
        if "openai.api_key" not in self.names:
            code += f"openai.api_key = {cst.Module([]).code_for_node(self.key_expr())}\n"
        self.note(original_node.body[at], "retarget", f"openai.api_base set to {self.target.spec.base_url}")
        return updated_node.with_changes(body=[*body[: at + 1], *cst.parse_module(code).body, *body[at + 1 :]])
