"""What every nbllm codemod shares: the target, the event log and name-resolution helpers.

Names are resolved by import (the scope's qualified names), never by spelling: a LangChain or
llama_index class called ``OpenAI`` is not the SDK client.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeVar

import libcst as cst
from libcst.codemod import CodemodContext, VisitorBasedCodemodCommand
from libcst.metadata import BaseMetadataProvider, MetadataWrapper, PositionProvider, ScopeProvider

from nbllm.convert.codemods.fastmeta import FastDispatch, SharedWrapper, init_codemod
from nbllm.modelmap import ModelMap
from nbllm.providers.catalog import ProviderSpec
from nbllm.secrets import mask

CLIENT_CLASSES = {"openai.OpenAI": "OpenAI", "openai.AsyncOpenAI": "AsyncOpenAI",
                  "openai.AzureOpenAI": "OpenAI", "openai.AsyncAzureOpenAI": "AsyncOpenAI"}
# Client methods that take a model, by path below the client; False: flagged, never mapped.
MODEL_METHODS = {
    "chat.completions.create": True, "chat.completions.parse": True, "chat.completions.stream": True,
    "beta.chat.completions.parse": True, "beta.chat.completions.stream": True,
    "completions.create": True, "embeddings.create": True, "responses.create": False,
}
V0_RESOURCES = {"ChatCompletion": "chat.completions", "Completion": "completions", "Embedding": "embeddings"}
LANGCHAIN = re.compile(r"^(langchain|langchain_openai|langchain_community)(\.\w+)*\."
                       r"(ChatOpenAI|OpenAI|OpenAIEmbeddings|AzureChatOpenAI|AzureOpenAIEmbeddings|AzureOpenAI)$")
KEY_LITERAL = re.compile(r"^sk-[A-Za-z0-9_\-]{16,}$")
OPENAI_HOSTS = ("api.openai.com", "openai.azure.com")


@dataclass
class Event:
    """One change or warning, at a line of the joined module (mapped to a cell later)."""

    kind: str
    message: str
    line: int
    warning: bool = False


@dataclass
class Target:
    """The provider a notebook is converted to, and the options of this run."""

    spec: ProviderSpec
    models: ModelMap
    keep_v0: bool = False

    @property
    def key_env(self) -> str | None:
        return self.spec.key_env[0] if self.spec.key_env else None


@dataclass
class Scratch:
    """Shared state of one notebook's codemod run (lives in CodemodContext.scratch)."""

    target: Target
    events: list[Event] = field(default_factory=list)
    needs_os: bool = False
    migrated: set[str] = field(default_factory=set)  # client names created by the v0 migration
    azure_clients: set[str] = field(default_factory=set)  # names bound to what was an Azure client


def new_context(target: Target) -> CodemodContext:
    return CodemodContext(scratch={"nbllm": Scratch(target)})


def dotted(node: cst.BaseExpression) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr.value}" if head else None
    return None


def string_value(node: cst.CSTNode | None) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = _evaluated(node.value)  # SimpleString.evaluated_value, which every pass asks again
        return value if isinstance(value, str) else None
    return None


@lru_cache(maxsize=4096)
def _evaluated(literal: str) -> str | bytes:
    return ast.literal_eval(literal)  # type: ignore[no-any-return]


def with_string(node: cst.SimpleString, value: str) -> cst.SimpleString:
    """A new literal in the same quote style."""
    escaped = value.replace("\\", "\\\\").replace(node.quote, "\\" + node.quote)
    return node.with_changes(value=f"{node.prefix}{node.quote}{escaped}{node.quote}")


def kwarg(call: cst.Call, *names: str) -> cst.Arg | None:
    return next((a for a in call.args if a.keyword and a.keyword.value in names), None)


def is_openai_url(value: str) -> bool:
    return any(host in value for host in OPENAI_HOSTS)


class NbllmCommand(FastDispatch, VisitorBasedCodemodCommand):
    """Base for the converter's codemods: target access and cell-addressable events."""

    # ScopeProvider rather than QualifiedNameProvider: that provider is one more
    # whole-tree traversal per resolution that only stores, for every node, a lazy call of
    # scope.get_qualified_names_for(node); qnames() makes that same call for the nodes asked about.
    METADATA_DEPENDENCIES: tuple[type[BaseMetadataProvider[Any]], ...] = (ScopeProvider,)
    # The pass runs only when the code matches (libcst passes are slow; most have nothing to do).
    TRIGGER: re.Pattern[str] | None = None
    # The pass rewrites nodes no later pass reads or writes, so the runner may walk it together
    # with the next pass over one resolved tree (batched.py says why that is the same result).
    SHARES_WALK_WITH_NEXT = False

    @classmethod
    def wanted(cls, code: str, scratch: Scratch) -> bool:
        """Whether this pass has anything to do on code (the runner asks before every pass)."""
        return cls.TRIGGER is None or bool(cls.TRIGGER.search(code))

    def __init__(self, context: CodemodContext) -> None:
        init_codemod(self, context)  # libcst's __init__, its matcher scan cached per class
        self._pending: list[tuple[Event, cst.CSTNode]] = []

    def transform_module(self, tree: cst.Module) -> cst.Module:
        """libcst's transform minus its defensive deep copy: the pipeline hands every pass a
        fresh tree, and copying it dominated the run time."""
        return self.transform_wrapped(SharedWrapper(tree))

    def transform_wrapped(self, wrapper: MetadataWrapper) -> cst.Module:
        """Transform wrapper.module, reusing whatever metadata the wrapper already resolved
        (the pipeline shares one wrapper across passes that leave the tree alone). Line numbers
        are resolved only for the nodes a pass reported, and only when it reported any."""
        previous = self.context
        self.context = replace(self.context, wrapper=wrapper)
        try:
            with self.resolve(wrapper):
                result = self.transform_module_impl(wrapper.module)
            if self._pending:
                lines = wrapper.start_lines() if isinstance(wrapper, SharedWrapper) else \
                    {n: p.start.line for n, p in wrapper.resolve(PositionProvider).items()}
                for event, node in self._pending:
                    event.line = lines.get(node, 0)
        finally:
            self.context = previous
            self._pending = []
        return result

    @property
    def scratch(self) -> Scratch:
        return self.context.scratch["nbllm"]  # type: ignore[no-any-return]

    @property
    def target(self) -> Target:
        return self.scratch.target

    def qnames(self, node: cst.CSTNode) -> set[str]:
        """Qualified names of node, exactly as QualifiedNameProvider would give them."""
        scope = self.get_metadata(ScopeProvider, node, None)
        return {q.name for q in scope.get_qualified_names_for(node)} if scope else set()

    def _record(self, node: cst.CSTNode, event: Event) -> None:
        self.scratch.events.append(event)
        self._pending.append((event, node))

    def note(self, node: cst.CSTNode, kind: str, message: str) -> None:
        """Record a change made at node (an original node, so it has a position)."""
        self._record(node, Event(kind, message, 0))

    def flag(self, node: cst.CSTNode, kind: str, message: str) -> None:
        """Record a warning: something left alone or needing the user's eye."""
        self.warn(message)
        self._record(node, Event(kind, message, 0, warning=True))

    def key_expr(self) -> cst.BaseExpression:
        """``os.environ["KEY"]`` (or ``.get`` with a dummy for keyless local servers)."""
        env = self.target.key_env
        if env is None:
            return cst.SimpleString('"EMPTY"')
        self.scratch.needs_os = True
        if self.target.spec.key_required:
            return cst.parse_expression(f'os.environ["{env}"]')
        return cst.parse_expression(f'os.environ.get("{env}", "EMPTY")')

    def url_expr(self) -> cst.SimpleString:
        return cst.SimpleString(repr(self.target.spec.base_url).replace("'", '"'))

    def secret_literal(self, node: cst.CSTNode | None) -> str | None:
        """A hard-coded key literal, masked for messages (never the whole key)."""
        value = string_value(node)
        return mask(value) if value and KEY_LITERAL.match(value) else None

    def client_class(self, call: cst.Call) -> str | None:
        """``OpenAI``/``AsyncOpenAI`` when call builds an SDK client (Azure ones included)."""
        return next((CLIENT_CLASSES[q] for q in self.qnames(call.func) if q in CLIENT_CLASSES), None)


def keyword_arg(name: str, value: cst.BaseExpression) -> cst.Arg:
    return cst.Arg(keyword=cst.Name(name), value=value, equal=cst.AssignEqual(
        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")))


def append_args(call: cst.Call, new: list[cst.Arg]) -> cst.Call:
    """Add keyword args after the existing ones (before any ``**kw``), following the call's layout."""
    args = list(call.args)
    cut = next((i for i, a in enumerate(args) if a.star == "**"), len(args))
    if len(args) > 1 and isinstance(args[0].comma, cst.Comma):
        sep = args[0].comma
    elif isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace):
        sep = cst.Comma(whitespace_after=call.whitespace_before_args)
    else:
        sep = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    trailing = args[-1].comma if args else cst.MaybeSentinel.DEFAULT
    seq = args[:cut] + new + args[cut:]
    out: list[cst.Arg] = []
    for i, arg in enumerate(seq):
        if i == len(seq) - 1:
            out.append(arg.with_changes(comma=trailing))
        elif cut <= i < cut + len(new) or i == len(args) - 1 or not isinstance(arg.comma, cst.Comma):
            out.append(arg.with_changes(comma=sep))
        else:
            out.append(arg)
    return call.with_changes(args=out)


def replace_arg(call: cst.Call, name: str, value: cst.BaseExpression) -> cst.Call:
    return call.with_changes(args=[a.with_changes(value=value) if a.keyword and a.keyword.value == name else a
                                   for a in call.args])


def module_binds_openai(module: cst.Module) -> bool:
    """True when a top-level ``import openai`` (without alias) exists."""
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Import) and any(
                    dotted(a.name) == "openai" and a.asname is None for a in small.names
                ):
                    return True
    return False


_N = TypeVar("_N", bound=cst.CSTNode)
_INDEX: dict[int, tuple[cst.CSTNode, dict[type, list[cst.CSTNode]]]] = {}


class _Index(cst.CSTVisitor):
    def __init__(self) -> None:
        self.by_type: dict[type, list[cst.CSTNode]] = {}

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.by_type.setdefault(type(node), []).append(node)
        return True


def collect(tree: cst.CSTNode, kind: type[_N]) -> list[_N]:
    """Every node of the given type under tree, in source order (one traversal per tree, cached)."""
    cached = _INDEX.get(id(tree))
    if cached is None or cached[0] is not tree:
        if len(_INDEX) > 64:
            _INDEX.clear()
        visitor = _Index()
        tree.visit(visitor)
        cached = _INDEX[id(tree)] = (tree, visitor.by_type)
    return [n for t, nodes in cached[1].items() if issubclass(t, kind) for n in nodes]  # type: ignore[misc]


def insert_after(body: list[cst.BaseStatement], index: int, code: str) -> list[cst.BaseStatement]:
    """Insert statements (source text) after body[index]."""
    new = list(cst.parse_module(code).body)
    return body[: index + 1] + new + body[index + 1 :]


def top_level_import(body: list[cst.BaseStatement], module: str = "openai") -> int | None:
    """Index of the first top-level statement that imports module (``import m`` or ``from m import``)."""
    for i, stmt in enumerate(body):
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import) and any(dotted(a.name) == module for a in small.names):
                return i
            if isinstance(small, cst.ImportFrom) and small.module and dotted(small.module) == module:
                return i
    return None


def assigned_attr(stmt: cst.CSTNode) -> tuple[str, cst.Assign] | None:
    """``("openai.api_key", assign)`` for a one-target attribute assignment statement line."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        small = stmt.body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            name = dotted(small.targets[0].target)
            if name:
                return name, small
    return None


def chain_root(node: cst.BaseExpression) -> tuple[cst.BaseExpression, str]:
    """Split ``X.a.b.c`` into (X, "a.b.c") where X is the first non-attribute expression."""
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    return node, ".".join(reversed(parts))


class ApiCalls:
    """Which calls in a module talk to the OpenAI SDK (by import and by client variable)."""

    def __init__(self, cmd: NbllmCommand, module: cst.Module) -> None:
        self.cmd = cmd
        self.clients: set[str] = set()
        for assign in collect(module, cst.Assign):
            if isinstance(assign.value, cst.Call) and cmd.client_class(assign.value) and \
                    not self.foreign(assign.value):
                self.clients.update(d for t in assign.targets if (d := dotted(t.target)))

    def foreign(self, call: cst.Call) -> bool:
        """A client built for another endpoint (not OpenAI's, not the target's): its models stay."""
        arg = kwarg(call, "base_url")
        if arg is None:
            return False
        value = string_value(arg.value)
        if value is None:
            code = cst.Module([]).code_for_node(arg.value)
            return not any(env in code for env in ("OPENAI_BASE_URL", "OPENAI_API_BASE"))
        return not is_openai_url(value) and value != self.cmd.target.spec.base_url

    def kind(self, call: cst.Call) -> str | None:
        """``"chat.completions.create"``, ``"v0:ChatCompletion.create"``, ``"langchain:ChatOpenAI"`` or None."""
        names = self.cmd.qnames(call.func)
        for q in names:
            if LANGCHAIN.match(q):
                return "langchain:" + q.rsplit(".", 1)[1]
            parts = q.split(".")
            if len(parts) == 3 and parts[0] == "openai" and parts[1] in V0_RESOURCES:
                return f"v0:{parts[1]}.{parts[2]}"
        root, path = chain_root(call.func)
        for method in MODEL_METHODS:
            if path == method or path.endswith("." + method):
                head = path[: -len(method)].rstrip(".")
                base = dotted(root)
                name = f"{base}.{head}" if base and head else (base if not head else None)
                if name in self.clients:
                    return method
                if isinstance(root, cst.Call) and not head and self.cmd.client_class(root):
                    return method
                if f"openai.{method}" in names:
                    return method
        return None
