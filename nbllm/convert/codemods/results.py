"""After migration, dict access on results becomes attribute access (v1 results are objects).

``resp['choices'][0]['message']['content']`` -> ``resp.choices[0].message.content`` and
``delta.get('content')`` -> ``delta.content``, only on values that come from a migrated call:
names bound to its result (followed through scopes), loop variables over a stream, and
sub-objects taken from those.
"""

from __future__ import annotations

import re

import libcst as cst
from libcst.metadata import ScopeProvider

from nbllm.convert.codemods.base import NbllmCommand, Scratch, collect, string_value

FIELDS = {"choices", "message", "content", "data", "embedding", "text", "delta", "usage", "total_tokens",
          "prompt_tokens", "completion_tokens", "role", "function_call", "tool_calls", "arguments", "name",
          "finish_reason", "index", "id", "model", "object", "created", "function", "logprobs"}
RESULT_METHODS = ("chat.completions.create", "completions.create", "embeddings.create")


class ResultAccess(NbllmCommand):
    DESCRIPTION = "Turn dict access on migrated results into attribute access."
    METADATA_DEPENDENCIES = (ScopeProvider,)
    TRIGGER = re.compile(r"\[\s*[\"']|\.get\(")

    @classmethod
    def wanted(cls, code: str, scratch: Scratch) -> bool:
        """Only after the v0 migration made clients (v1 code already uses attributes)."""
        return bool(scratch.migrated) and super().wanted(code, scratch)

    def visit_Module(self, node: cst.Module) -> None:
        self.tracked: set[cst.CSTNode] = set()  # target Name nodes holding results
        if not self.scratch.migrated:
            return
        self.access = {a.node: a for s in set(self.metadata[ScopeProvider].values()) if s for a in s.accesses}
        assigns = collect(node, cst.Assign)
        loops = collect(node, cst.For)
        returns = [(fn, r) for fn in collect(node, cst.FunctionDef) for r in collect(fn, cst.Return)
                   if r.value is not None]
        for _ in range(4):  # results flow through a few names and helpers at most
            before = len(self.tracked)
            for fn, ret in returns:
                if fn not in self.tracked and ret.value is not None and self._whole_result(ret.value):
                    self.tracked.add(fn)
            for a in assigns:
                if self._from_result(a.value):
                    self.tracked.update(t.target for t in a.targets if isinstance(t.target, cst.Name))
            for loop in loops:
                if isinstance(loop.target, cst.Name) and self._from_result(loop.iter):
                    self.tracked.add(loop.target)
            if len(self.tracked) == before:
                break

    def _whole_result(self, node: cst.BaseExpression) -> bool:
        """A returned value that is a whole result (a call's, or a name holding one), not a part."""
        if isinstance(node, cst.Name):
            access = self.access.get(node)
            return bool(access) and any(getattr(r, "node", None) in self.tracked for r in access.referents)
        return self._is_call(node)

    def _is_call(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, cst.Await):
            node = node.expression
        if not isinstance(node, cst.Call):
            return False
        if isinstance(node.func, cst.Name):  # a helper that returns a result
            access = self.access.get(node.func)
            return bool(access) and any(getattr(r, "node", None) in self.tracked for r in access.referents)
        name = cst.Module([]).code_for_node(node.func)
        return any(name == f"{c}.{m}" for c in self.scratch.migrated for m in RESULT_METHODS)

    def _root(self, node: cst.BaseExpression) -> cst.BaseExpression:
        while True:
            if isinstance(node, (cst.Subscript, cst.Attribute)):
                node = node.value
            elif isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "get":
                node = node.func.value
            else:
                return node

    def _from_result(self, node: cst.BaseExpression) -> bool:
        root = self._root(node)
        if self._is_call(root):
            return True
        access = self.access.get(root) if isinstance(root, cst.Name) else None
        return bool(access) and any(getattr(r, "node", None) in self.tracked for r in access.referents)

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.BaseExpression:
        if len(original_node.slice) != 1 or not isinstance(original_node.slice[0].slice, cst.Index):
            return updated_node
        key = string_value(original_node.slice[0].slice.value)
        if key not in FIELDS or not self._from_result(original_node.value):
            return updated_node
        self.note(original_node, "migrate", f"['{key}'] -> .{key}")
        return cst.Attribute(value=updated_node.value, attr=cst.Name(key))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = original_node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "get" and original_node.args):
            return updated_node
        key = string_value(original_node.args[0].value)
        if key not in FIELDS or not self._from_result(func.value) or not isinstance(updated_node.func, cst.Attribute):
            return updated_node
        attr = cst.Attribute(value=updated_node.func.value, attr=cst.Name(key))
        self.note(original_node, "migrate", f".get('{key}') -> .{key}")
        if len(original_node.args) < 2:
            return attr
        default = updated_node.args[1].value
        return cst.BooleanOperation(left=attr, operator=cst.Or(), right=default,
                                    lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
