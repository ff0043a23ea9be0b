"""Reading the log back: recent exchanges (filtered), one exchange in full, token totals.

Shared by ``nbllm logs`` and ``%llm log``/``%llm usage`` so the terminal and the notebook say the
same thing. Listing walks the primary key backwards and stops after N matches, so it costs the
same on a log of a hundred rows or a million.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from nbllm.errors import ConfigError, NbllmError
from nbllm.log.store import SCHEMA_VERSION, LogStore

MAX_ID = 2**63 - 1  # SQLite's largest integer: a bigger id or limit is no row / every row

LIST_COLUMNS = ("id", "time", "source", "provider", "model", "prompt", "answer", "prompt_tokens",
                "completion_tokens", "total_tokens", "first_token_s", "total_s", "error_class", "cached",
                "fingerprint")


@dataclass(frozen=True)
class Filters:
    limit: int = 20
    provider: str | None = None
    model: str | None = None
    search: str | None = None
    since: str | None = None  # ISO UTC, as stored


def recent(store: LogStore, filters: Filters) -> list[dict[str, Any]]:
    """The newest exchanges first, at most ``filters.limit`` of them."""
    where, args = _where(filters)
    # The ids first (from an index where one fits), then only those rows: sorting whole rows would
    # read every matching row's long texts just to keep N of them.
    sql = (f"SELECT {', '.join(LIST_COLUMNS)} FROM exchanges WHERE id IN "
           f"(SELECT id FROM exchanges {where} ORDER BY id DESC LIMIT ?) ORDER BY id DESC")
    with store.reading() as conn:
        if conn is None:
            return []
        return [dict(row) for row in conn.execute(sql, [*args, min(max(filters.limit, 0), MAX_ID)])]


def _where(filters: Filters) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("provider", filters.provider), ("model", filters.model)):
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
    if filters.since:
        clauses.append("time >= ?")
        args.append(filters.since)
    if filters.search:
        pattern = "%" + filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # the prompt and answer of each exchange (and its system prompt), not the history it resent:
        # a word from the first turn would otherwise match every later turn of the conversation
        clauses.append("(prompt LIKE ? ESCAPE '\\' OR answer LIKE ? ESCAPE '\\' OR system LIKE ? ESCAPE '\\')")
        args += [pattern, pattern, pattern]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def one(store: LogStore, exchange_id: int) -> dict[str, Any] | None:
    """Every column of one exchange, with the JSON columns decoded."""
    if not 0 <= exchange_id <= MAX_ID:
        return None
    with store.reading() as conn:
        if conn is None:
            return None
        row = conn.execute("SELECT * FROM exchanges WHERE id = ?", (exchange_id,)).fetchone()
    if row is None:
        return None
    found = dict(row)
    for column in ("messages", "params"):
        found[column] = json.loads(found[column]) if found[column] else None
    found["cached"] = bool(found["cached"])
    return found


# -- usage totals ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class UsageRow:
    provider: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def usage(store: LogStore, *, session: str | None = None, since: str | None = None) -> list[UsageRow]:
    """Tokens by provider and model, for live calls only (cache hits and imports cost nothing)."""
    clauses, args = ["cached = 0", "source != 'import'"], []
    if session:
        clauses.append("session = ?")
        args.append(session)
    if since:
        clauses.append("time >= ?")
        args.append(since)
    sql = ("SELECT provider, model, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
           " COALESCE(SUM(COALESCE(total_tokens, COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0))), 0)"
           f" FROM exchanges WHERE {' AND '.join(clauses)} GROUP BY provider, model ORDER BY provider, model")
    with store.reading() as conn:
        if conn is None:
            return []
        return [UsageRow(*row) for row in conn.execute(sql, args)]


@dataclass(frozen=True)
class Price:
    """Per million tokens, in the currency the config file names (no built-in price table)."""

    input: float
    output: float
    currency: str = ""

    def cost(self, row: UsageRow) -> float:
        return (row.prompt_tokens * self.input + row.completion_tokens * self.output) / 1_000_000


def prices(config: dict[str, Any]) -> dict[str, Price]:
    """``[providers.ID.prices]`` tables: ``input`` and ``output`` per million tokens, optional ``currency``."""
    from nbllm.config import catalogue_id  # [providers.Kimi.prices] prices the built-in kimi

    found: dict[str, Price] = {}
    for pid, table in (config.get("providers") or {}).items():
        raw = table.get("prices") if isinstance(table, dict) else None
        if raw is None:
            continue
        try:
            found[catalogue_id(pid)] = Price(float(raw["input"]), float(raw["output"]), str(raw.get("currency", "")))
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigError(f"[providers.{pid}.prices] in the nbllm config file needs numbers `input` and "
                              f"`output` (per million tokens) and may name a `currency` ({exc!r}).") from None
    return found


# -- time filters ---------------------------------------------------------------------------------
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def start_of_today() -> str:
    """Local midnight, in the stored time format."""
    midnight = datetime.combine(datetime.now().date(), time()).astimezone()
    return midnight.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def parse_since(text: str) -> str:
    """``today``, ``yesterday``, ``30m``/``2h``/``7d``/``1w`` ago, or a date/time (local unless it says)."""
    value = text.strip().lower()
    if value == "today":
        return start_of_today()
    if value == "yesterday":
        return (datetime.fromisoformat(start_of_today()) - timedelta(days=1)).isoformat(timespec="milliseconds")
    relative = _RELATIVE.match(value)
    if relative:
        try:
            delta = timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
            return (datetime.now(timezone.utc) - delta).isoformat(timespec="milliseconds")
        except OverflowError:  # 999999999d: before the year 1, so every exchange
            return datetime.min.replace(tzinfo=timezone.utc).isoformat(timespec="milliseconds")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since takes today, yesterday, 30m, 2h, 7d, 1w or a date such as 2026-11-30 "
                         f"(got {text!r})") from None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


# -- a log that cannot be read --------------------------------------------------------------------
def unreadable(path: Path, exc: BaseException) -> NbllmError:
    """The one error for a log file nbllm cannot read: a newer nbllm's file says so, any other says
    how to start afresh (the file itself is never replaced or repaired)."""
    version = file_version(path)
    if version is not None and version > SCHEMA_VERSION:
        return NbllmError(f"The exchange log {path} was written by a newer nbllm (schema {version}; this one reads "
                          f"up to {SCHEMA_VERSION}) and could not be read ({exc}). Upgrade nbllm, or point NBLLM_LOG "
                          "at another file.")
    return NbllmError(f"The exchange log {path} could not be read ({exc}). Move the file away to start a new log, "
                      "or point NBLLM_LOG at another file.")


def file_version(path: Path) -> int | None:
    """The schema version a log file says it has, read without writing anything; None if unreadable."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.5)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except (sqlite3.Error, OSError, ValueError):
        return None
