"""Per-process caches for libcst's fixed per-pass costs (pure: they depend only on classes).

Profiling a changed notebook showed that, besides resolving metadata, each codemod pass paid
twice for Python introspection that gives the same answer every time: the matcher-decorator
scan in ``MatcherDecoratableTransformer.__init__`` (``dir()`` over ~900 visitor methods, ~15 ms
a pass) and ``inspect.getmembers`` over every metadata provider when the wrapper batches them.
Both are looked up once per class here. Traversal itself went through the matcher machinery and
four ``getattr`` calls with formatted names per node (a quarter of a pass's time, with no
matchers in use); ``FastDispatch`` calls the class's visit/leave methods from a table instead.

Some of this leans on LibCST internals (``libcst._batched_visitor``, ``libcst._nodes.internal``,
``Module._codegen``, the matcher tables of ``MatcherDecoratableTransformer``). It is a fast path
only: at import the internals are probed (they must exist and give what the public API gives on
a sample), and when they differ, or ``NBLLM_LIBCST_PUBLIC=1`` is set, every function here takes
the public LibCST path instead, with the same results (tests/test_convert_fastpath.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import MethodType
from typing import Any

import libcst as cst
from libcst import BatchableCSTVisitor, CSTTransformer
from libcst.codemod import Codemod, VisitorBasedCodemodCommand
from libcst.matchers import MatcherDecoratableTransformer
from libcst.metadata import MetadataWrapper, PositionProvider

try:
    from libcst._batched_visitor import _BatchedCSTVisitor
    from libcst._nodes.internal import CodegenState
except ImportError:  # a LibCST that moved them: the public path below
    _BatchedCSTVisitor = None  # type: ignore[assignment,misc]
    CodegenState = object  # type: ignore[assignment,misc]

_VISITOR_NAMES: dict[type, tuple[str, ...]] = {}
_NO_MATCHERS: dict[type, bool] = {}
_HOOKS: dict[type, tuple[dict[str, Callable[..., Any]], dict[str, Callable[..., Any]], bool]] = {}
_MATCHER_HOOKS = ("on_visit", "on_leave", "on_visit_attribute", "on_leave_attribute")


def _hooks(cls: type) -> tuple[dict[str, Callable[..., Any]], dict[str, Callable[..., Any]], bool]:
    """(visit_* by node type name, leave_* by node type name, any per-attribute hooks) of a class."""
    hooks = _HOOKS.get(cls)
    if hooks is None:
        visit: dict[str, Callable[..., Any]] = {}
        leave: dict[str, Callable[..., Any]] = {}
        attrs = False
        for name in dir(cls):
            kind, _, rest = name.partition("_")
            if kind not in ("visit", "leave") or not rest:
                continue
            fn = getattr(cls, name)
            if not callable(fn) or getattr(fn, "_is_no_op", False):
                continue
            if "_" in rest:  # visit_Call_func: node types have no underscore
                attrs = True
            else:
                (visit if kind == "visit" else leave)[rest] = fn
        hooks = _HOOKS[cls] = (visit, leave, attrs)
    return hooks


class FastDispatch:
    """CSTTransformer's dispatch, the same calls in the same order, from a per-class table
    (LibCST's own matcher-aware dispatch when the fast path is off)."""

    _visits: dict[str, Callable[..., Any]]  # the class's tables, put on the instance by init_codemod
    _leaves: dict[str, Callable[..., Any]]

    def on_visit(self, node: cst.CSTNode) -> bool:
        if not FAST:
            return super().on_visit(node)  # type: ignore[misc,no-any-return]
        fn = self._visits.get(type(node).__name__)
        return fn is None or fn(self, node) is not False

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> Any:
        if not FAST:
            return super().on_leave(original_node, updated_node)  # type: ignore[misc]
        fn = self._leaves.get(type(original_node).__name__)
        return updated_node if fn is None else fn(self, original_node, updated_node)

    def attribute_hooks(self) -> bool:
        """Whether on_visit_attribute/on_leave_attribute do anything for this codemod."""
        return not FAST or _hooks(type(self))[2] or not _NO_MATCHERS.get(type(self), False)

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if not FAST:
            super().on_visit_attribute(node, attribute)  # type: ignore[misc]
        elif _hooks(type(self))[2]:
            CSTTransformer.on_visit_attribute(self, node, attribute)  # type: ignore[arg-type]

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        if not FAST:
            super().on_leave_attribute(original_node, attribute)  # type: ignore[misc]
        elif _hooks(type(self))[2]:
            CSTTransformer.on_leave_attribute(self, original_node, attribute)  # type: ignore[arg-type]


_NEWLINE = re.compile(r"\r\n?|\n")  # what libcst's PositionProvider counts as a line break


@dataclass
class _LineState(CodegenState):  # type: ignore[misc,valid-type]
    """Codegen that also notes each node's start line, as PositionProvider's ``start.line``.

    PositionProvider tracks lines and columns for every token and builds two positions per node
    (a separate whole-module codegen per resolution); the converter only needs start lines, and
    needs the code of every changed tree anyway, so both come from this one codegen.
    """

    line: int = 1
    lines: dict[cst.CSTNode, int] = field(default_factory=dict)
    stack: list[int] = field(default_factory=list)

    def add_indent_tokens(self) -> None:
        self.tokens.extend(self.indent_tokens)
        for token in self.indent_tokens:
            self.add_lines(token)

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        self.add_lines(value)

    def add_lines(self, value: str) -> None:
        if "\n" in value or "\r" in value:
            self.line += len(_NEWLINE.findall(value))

    def before_codegen(self, node: cst.CSTNode) -> None:
        self.stack.append(self.line)

    def after_codegen(self, node: cst.CSTNode) -> None:
        start = self.stack.pop()
        self.lines.setdefault(node, start)  # a syntactic start recorded already wins

    @contextmanager
    def record_syntactic_position(self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None,
                                  end_node: cst.CSTNode | None = None) -> Iterator[None]:
        start = self.line
        try:
            yield
        finally:
            self.lines[node] = self.lines[start_node] if start_node is not None else start


class StartLines:
    """Node -> start line (PositionProvider's ``start.line``) in one tree, looked up per node.

    ``outer`` holds the lines of the nodes outside the top-level statements (and, on the public
    path, of every node); ``spans`` the first line of each top-level statement with the lines of
    the nodes in it counted from 1.
    """

    def __init__(self, module: cst.Module, outer: dict[cst.CSTNode, int],
                 spans: list[tuple[int, dict[cst.CSTNode, int]]]) -> None:
        self.module, self.outer, self.spans = module, outer, spans

    def get(self, node: cst.CSTNode, default: int = 0) -> int:
        found = [first + line - 1 for first, lines in self.spans if (line := lines.get(node)) is not None]
        if node in self.outer:
            found.append(self.outer[node])
        if len(found) > 1:  # one node object in two places: the line one whole-module codegen gives it
            state = _LineState(default_indent=self.module.default_indent, default_newline=self.module.default_newline)
            self.module._codegen(state)
            return state.lines.get(node, default)
        return found[0] if found else default


class Codegen:
    """``module.code`` and start lines for the successive trees of one notebook.

    A pass rebuilds only the statements it changed; every other top-level statement is the same
    object in the next tree (fastwalk.py keeps what it does not change), so its tokens and
    relative lines are kept from the previous codegen instead of generated again.
    """

    def __init__(self) -> None:
        self._done: dict[cst.CSTNode, tuple[list[str], dict[cst.CSTNode, int], int]] = {}
        self._style: tuple[str, str] | None = None

    def code_and_lines(self, module: cst.Module) -> tuple[str, StartLines]:
        """``module.code`` and every node's start line."""
        if not FAST:
            positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
            return module.code, StartLines(module, {node: pos.start.line for node, pos in positions.items()}, [])
        style = (module.default_indent, module.default_newline)
        if style != self._style:
            self._done, self._style = {}, style
        state = _LineState(default_indent=module.default_indent, default_newline=module.default_newline)
        spans: list[tuple[int, dict[cst.CSTNode, int]]] = []
        # Module._codegen, with each top-level statement's part taken from _done when it is there
        state.before_codegen(module)
        for line in module.header:
            line._codegen(state)
        for stmt in module.body:
            done = self._done.get(stmt)
            if done is None:
                part = _LineState(default_indent=module.default_indent, default_newline=module.default_newline)
                stmt._codegen(part)
                done = self._done[stmt] = (part.tokens, part.lines, part.line - 1)
            spans.append((state.line, done[1]))
            state.tokens.extend(done[0])
            state.line += done[2]
        for line in module.footer:
            line._codegen(state)
        if not module.has_trailing_newline:
            state.pop_trailing_newline()
        elif not state.tokens:
            state.add_token(state.default_newline)
        state.after_codegen(module)
        return "".join(state.tokens), StartLines(module, state.lines, spans)


class SharedWrapper(MetadataWrapper):
    """A MetadataWrapper whose batched provider traversal skips the per-instance method scan.

    One wrapper is kept across codemod passes while they leave the tree alone, so its resolved
    metadata (scope, qualified names, positions) is reused instead of computed again. A batch
    whose providers only act on the Module node is not walked further (three empty whole-tree
    walks per resolution before).
    """

    def __init__(self, module: cst.Module, lines: StartLines | None = None, codegen: Codegen | None = None) -> None:
        super().__init__(module, unsafe_skip_copy=True)
        self._lines = lines
        self._codegen = codegen or Codegen()

    def start_lines(self) -> StartLines:
        """Start line of every node (computed on first use unless the pipeline passed them)."""
        if self._lines is None:
            self._lines = self._codegen.code_and_lines(self.module)[1]
        return self._lines

    def visit_batched(self, visitors: Iterable[BatchableCSTVisitor], before_visit: Any = None,
                      after_leave: Any = None) -> cst.CSTNode:
        if not FAST:
            return super().visit_batched(visitors, before_visit, after_leave)
        visitors = list(visitors)
        with ExitStack() as stack:
            for v in visitors:
                stack.enter_context(v.resolve(self))
            methods: dict[str, list[Any]] = {}
            for v in visitors:
                names = _VISITOR_NAMES.get(type(v))
                if names is None:
                    names = _VISITOR_NAMES[type(v)] = tuple(v.get_visitors())
                for name in names:
                    methods.setdefault(name, []).append(getattr(v, name))
            if before_visit is None and after_leave is None and set(methods) <= {"visit_Module"}:
                # libcst's scope and expression-context providers do all their work in
                # visit_Module (with a visitor of their own), and the positions step batches no
                # provider at all: walking the rest of the tree would call nothing.
                for fn in methods.get("visit_Module", []):
                    fn(self.module)
                return self.module
            batched = _BatchedCSTVisitor(methods, before_visit=before_visit, after_leave=after_leave)
            return self.module.visit(batched)


def init_codemod(command: MatcherDecoratableTransformer, context: Any) -> None:
    """``VisitorBasedCodemodCommand.__init__`` with the matcher scan done once per class.

    A class without matcher decorators (all of nbllm's) gets the empty tables the scan would
    have produced; a class that has any takes libcst's full path every time, with the matcher-aware
    traversal hooks bound over ``FastDispatch``'s.
    """
    cls = type(command)
    command._visits, command._leaves, _ = _hooks(cls)  # type: ignore[attr-defined]
    if not FAST:
        VisitorBasedCodemodCommand.__init__(command, context)  # type: ignore[arg-type]
        return
    if _NO_MATCHERS.get(cls):
        Codemod.__init__(command, context)  # type: ignore[arg-type]
        CSTTransformer.__init__(command)
        command._extra_visit_funcs = {}
        command._extra_leave_funcs = {}
        command._matchers = {}
        return
    Codemod.__init__(command, context)  # type: ignore[arg-type]
    MatcherDecoratableTransformer.__init__(command)
    _NO_MATCHERS[cls] = not (command._extra_visit_funcs or command._extra_leave_funcs or command._matchers)
    if not _NO_MATCHERS[cls]:
        for hook in _MATCHER_HOOKS:
            setattr(command, hook, MethodType(getattr(MatcherDecoratableTransformer, hook), command))


def _probe() -> bool:
    """Whether LibCST's internals still give what its public API gives (checked on a sample)."""
    if _BatchedCSTVisitor is None or os.environ.get("NBLLM_LIBCST_PUBLIC"):
        return False
    sample = cst.parse_module("# head\nimport os\nif x:\n    y = f(1,\n          2)  # c\n\nclass A:\n    z: int = 3\n# end")
    try:
        codegen = Codegen()  # the second tree reuses the first one's statements
        changed = sample.with_changes(body=(sample.body[0], cst.parse_statement("w = (1,\n 2)\n"), *sample.body[1:]))
        for tree in (sample, changed):
            code, lines = codegen.code_and_lines(tree)
            positions = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)
            if code != tree.code or any(lines.get(n) != p.start.line for n, p in positions.items()):
                return False

        class Probe(FastDispatch, VisitorBasedCodemodCommand):
            pass

        command = Probe.__new__(Probe)
        MatcherDecoratableTransformer.__init__(command)
        tables = (command._extra_visit_funcs, command._extra_leave_funcs, command._matchers)
        return all(isinstance(t, dict) for t in tables) and callable(getattr(CodegenState, "add_token", None))
    except Exception:  # any drift in the internals: the public path
        return False


FAST = True  # read by every function above; settled once by the probe below
FAST = _probe()
