"""Several codemods over one resolved tree in one walk, with the result of running them in turn.

Why batch (one codemod per concern, each concern in its own class; docs/converter.md#how-it-is-built):
a pass costs a scope resolution, a whole-tree walk and a codegen, and the last two concerns,
EnvKeys and ModelNames, change nearly every converted notebook. They rewrite disjoint nodes (key
variable names and key literals; model literals) and neither reads anything the other writes, so
one walk that hands each node to both, in pass order, builds the same tree. Events keep the
order of separate passes: all of the first codemod's, then the next one's.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import libcst as cst

from nbllm.convert.codemods.base import NbllmCommand
from nbllm.convert.codemods.fastmeta import SharedWrapper


class _Walk(cst.CSTTransformer):
    """Each node to every codemod in order, each seeing the previous one's updated node."""

    def __init__(self, commands: list[NbllmCommand]) -> None:
        super().__init__()
        self.commands = commands
        self.skip: list[cst.CSTNode | None] = [None] * len(commands)  # node whose children one skips

    def on_visit(self, node: cst.CSTNode) -> bool:
        for i, command in enumerate(self.commands):
            if self.skip[i] is None and not command.on_visit(node):
                self.skip[i] = node
        return True

    def attribute_hooks(self) -> bool:
        """Whether any codemod reacts to attributes (fastwalk.py skips those calls otherwise)."""
        return any(c.attribute_hooks() for c in self.commands)

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        for i, command in enumerate(self.commands):
            if self.skip[i] is None:
                command.on_visit_attribute(node, attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        for i, command in enumerate(self.commands):
            if self.skip[i] is None:
                command.on_leave_attribute(original_node, attribute)

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> Any:
        result: Any = updated_node
        for i, command in enumerate(self.commands):
            if self.skip[i] is original_node:
                self.skip[i] = None
            elif self.skip[i] is not None:
                continue
            # A node replaced by another kind (or removed) is new to the later codemods: as
            # separate passes they would find no metadata for it and leave it alone.
            if type(result) is not type(original_node):
                continue
            result = command.on_leave(original_node, result)
        return result


def transform_batched(commands: list[NbllmCommand], wrapper: SharedWrapper) -> cst.Module:
    """Run commands over wrapper.module in one walk; events and their lines as separate passes give."""
    scratch = commands[0].scratch
    before = len(scratch.events)
    previous = [c.context for c in commands]
    try:
        with ExitStack() as stack:
            for command in commands:
                command.context = replace(command.context, wrapper=wrapper)
                stack.enter_context(command.resolve(wrapper))
            result = wrapper.module.visit(_Walk(commands))
        lines = wrapper.start_lines() if any(c._pending for c in commands) else {}
        for command in commands:
            for event, node in command._pending:
                event.line = lines.get(node, 0)
        scratch.events[before:] = [event for c in commands for event, _ in c._pending]
    finally:
        for command, context in zip(commands, previous, strict=True):
            command.context = context
            command._pending = []
    return result  # type: ignore[return-value]
