"""Map OpenAI model names at every binding site that reaches a model parameter.

A model reaches the API through a ``model=`` literal, a module constant (``GPT_MODEL = "gpt-4"``),
a helper's default (``def ask(p, model="gpt-3.5-turbo")``) or argument, or a request dict. We
follow names back through scopes (ScopeProvider) from each SDK call's model argument, so a
string is mapped only when it really is sent as a model: index names, labels and vector-DB
configs stay. ``tiktoken.encoding_for_model(NAME)`` keeps the OpenAI name it had.
"""

from __future__ import annotations

import re

import libcst as cst
from libcst.metadata import Scope, ScopeProvider

from nbllm.convert.codemods.base import (
    MODEL_METHODS,
    ApiCalls,
    NbllmCommand,
    Scratch,
    chain_root,
    collect,
    dotted,
    string_value,
    with_string,
)
from nbllm.modelmap import is_openai_model

MODEL_KEYWORDS = ("model", "engine", "deployment_id", "model_name")
REQUEST_KEYS = {"messages", "prompt", "input", "temperature", "max_tokens", "stream"}


def _dict_model(node: cst.Dict) -> cst.BaseExpression | None:
    for el in node.elements:
        if isinstance(el, cst.DictElement) and string_value(el.key) == "model":
            return el.value
    return None


class ModelNames(NbllmCommand):
    DESCRIPTION = "Map OpenAI model names to the target provider's models, following names to their bindings."
    METADATA_DEPENDENCIES = (ScopeProvider,)
    TRIGGER = re.compile(r"[\"'](?:gpt-|o[134]|text-|davinci|babbage|chatgpt|code-)")

    @classmethod
    def wanted(cls, code: str, scratch: Scratch) -> bool:
        """Also without a model literal: ``--model`` overrides, or Azure deployments to replace."""
        return super().wanted(code, scratch) or bool(scratch.target.models.overrides or scratch.azure_clients)

    def __init__(self, context: cst.codemod.CodemodContext) -> None:
        super().__init__(context)
        self.strings: dict[cst.SimpleString, str] = {}  # literal -> its old value, to be mapped
        self.keep: dict[cst.Name, str] = {}  # tiktoken arguments -> the OpenAI literal they held
        self.reported: set[str] = set()
        self.deployments: dict[cst.BaseExpression, str] = {}  # Azure deployment args -> the tier to use

    # --- analysis -------------------------------------------------------------------------

    def visit_Module(self, node: cst.Module) -> None:
        self.values: dict[cst.Name, cst.BaseExpression] = {}
        for assign in collect(node, cst.Assign):
            for t in assign.targets:
                if isinstance(t.target, cst.Name):
                    self.values[t.target] = assign.value
        self.params: dict[cst.Param, tuple[cst.FunctionDef, int]] = {}
        self.funcs: set[cst.FunctionDef] = set()
        for fn in collect(node, cst.FunctionDef):
            self.funcs.add(fn)
            for i, p in enumerate(fn.params.params):
                self.params[p] = (fn, i)
            for p in fn.params.kwonly_params:
                self.params[p] = (fn, -1)
        self.access = {a.node: a for s in self._scopes(node) for a in s.accesses}
        self.calls = collect(node, cst.Call)
        work = self._sinks(node)
        found = bool(work)
        seen: set[int] = set()
        while work:
            expr = work.pop()
            if id(expr) in seen:
                continue
            seen.add(id(expr))
            work.extend(self._follow(expr))
        if found:
            self._all_literals(node)
        self._tiktoken()

    def _all_literals(self, module: cst.Module) -> None:
        """Every other exact OpenAI model id in a notebook that calls the SDK: models also reach
        calls through lists, loops, attributes and class defaults, which names cannot follow, and
        mapping each literal alike keeps comparisons and dict lookups between them working."""
        tiktoken = {a.value for c in self.calls if c.args and "tiktoken.encoding_for_model" in self.qnames(c.func)
                    for a in c.args[:1]}
        for node in collect(module, cst.SimpleString):
            value = string_value(node) if node not in self.strings and node not in tiktoken else None
            if value is not None and is_openai_model(value):
                self.strings[node] = value

    def _scopes(self, node: cst.Module) -> set[Scope]:
        return {s for s in self.metadata[ScopeProvider].values() if s is not None}  # type: ignore[misc]

    def _sinks(self, module: cst.Module) -> list[cst.BaseExpression]:
        api = ApiCalls(self, module)
        sinks: list[cst.BaseExpression] = []
        for call in self.calls:
            kind = api.kind(call)
            if kind is None:
                continue
            azure = kind in MODEL_METHODS and dotted(chain_root(call.func)[0]) in self.scratch.azure_clients
            for arg in call.args:
                if arg.keyword and arg.keyword.value in MODEL_KEYWORDS:
                    sinks.append(arg.value)
                    if azure and not self._names_a_model(arg.value):
                        self.deployments[arg.value] = "embedding" if kind.startswith("embeddings") else "strong"
                elif arg.star == "**":
                    sinks.extend(self._splatted(arg.value))
        for d in collect(module, cst.Dict):
            keys = {string_value(e.key) for e in d.elements if isinstance(e, cst.DictElement)}
            value = _dict_model(d)
            if value is not None and keys & REQUEST_KEYS:
                sinks.append(value)
        return sinks

    def _names_a_model(self, expr: cst.BaseExpression) -> bool:
        """The expression is, or is a name bound to, an OpenAI model id the map knows."""
        values = [expr, *self._bindings(expr)]
        return any((v := string_value(e)) is not None and self.target.models.lookup(v) for e in values)

    def _splatted(self, expr: cst.BaseExpression) -> list[cst.BaseExpression]:
        dicts = [expr] if isinstance(expr, cst.Dict) else [v for v in self._bindings(expr)]
        return [m for d in dicts if isinstance(d, cst.Dict) and (m := _dict_model(d)) is not None]

    def _bindings(self, expr: cst.BaseExpression) -> list[cst.BaseExpression]:
        """The expressions a name may hold: assigned values and parameter defaults."""
        access = self.access.get(expr) if isinstance(expr, cst.Name) else None
        out: list[cst.BaseExpression] = []
        for ref in access.referents if access else ():
            node = getattr(ref, "node", None)
            if isinstance(node, cst.Name) and node in self.values:
                out.append(self.values[node])
            elif isinstance(node, cst.Param) and node.default is not None:
                out.append(node.default)
        return out

    def _follow(self, expr: cst.BaseExpression) -> list[cst.BaseExpression]:
        """Record a literal model, or return what a name is bound to (and helper-call arguments)."""
        value = string_value(expr)
        if value is not None:
            self.strings[expr] = value  # type: ignore[index]
            return []
        if not isinstance(expr, cst.Name) or expr not in self.access:
            return []
        out = self._bindings(expr)
        for ref in self.access[expr].referents:
            node = getattr(ref, "node", None)
            if isinstance(node, cst.Param) and node in self.params:
                out.extend(self._call_args(*self.params[node], node.name.value))
        return out

    def _call_args(self, fn: cst.FunctionDef, index: int, name: str) -> list[cst.BaseExpression]:
        """Arguments passed for parameter name of helper fn at its call sites."""
        out: list[cst.BaseExpression] = []
        for call in self.calls:
            access = self.access.get(call.func) if isinstance(call.func, cst.Name) else None
            if not access or not any(getattr(r, "node", None) is fn for r in access.referents):
                continue
            positional = [a for a in call.args if not a.keyword and not a.star]
            for arg in call.args:
                if arg.keyword and arg.keyword.value == name:
                    out.append(arg.value)
            if 0 <= index < len(positional):
                out.append(positional[index].value)
        return out

    def _tiktoken(self) -> None:
        for call in self.calls:
            if "tiktoken.encoding_for_model" in self.qnames(call.func) and call.args:
                arg = call.args[0].value
                held = [b for b in self._bindings(arg) if b in self.strings] if isinstance(arg, cst.Name) else []
                if held and isinstance(arg, cst.Name):
                    self.keep[arg] = self.strings[held[0]]  # type: ignore[index]

    # --- rewriting ------------------------------------------------------------------------

    def leave_SimpleString(self, original_node: cst.SimpleString,
                           updated_node: cst.SimpleString) -> cst.BaseExpression:
        old = self.strings.get(original_node)
        mapping = self.target.models.lookup(old) if old is not None else None
        if mapping is None:
            return updated_node
        if mapping.warning:
            self.flag(original_node, "model", mapping.warning)
        if mapping.new == old:
            return updated_node
        self.note(original_node, "model", f"{old} -> {mapping.new} ({mapping.tier})")
        return with_string(updated_node, mapping.new)

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        tier = self.deployments.get(original_node.value)
        model = self.target.models.tier_model(tier) if tier else None
        if model is None:
            return updated_node
        code = cst.Module([]).code_for_node(original_node.value)
        self.flag(original_node, "azure", f"Azure deployment {code} -> {model} ({tier})")
        self.note(original_node, "model", f"{code} -> {model} ({tier})")
        return updated_node.with_changes(value=cst.SimpleString(f'"{model}"'))

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        old = self.keep.get(original_node)
        mapping = self.target.models.lookup(old) if old is not None else None
        if old is None or mapping is None or mapping.new == old:
            return updated_node
        self.note(original_node, "model", f"tiktoken keeps the OpenAI name {old}")
        return cst.SimpleString(f'"{old}"')
