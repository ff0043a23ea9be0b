"""The log as tables: what ``nbllm logs`` prints and ``%llm log``/``%llm usage`` show, in one place."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from nbllm.log.queries import Price, UsageRow
from nbllm.status import clip
from nbllm.tables import Table


def local_time(stored: str) -> str:
    """A stored UTC time as local wall-clock time, to the second."""
    try:
        return datetime.fromisoformat(stored).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stored


def _tokens(row: dict[str, Any]) -> str:
    total = row.get("total_tokens") or (row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0)
    return str(total) if total else "-"


def _status(row: dict[str, Any]) -> str:
    if row.get("error_class"):
        return str(row["error_class"])
    return "cached" if row.get("cached") else ("imported" if row.get("source") == "import" else "ok")


LOG_HEADERS = ["ID", "TIME", "SOURCE", "PROVIDER:MODEL", "TOKENS", "TOTAL", "STATUS", "PROMPT"]
USAGE_HEADERS = ["PERIOD", "PROVIDER", "MODEL", "CALLS", "IN", "OUT", "TOTAL", "COST"]


def exchanges_table(rows: list[dict[str, Any]]) -> Table:
    """One line per exchange, newest first."""
    return Table(LOG_HEADERS, [
        [str(r["id"]), local_time(r["time"]), r["source"], f"{r['provider']}:{r['model']}", _tokens(r),
         "-" if r.get("total_s") is None else f"{r['total_s']:.2f} s", _status(r), clip(r.get("prompt") or "", 50)]
        for r in rows])


def exchange_text(row: dict[str, Any]) -> str:
    """One exchange in full: its figures, the messages sent, the answer (and reasoning, error)."""
    lines = [f"exchange {row['id']}  {local_time(row['time'])}  ({row['source']})",
             f"provider:    {row['provider']} ({row.get('host') or 'no host'})",
             f"model:       {row['model']}",
             f"params:      {json.dumps(row.get('params') or {}, ensure_ascii=False)}",
             f"tokens:      {row.get('prompt_tokens')} in, {row.get('completion_tokens')} out, {_tokens(row)} total",
             f"time:        first token {_seconds(row.get('first_token_s'))}, total {_seconds(row.get('total_s'))}",
             f"status:      {_status(row)}" + (f" (finish: {row['finish_reason']})" if row.get("finish_reason") else ""),
             f"fingerprint: {row['fingerprint']}",
             f"nbllm:       {row['version']}" + (f", notebook {row['notebook']}" if row.get("notebook") else "")]
    if row.get("error_class"):
        lines.append(f"error:       {row['error_class']}: {row.get('error_message') or ''}")
    for message in row.get("messages") or []:
        lines += ["", f"[{message.get('role')}]", str(message.get("content"))]
    if row.get("reasoning"):
        lines += ["", "[reasoning]", row["reasoning"]]
    lines += ["", "[answer]", row.get("answer") or ""]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def usage_table(periods: list[tuple[str, list[UsageRow]]], prices: dict[str, Price]) -> Table:
    """Totals by provider and model for each period, with cost where the config file gives prices;
    a period over several models ends with its total."""
    rows: list[list[str]] = []
    for period, found in periods:
        if not found:
            rows.append([period, "no calls", "", "0", "0", "0", "0", "-"])
            continue
        rows += [[period, r.provider, r.model, *_figures([r]), _cost([r], prices)] for r in found]
        if len(found) > 1:
            rows.append([period, "(total)", "", *_figures(found), _cost(found, prices)])
    return Table(USAGE_HEADERS, rows)


def _figures(rows: list[UsageRow]) -> list[str]:
    return [str(sum(getattr(r, name) for r in rows))
            for name in ("calls", "prompt_tokens", "completion_tokens", "total_tokens")]


def _cost(rows: list[UsageRow], prices: dict[str, Price]) -> str:
    """The rows' cost in each currency they are priced in ("-" when none is priced)."""
    sums: dict[str, float] = {}
    for r in rows:
        if r.provider in prices:
            price = prices[r.provider]
            sums[price.currency] = sums.get(price.currency, 0.0) + price.cost(r)
    return ", ".join(f"{amount:.4f} {currency}".rstrip() for currency, amount in sums.items()) or "-"


# -- what the magics and the CLI show -------------------------------------------------------------
def recent(n: int = 10) -> Table | str:
    """The last n exchanges (``%llm log N``), or why there are none."""
    from nbllm.log.paths import log_path, off_reason
    from nbllm.log.queries import Filters, recent
    from nbllm.log.store import store_at

    path = log_path()
    if path is None:
        return f"The exchange log is turned off ({off_reason()})."
    with _readable(path):
        rows = recent(store_at(path), Filters(limit=n))
    return exchanges_table(rows) if rows else "No exchanges logged yet."


def usage(*, this_session: bool) -> Table | str:
    """Token totals (and cost where the config file gives prices): this session, today and all time."""
    from nbllm.config import load_config
    from nbllm.log.paths import log_path, off_reason
    from nbllm.log.queries import prices, start_of_today
    from nbllm.log.queries import usage as totals
    from nbllm.log.record import SESSION_ID
    from nbllm.log.store import store_at

    path = log_path()
    if path is None:
        return f"The exchange log is turned off ({off_reason()}), so nothing is totalled."
    store, known = store_at(path), prices(load_config())
    with _readable(path):
        periods = [("this session", totals(store, session=SESSION_ID))] if this_session else []
        periods += [("today", totals(store, since=start_of_today())), ("all time", totals(store))]
    return usage_table(periods, known)


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """A broken log file is one paragraph in the notebook too, not a SQLite traceback."""
    import sqlite3

    from nbllm.log.queries import unreadable

    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise unreadable(path, exc) from None
