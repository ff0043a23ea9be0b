"""LibCST walks that do not copy what they leave unchanged.

LibCST's ``node.visit(visitor)`` builds a new copy of every node it passes, even for a
``CSTVisitor`` that cannot change anything (the copy is thrown away), and for a transformer
that changes one string in a notebook. On real notebooks the read-only walks (scope and
expression-context resolution, ``collect``, the key-use analysis) are about a third of a
conversion and the codemod walks almost half, and a good part of each was that copying plus
four hook calls per field. Within ``fast_visits()``, ``visit`` calls the same hooks in the same
order (``on_visit``, ``on_visit_attribute``, the children, ``on_leave_attribute``,
``on_leave``); a visitor's walk copies nothing, a transformer's keeps every node none of whose
children changed (the tree comes out equal, and a node that changed is rebuilt as LibCST
rebuilds it), and the attribute hooks are skipped for visitors and codemods that have none.
A visitor's ``visit_<Node>``/``leave_<Node>`` methods come from a table per class (``_Visits``), and
the no-op stubs every LibCST visitor inherits are never called (in the scope resolution that
was most of the hook calls).

The order of each node type's children is read once from its ``_visit_and_replace_children``
(a LibCST internal). It is a fast path only: at import a probe compares the hooks it calls
with LibCST's on a sample; on a mismatch, or with ``NBLLM_LIBCST_PUBLIC=1`` or
``fastmeta.FAST`` off, ``fast_visits()`` changes nothing (tests/test_convert_fastpath.py).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FunctionType
from typing import Any

import libcst as cst
from libcst import CSTTransformer, CSTVisitor, MaybeSentinel
from libcst.metadata import scope_provider
from libcst.metadata.scope_provider import ScopeVisitor

from nbllm.convert.codemods import fastmeta

# LibCST's child-visiting helpers and how each treats its field.
_HELPERS = {"visit_required": "required", "visit_optional": "optional", "visit_sentinel": "sentinel",
            "visit_sequence": "sequence", "visit_iterable": "sequence", "visit_body_sequence": "body",
            "visit_body_iterable": "body"}
_PLANS: dict[type, tuple[tuple[str, str], ...] | None] = {}
_LOCK = threading.Lock()
_ACTIVE = 0
_LIBCST_VISIT = (cst.CSTNode.visit, cst.Module.visit)


def _plan(cls: type) -> tuple[tuple[str, str], ...] | None:
    """(field, how) in the order ``cls._visit_and_replace_children`` visits its fields (None:
    not readable, that node type takes LibCST's walk)."""
    if cls not in _PLANS:
        try:
            _PLANS[cls] = _read_plan(cls)
        except Exception:  # no source, or written in a way not foreseen here
            _PLANS[cls] = None
    return _PLANS[cls]


def _read_plan(cls: type) -> tuple[tuple[str, str], ...]:
    """The plan read from the method's source (LibCST writes them all in one shape: one
    constructor call over the helpers; anything else is refused)."""
    source = textwrap.dedent(inspect.getsource(cls._visit_and_replace_children))  # type: ignore[attr-defined]
    tree = ast.parse(source)
    if any(isinstance(n, (ast.If, ast.For, ast.While, ast.Try, ast.With, ast.comprehension, ast.Lambda))
           for n in ast.walk(tree)):
        raise ValueError("a _visit_and_replace_children with control flow")
    steps: list[tuple[str, str]] = []

    class Steps(ast.NodeVisitor):
        def visit_IfExp(self, node: ast.IfExp) -> None:
            # ``visit_x(self, "f", f, visitor) if ... else ...``: the value decides (None: not visited)
            calls = [c for c in ast.walk(node) if isinstance(c, ast.Call) and _helper(c)]
            steps.append((_field(calls[0]), "auto"))

        def visit_Call(self, node: ast.Call) -> None:
            if _helper(node):
                steps.append((_field(node), _HELPERS[_helper(node)]))
            self.generic_visit(node)

    Steps().visit(tree)
    return tuple(steps)


def _helper(call: ast.Call) -> str:
    name = call.func.id if isinstance(call.func, ast.Name) else ""
    return name if name in _HELPERS else ""


def _field(call: ast.Call) -> str:
    arg = call.args[1]
    if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str):
        raise ValueError("unexpected _visit_and_replace_children")
    return arg.value


class _Visits:
    """The hooks a read-only walk calls on one visitor class, looked up once per node type.

    ``CSTVisitor.on_visit`` and its siblings look up ``visit_<Node>`` / ``leave_<Node>`` /
    ``visit_<Node>_<field>`` by name at every node and field, and every visitor inherits a no-op
    stub for each of them (``CSTTypedVisitorFunctions``); a class that keeps those defaults gets
    its real hooks from a table here, and the stubs are not called at all. An ``on_*`` method the
    class overrides is called as it is.
    """

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.on_visit = cls.on_visit if cls.on_visit is not CSTVisitor.on_visit else None  # type: ignore[attr-defined]
        self.on_leave = cls.on_leave if cls.on_leave is not CSTVisitor.on_leave else None  # type: ignore[attr-defined]
        if self.on_leave is ScopeVisitor.on_leave and _SCOPE_LEAVE_AS_READ:
            self.on_leave = _scope_on_leave
        self.own_attrs = (cls.on_visit_attribute is not CSTVisitor.on_visit_attribute  # type: ignore[attr-defined]
                          or cls.on_leave_attribute is not CSTVisitor.on_leave_attribute)  # type: ignore[attr-defined]
        self.by_type: dict[type, tuple[Any, Any, dict[str, tuple[Any, Any]] | None]] = {}

    def hooks(self, kind: type) -> tuple[Any, Any, dict[str, tuple[Any, Any]] | None]:
        """(visit_<Node>, leave_<Node>, {field: (visit, leave)} or None when no field has a hook)."""
        found = self.by_type.get(kind)
        if found is None:
            name = kind.__name__
            fields: dict[str, tuple[Any, Any]] = {}
            for field_name, _ in _plan(kind) or ():
                pair = (self._hook(f"visit_{name}_{field_name}"), self._hook(f"leave_{name}_{field_name}"))
                if pair != (None, None):
                    fields[field_name] = pair
            found = self.by_type[kind] = (self._hook(f"visit_{name}"), self._hook(f"leave_{name}"), fields or None)
        return found

    def _hook(self, name: str) -> Any:
        """The method as a function of (visitor, node), or None for a missing or no-op one."""
        fn = getattr(self.cls, name, None)
        if fn is None or getattr(fn, "_is_no_op", False):
            return None
        if isinstance(fn, FunctionType):
            return fn
        return lambda visitor, node: getattr(visitor, name)(node)


_VISITS: dict[type, _Visits] = {}
_DEFAULT = MaybeSentinel.DEFAULT  # an empty sentinel field (MaybeSentinel's one member)

# LibCST's ScopeVisitor.on_leave, called for every node of every scope resolution: its
# isinstance against fourteen node classes goes through ABCMeta for each (about 2 us a node,
# a tenth of a conversion). _scope_on_leave does the same with the answer kept per node type;
# it stands in only while the method reads exactly like this.
_SCOPE_LEAVE = """\
    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.provider.set_metadata(original_node, self.scope)
        if isinstance(original_node, _ASSIGNMENT_LIKE_NODES):
            self.scope._assignment_count += 1
        super().on_leave(original_node)
"""
_ASSIGNMENT_LIKE: dict[type, bool] = {}


def _scope_leave_as_read() -> bool:
    try:
        return ScopeVisitor.__bases__ == (CSTVisitor,) and inspect.getsource(ScopeVisitor.on_leave) == _SCOPE_LEAVE
    except (OSError, TypeError):
        return False


def _scope_on_leave(visitor: Any, node: cst.CSTNode) -> None:
    visitor.provider.set_metadata(node, visitor.scope)
    kind = type(node)
    like = _ASSIGNMENT_LIKE.get(kind)
    if like is None:
        like = _ASSIGNMENT_LIKE[kind] = issubclass(kind, scope_provider._ASSIGNMENT_LIKE_NODES)
    if like:
        visitor.scope._assignment_count += 1
    leave = _visits(type(visitor)).hooks(kind)[1]
    if leave is not None:
        leave(visitor, node)


_SCOPE_LEAVE_AS_READ = _scope_leave_as_read()


def _visits(cls: type) -> _Visits:
    found = _VISITS.get(cls)
    if found is None:
        found = _VISITS[cls] = _Visits(cls)
    return found


def _walk(node: cst.CSTNode, visitor: CSTVisitor, visits: _Visits) -> None:
    plan = _PLANS[type(node)] if type(node) in _PLANS else _plan(type(node))
    if plan is None:
        _LIBCST_VISIT[isinstance(node, cst.Module)](node, visitor)  # its children come back here
        return
    visit, leave, attrs = visits.hooks(type(node))
    own_visit = visits.on_visit is not None
    if visitor.on_visit(node) if own_visit else (visit is None or visit(visitor, node) is not False):
        own = visits.own_attrs
        for name, how in plan:  # the fields in LibCST's order (the same steps in _transform)
            value = getattr(node, name)
            if how == "auto":  # left out when None, else a node or a sequence
                if value is None:
                    continue
                how = "required" if isinstance(value, cst.CSTNode) else "sequence"
            hooks = attrs.get(name) if attrs is not None else None
            if own:
                visitor.on_visit_attribute(node, name)
            elif hooks is not None and hooks[0] is not None:
                hooks[0](visitor, node)
            if how == "sequence" or how == "body":
                for child in value:
                    _walk(child, visitor, visits)
            elif not ((how == "optional" and value is None) or (how == "sentinel" and value is _DEFAULT)):
                _walk(value, visitor, visits)  # (an empty optional or sentinel field is not walked)
            if own:
                visitor.on_leave_attribute(node, name)
            elif hooks is not None and hooks[1] is not None:
                hooks[1](visitor, node)
    if visits.on_leave is not None:
        visits.on_leave(visitor, node)
    elif leave is not None:
        leave(visitor, node)


_NODE, _REMOVAL, _FLATTEN, _OTHER = range(4)
_KINDS: dict[type, int] = {}


def _kind(cls: type) -> int:
    """What a hook returned: a node, a RemovalSentinel, a FlattenSentinel or something else
    (``isinstance`` against LibCST's abstract classes is slow, and the answer depends on the type)."""
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = (_FLATTEN if issubclass(cls, cst.FlattenSentinel) else _REMOVAL if issubclass(
            cls, cst.RemovalSentinel) else _NODE if issubclass(cls, cst.CSTNode) else _OTHER)
    return kind


def _transform(node: cst.CSTNode, visitor: CSTTransformer, attrs: bool) -> Any:
    """LibCST's transformer walk (same hooks, same order, same checks), except that a node none
    of whose children changed is kept as it is instead of copied: the tree comes out equal."""
    plan = _PLANS[type(node)] if type(node) in _PLANS else _plan(type(node))
    if plan is None:
        return _LIBCST_VISIT[isinstance(node, cst.Module)](node, visitor)
    updated = node
    if visitor.on_visit(node):
        changes: dict[str, Any] = {}
        for name, how in plan:
            value = getattr(node, name)
            if how == "auto":
                if value is None:
                    continue
                how = "required" if isinstance(value, cst.CSTNode) else "sequence"
            if attrs:
                visitor.on_visit_attribute(node, name)
            if how == "sequence" or how == "body":
                new = _children(value, visitor, attrs, how == "body")
                if new is not None:
                    changes[name] = new  # LibCST always stores a tuple here
            elif not ((how == "optional" and value is None) or (how == "sentinel" and value is _DEFAULT)):
                new = _transform(value, visitor, attrs)
                if new is not value:
                    kind = _kind(type(new))
                    if kind == _FLATTEN or (how == "required" and kind == _REMOVAL):
                        raise TypeError(f"We got a {type(new).__name__} while visiting a {type(value).__name__}. "
                                        "This node's parent does not allow it.")
                    changes[name] = (None if how == "optional" else MaybeSentinel.DEFAULT) if kind == _REMOVAL else new
            if attrs:
                visitor.on_leave_attribute(node, name)
        if changes:
            updated = dataclasses.replace(node, **changes)
    result = visitor.on_leave(node, updated)
    if result is not updated and _kind(type(result)) == _OTHER:
        raise cst.CSTValidationError("Expected a node of type CSTNode or a RemovalSentinel, "
                                     f"but got a return value of {type(result).__name__}")
    return result


def _children(values: Any, visitor: CSTTransformer, attrs: bool, body: bool) -> tuple[Any, ...] | None:
    """A sequence field walked as ``visit_sequence`` / ``visit_body_sequence`` walk it: the new
    tuple, or None when it holds the same nodes as before."""
    out: list[Any] = []
    same = True
    for child in values:
        new = _transform(child, visitor, attrs)
        if new is child:
            out.append(child)
            continue
        same = False
        kind = _kind(type(new))
        if kind == _REMOVAL:
            continue
        if kind == _FLATTEN:
            out.extend(n for n in new if not (body and not child._is_removable() and n._is_removable()))
        elif not (body and not child._is_removable() and new._is_removable()):
            out.append(new)
    if type(values) is not tuple or not (same or (len(out) == len(values) and all(
            a is b for a, b in zip(out, values, strict=True)))):
        return tuple(out)
    return None


def attribute_hooks(visitor: Any) -> bool:
    """Whether a transformer does anything on ``on_visit_attribute``/``on_leave_attribute``
    (nbllm's codemods say so themselves; any other transformer is assumed to)."""
    ask = getattr(visitor, "attribute_hooks", None)
    return bool(ask()) if callable(ask) else True


def _node_visit(self: cst.CSTNode, visitor: Any) -> Any:
    if isinstance(visitor, CSTVisitor):
        _walk(self, visitor, _visits(type(visitor)))
        return self  # what LibCST returns for a visitor
    if TRANSFORM and isinstance(visitor, CSTTransformer):
        return _transform(self, visitor, attribute_hooks(visitor))
    return _LIBCST_VISIT[0](self, visitor)


def _module_visit(self: cst.Module, visitor: Any) -> Any:
    if isinstance(visitor, CSTVisitor):
        _walk(self, visitor, _visits(type(visitor)))
        return self
    if TRANSFORM and isinstance(visitor, CSTTransformer):
        result = _transform(self, visitor, attribute_hooks(visitor))
        return self.with_changes(body=(), header=(), footer=()) if isinstance(result, cst.RemovalSentinel) else result
    return _LIBCST_VISIT[1](self, visitor)


@contextmanager
def fast_visits() -> Iterator[None]:
    """Within the block, read-only walks skip LibCST's copying (see the module docstring)."""
    global _ACTIVE
    if not (WALK and fastmeta.FAST):
        yield
        return
    with _LOCK:
        if _ACTIVE == 0:
            cst.CSTNode.visit = _node_visit  # type: ignore[method-assign]
            cst.Module.visit = _module_visit  # type: ignore[method-assign]
        _ACTIVE += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                cst.CSTNode.visit, cst.Module.visit = _LIBCST_VISIT  # type: ignore[method-assign]


class _Calls(CSTVisitor):
    """Records every hook call (the probe's witness)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, str]] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.calls.append(("visit", id(node), ""))
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.calls.append(("leave", id(original_node), ""))

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        self.calls.append(("visit_attr", id(node), attribute))

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        self.calls.append(("leave_attr", id(original_node), attribute))


def _named_witness() -> type[CSTVisitor]:
    """A visitor with its own ``visit_<Node>`` / ``leave_<Node>`` method for every node type, a few
    per-field ones and none of the ``on_*`` methods: the witness for ``_Visits``' tables. It does
    not enter lambdas (``visit_Lambda`` returns False)."""

    def record(kind: str, name: str, result: bool | None = None) -> Any:
        def hook(self: Any, node: cst.CSTNode) -> bool | None:
            self.calls.append((kind, id(node), name))
            return result
        return hook

    methods: dict[str, Any] = {}
    for name in dir(cst):
        kind = getattr(cst, name)
        if isinstance(kind, type) and issubclass(kind, cst.CSTNode):
            methods[f"visit_{name}"] = record("visit", name, False if name == "Lambda" else None)
            methods[f"leave_{name}"] = record("leave", name)
    for name in ("ClassDef_bases", "Call_func", "Param_default", "Attribute_attr"):
        methods[f"visit_{name}"] = record("visit_attr", name)
        methods[f"leave_{name}"] = record("leave_attr", name)
    return type("_Named", (_Calls,), {**methods, "on_visit": CSTVisitor.on_visit, "on_leave": CSTVisitor.on_leave,
                                       "on_visit_attribute": CSTVisitor.on_visit_attribute,
                                       "on_leave_attribute": CSTVisitor.on_leave_attribute})


_SAMPLE = '''\
from __future__ import annotations
import os, sys as system
from a.b import (c as d, e)
from .rel import *
@decorator(1)
class A(B, metaclass=M):
    x: int = 3
    async def f(self, p, /, q=1, *args, r: "str" = "s", **kw) -> None:
        async with open(p) as fh, ctx():
            await g(*args, **kw)
        async for i in aiter():
            yield i
        return [y for y in range(3) if y if not y] + list({k: v for k, v in kw.items()})
def h(a, b=lambda z, *w: z ** 2):
    global G
    nonlocal_ = {1, 2, *b}
    try:
        del a[1:2, ::3], b.c
    except (ValueError, KeyError) as exc:
        raise RuntimeError("x") from exc
    else:
        pass
    finally:
        assert a, "msg"
    while (n := len(a)) > 0:
        n -= 1; continue
    for i, (j, k) in enumerate(zip(a, b)):
        break
    else:
        print(f"{a!r:>{b}} {'q'} {c=}", "x" "y", rb"z", sep="")
    print(a if b else c, not a and b or c, -a, ~b, a @ b, a[...], (yield), *x, sep=1)
    match a:
        case [1, *rest] | {"k": v, **kw} if rest:
            pass
        case Point(x=0, y=_) as p:
            pass
x = (((((1)))))
'''


def _probe() -> bool:
    """Whether the fast walk calls the hooks LibCST's walk calls, in the same order (on a sample), both
    through a visitor's own ``on_*`` methods and through the tables of ``_Visits``."""
    if os.environ.get("NBLLM_LIBCST_PUBLIC"):
        return False
    try:
        sample = cst.parse_module(_SAMPLE)
        for witness in (_Calls, _named_witness()):
            public, fast = witness(), witness()
            sample.visit(public)
            _walk(sample, fast, _visits(witness))
            if public.calls != fast.calls:
                return False
        return True
    except Exception:  # any drift in LibCST's internals: its own walk
        return False


WALK = _probe()
TRANSFORM = True  # the transformer walk too (tests turn it off to compare)
