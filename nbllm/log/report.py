"""The log as text: the tables ``nbllm logs`` and ``%llm log``/``%llm usage`` print, in one place."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from nbllm.log.queries import Price, UsageRow
from nbllm.status import clip, table


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


def exchanges_table(rows: list[dict[str, Any]]) -> str:
    """One line per exchange, newest first."""
    if not rows:
        return "No exchanges logged yet."
    body = [[str(r["id"]), local_time(r["time"]), r["source"], f"{r['provider']}:{r['model']}", _tokens(r),
             "-" if r.get("total_s") is None else f"{r['total_s']:.2f} s", _status(r), clip(r.get("prompt") or "", 50)]
            for r in rows]
    return table(["ID", "TIME", "SOURCE", "PROVIDER:MODEL", "TOKENS", "TOTAL", "STATUS", "PROMPT"], body)


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


def usage_table(title: str, rows: list[UsageRow], prices: dict[str, Price]) -> str:
    """Totals by provider and model, with cost where the config file gives prices."""
    if not rows:
        return f"{title}: no calls."
    body = []
    for r in rows:
        price = prices.get(r.provider)
        cost = f"{price.cost(r):.4f} {price.currency}".rstrip() if price else "-"
        body.append([r.provider, r.model, str(r.calls), str(r.prompt_tokens), str(r.completion_tokens),
                     str(r.total_tokens), cost])
    totals = _currency_totals(rows, prices)
    text = f"{title}:\n" + table(["PROVIDER", "MODEL", "CALLS", "IN", "OUT", "TOTAL", "COST"], body)
    return text + (f"\ncost: {totals}" if totals else "")


def _currency_totals(rows: list[UsageRow], prices: dict[str, Price]) -> str:
    sums: dict[str, float] = {}
    for r in rows:
        if r.provider in prices:
            price = prices[r.provider]
            sums[price.currency] = sums.get(price.currency, 0.0) + price.cost(r)
    return ", ".join(f"{amount:.4f} {currency}".rstrip() for currency, amount in sums.items())


# -- what the magics and the CLI print ------------------------------------------------------------
def recent_text(n: int = 10) -> str:
    """The last n exchanges as a table (``%llm log N``), or why there are none."""
    from nbllm.log.paths import log_path, off_reason
    from nbllm.log.queries import Filters, recent
    from nbllm.log.store import store_at

    path = log_path()
    if path is None:
        return f"The exchange log is turned off ({off_reason()})."
    return exchanges_table(recent(store_at(path), Filters(limit=n)))


def usage_text(*, this_session: bool) -> str:
    """Token totals (and cost where the config file gives prices): this session, today and all time."""
    from nbllm.config import load_config
    from nbllm.log.paths import log_path, off_reason
    from nbllm.log.queries import prices, start_of_today, usage
    from nbllm.log.record import SESSION_ID
    from nbllm.log.store import store_at

    path = log_path()
    if path is None:
        return f"The exchange log is turned off ({off_reason()}), so nothing is totalled."
    store, known = store_at(path), prices(load_config())
    parts = [("This session", usage(store, session=SESSION_ID))] if this_session else []
    parts += [("Today", usage(store, since=start_of_today())), ("All time", usage(store))]
    return "\n\n".join(usage_table(title, rows, known) for title, rows in parts)
