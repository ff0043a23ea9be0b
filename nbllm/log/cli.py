"""``nbllm logs`` and ``nbllm cache import``: the exchange log in a terminal.

    nbllm logs [-n N] [--provider ID] [--model M] [--search TEXT] [--since WHEN] [--json]
    nbllm logs show ID [--json]     one exchange in full
    nbllm logs path                 where the log is (or that it is turned off)
    nbllm logs usage [--json]       tokens (and cost) by provider and model: today and all time
    nbllm cache import NOTEBOOK...  load the answers saved in notebooks into the log, for replay

Building these parsers imports nothing heavy; sqlite3 loads when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nbllm.errors import ConfigError, NbllmError


class LogUsage(Exception):
    """A usage mistake in a logs command (exit 2)."""


def configure(sub: Any) -> None:
    p = sub.add_parser("logs", help="the exchange log: list, show ID, path, usage")
    p.add_argument("what", nargs="*", metavar="[show ID | path | usage]")
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many exchanges to list (default 20)")
    p.add_argument("--provider", metavar="ID")
    p.add_argument("--model")
    p.add_argument("--search", metavar="TEXT", help="only exchanges whose prompt, answer or system prompt contains TEXT")
    p.add_argument("--since", metavar="WHEN", help="today, yesterday, 30m, 2h, 7d or a date/time")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("cache", help="the answer cache: import NOTEBOOK... loads saved answers for replay")
    p.add_argument("action", choices=["import"])
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    p.set_defaults(func=cmd_cache)


def _store(required: bool) -> Any:
    from nbllm.log.paths import log_path, off_reason
    from nbllm.log.store import store_at

    path = log_path()
    if path is None:
        if required:
            raise ConfigError(f"The exchange log is turned off ({off_reason()}), so there is nothing to read or "
                              "import into. Unset NBLLM_LOG (or set it to a file) to turn it on.")
        return None
    return store_at(path)


def _print(text: str) -> None:
    from nbllm.secrets import redact

    sys.stdout.write(redact(text) + "\n")
    sys.stdout.flush()


def _dump(value: Any) -> None:
    _print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def cmd_logs(args: argparse.Namespace) -> int:
    what = list(args.what)
    if not what:
        return list_logs(args)
    if what == ["path"]:
        from nbllm.log.paths import log_path, off_reason

        path = log_path()
        _print(str(path) if path else f"off ({off_reason()})")
        return 0
    if what == ["usage"]:
        return show_usage(args)
    if what[0] == "show":
        if len(what) != 2:
            raise LogUsage("logs show takes one exchange id (a number from `nbllm logs`)")
        return show_one(args, what[1])
    raise LogUsage(f"unknown logs command {' '.join(what)!r}: use `nbllm logs`, `nbllm logs show ID`, "
                   "`nbllm logs path` or `nbllm logs usage`")


def list_logs(args: argparse.Namespace) -> int:
    from nbllm.log.queries import Filters, parse_since, recent
    from nbllm.log.report import exchanges_table

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise LogUsage(str(exc)) from None
    if args.n < 0:
        raise LogUsage("-n takes a number of exchanges, 0 or more")
    filters = Filters(limit=args.n, provider=args.provider, model=args.model, search=args.search, since=since)
    rows = _safely(lambda store: recent(store, filters), [])
    if args.json:
        _dump(rows)
    else:
        _print(str(exchanges_table(rows)) if rows else "No exchanges logged yet.")
    return 0


def show_one(args: argparse.Namespace, raw_id: str) -> int:
    from nbllm.log.queries import one
    from nbllm.log.report import exchange_text

    if not raw_id.isdigit():
        raise LogUsage(f"logs show takes an exchange id (a number from `nbllm logs`), not {raw_id!r}")
    row = _safely(lambda store: one(store, int(raw_id)), None)
    if row is None:
        raise NbllmError(f"No exchange {raw_id} in the log; `nbllm logs` lists the ids there are.")
    if args.json:
        _dump(row)
    else:
        _print(exchange_text(row))
    return 0


def show_usage(args: argparse.Namespace) -> int:
    from nbllm.log.queries import start_of_today, usage

    if not args.json:
        from nbllm.log.report import usage

        _print(str(_safely(lambda _store: usage(this_session=False), None) or usage(this_session=False)))
        return 0
    prices = load_prices()
    today = _safely(lambda store: usage(store, since=start_of_today()), [])
    total = _safely(lambda store: usage(store), [])
    _dump({"today": [asdict(r) for r in today], "all_time": [asdict(r) for r in total],
           "prices": {pid: asdict(p) for pid, p in prices.items()}})
    return 0


def load_prices() -> dict[str, Any]:
    from nbllm.config import load_config
    from nbllm.log.queries import prices

    return prices(load_config())


def _safely(query: Any, empty: Any) -> Any:
    """Run a query on the log; a log that is off or missing is empty, a broken one a clear error."""
    import sqlite3

    from nbllm.log.queries import unreadable

    store = _store(required=False)
    if store is None:
        return empty
    try:
        return query(store)
    except (sqlite3.Error, OSError) as exc:
        raise unreadable(store.path, exc) from None


def cmd_cache(args: argparse.Namespace) -> int:
    """Import every notebook; a bad one is reported and the others still imported (exit 1 then)."""
    import sqlite3

    from nbllm.log.notebooks import import_notebook

    store = _store(required=True)
    failed = 0
    for name in args.notebooks:
        try:
            done = import_notebook(store, Path(name))
        except NbllmError as exc:
            sys.stderr.write(f"nbllm: {exc.message}\n")
            failed += 1
            continue
        except (sqlite3.Error, OSError) as exc:
            raise NbllmError(f"The exchange log {store.path} could not be written ({exc}); nothing more was "
                             "imported. Point NBLLM_LOG at a writable file and run the import again.") from None
        _print(f"{name}: {done.added} answer(s) imported, {done.known} already in the log")
        if done.malformed:
            sys.stderr.write(f"nbllm: {name}: {done.malformed} saved answer(s) left out: their nbllm metadata is not "
                             "what nbllm writes (a fingerprint of 64 hex digits and a text answer).\n")
            failed += 1
        elif not done.added + done.known:
            sys.stderr.write(f"nbllm: {name} holds no saved %%llm answers (outputs with nbllm metadata): run it "
                             "with nbllm and save it with its outputs, then import it.\n")
    return 1 if failed else 0
