"""A real IPython shell with ``%load_ext nbllm`` whose output the magics tests read back.

Display messages are recorded by IPython's own ``CapturingDisplayPublisher`` (with their
display ids and update flags), stdout/stderr by pytest's ``capsys``. Every run checks that no
registered key string reached any of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell


@dataclass
class Cell:
    result: ExecutionResult
    displays: list[dict[str, Any]]
    stdout: str
    stderr: str

    @property
    def error(self) -> BaseException | None:
        return self.result.error_in_exec or self.result.error_before_exec

    def by_id(self, display_id: str) -> list[dict[str, Any]]:
        return [d for d in self.displays if (d["transient"] or {}).get("display_id") == display_id]

    def answer_updates(self) -> list[dict[str, Any]]:
        """The publishes of the answer display: the in-place one that is not reasoning."""
        ids = [
            (d["transient"] or {}).get("display_id") for d in self.displays
            if d["transient"] and "[reasoning]" not in d["data"].get("text/plain", "")
        ]
        return self.by_id(ids[0]) if ids else []

    def final_answer(self) -> dict[str, Any]:
        return self.answer_updates()[-1]["data"]

    def footer(self) -> str:
        plain = [d["data"]["text/plain"] for d in self.displays if not d["transient"]]
        return plain[0] if plain else ""

    def shown(self) -> str:
        """What the cell printed and displayed once (not in place), as text: tables land here."""
        return self.stdout + "".join(d["data"]["text/plain"] + "\n" for d in self.displays if not d["transient"])

    def everything(self) -> str:
        return json.dumps(self.displays, default=str) + self.stdout + self.stderr


@dataclass
class Shell:
    shell: InteractiveShell
    capsys: pytest.CaptureFixture[str]
    secrets: list[str] = field(default_factory=list)
    publisher_class: type[CapturingDisplayPublisher] = CapturingDisplayPublisher

    def run(self, code: str) -> Cell:
        publisher = self.publisher_class()
        saved = self.shell.display_pub
        self.shell.display_pub = publisher
        self.capsys.readouterr()
        try:
            result = self.shell.run_cell(code, store_history=True)
        finally:
            self.shell.display_pub = saved
        out = self.capsys.readouterr()
        cell = Cell(result, list(publisher.outputs), out.out, out.err)
        for secret in self.secrets:
            assert secret not in cell.everything(), "a key reached the output"
        return cell

    @property
    def magics(self) -> Any:
        return self.shell.magics_manager.registry["LLMMagics"]

    @property
    def ns(self) -> dict[str, Any]:
        return self.shell.user_ns


def open_shell(capsys: pytest.CaptureFixture[str]) -> Iterator[Shell]:
    """The real shell with a freshly loaded extension (so traits start from their defaults).

    Test modules wrap it in their own ``ipy`` fixture: ``yield from open_shell(capsys)``.
    """
    shell = InteractiveShell.instance()
    shell.reset()  # a clean namespace and history: the shell is shared by every test module
    if "nbllm" in shell.extension_manager.loaded:
        shell.run_line_magic("unload_ext", "nbllm")
    shell.run_line_magic("load_ext", "nbllm")
    active = list(shell.display_formatter.active_types)
    yield Shell(shell, capsys)
    shell.display_formatter.active_types = active
    shell.rl_next_input = None
