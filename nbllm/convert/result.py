"""Result values of a conversion run (plain dataclasses: picklable for --jobs, easy to report)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nbllm.secrets import redact

STATUSES = ("changed", "unchanged", "skipped", "failed")


@dataclass
class Item:
    """A change or warning: kind, message, cell (1-based, counting every cell) and line in that cell."""

    kind: str
    message: str
    cell: int | None = None
    line: int | None = None
    warning: bool = False


@dataclass
class CellDiff:
    cell: int
    before: str
    after: str


@dataclass
class FileResult:
    """What happened to one file: changed / unchanged / skipped / failed, with every change and warning."""

    path: str
    status: str
    reason: str | None = None
    items: list[Item] = field(default_factory=list)
    diffs: list[CellDiff] = field(default_factory=list)
    written: str | None = None

    @property
    def changes(self) -> list[Item]:
        return [i for i in self.items if not i.warning]

    @property
    def warnings(self) -> list[Item]:
        return [i for i in self.items if i.warning]

    def to_json(self) -> dict[str, Any]:
        reason = redact(self.reason) if self.reason else None
        return {"path": self.path, "status": self.status, "reason": reason, "written": self.written,
                "changes": [_item(i) for i in self.changes], "warnings": [_item(i) for i in self.warnings],
                "cells_changed": [d.cell for d in self.diffs]}


def _item(item: Item) -> dict[str, Any]:
    data = asdict(item)
    data.pop("warning")
    data["message"] = redact(item.message)
    return data


@dataclass
class BatchResult:
    """Every file's result plus what the run was (target and model map), for the summary and --report."""

    target: str
    results: list[FileResult] = field(default_factory=list)
    model_map: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> bool:
        return self.count("failed") > 0

    @property
    def changed(self) -> bool:
        return self.count("changed") > 0

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "model_map": self.model_map,
                "summary": {s: self.count(s) for s in STATUSES},
                "files": [r.to_json() for r in self.results]}
