"""What a row ends as when it has no answer, and the one-paragraph account of a whole run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Failed:
    """The slot of a row that got no answer: falsy, with the error kept for inspection.

    A partial answer is never kept: a stream that broke off leaves a ``Failed`` too.
    """

    reason: str  # the error's class name, e.g. "RateLimitError"
    message: str
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, exc: BaseException) -> Failed:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return cls(type(exc).__name__, message, exc)

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"<failed: {self.reason}>"


@dataclass
class Summary:
    """How a run went: rows answered, from the log, failed (by reason), and not started."""

    total: int = 0
    answered: int = 0
    from_log: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def not_started(self) -> int:
        return max(self.total - self.answered - self.failed, 0)

    def count(self, value: Any) -> None:
        """Tally one finished row (an answer or a ``Failed``)."""
        if isinstance(value, Failed):
            self.failures[value.reason] += 1
            self.examples.setdefault(value.reason, value.message)
        else:
            self.answered += 1

    def __str__(self) -> str:
        text = f"{self.answered:,} of {self.total:,} rows answered"
        if self.from_log:
            text += f" ({self.from_log:,} from the log)"
        if self.failed:
            reasons = "; ".join(f"{n} {reason}: {self.examples[reason]}" for reason, n in self.failures.most_common())
            text += f"; {self.failed:,} failed ({reasons})"
        if self.interrupted:
            text += f"; interrupted, {self.not_started:,} rows not sent"
        if self.failed or self.interrupted:
            text += ". Failed rows hold nbllm.Failed values; run the same call again to send only the rows without an answer."
        elif self.from_log:  # a reused answer is never silent: the model or server may have changed since
            text += '. Rows from the log were not asked again; cache="off" asks every row.'
        return text + ("" if text.endswith(".") else ".")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))
