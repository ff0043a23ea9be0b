"""``%%llm --over ROWS``: the cell body is a ``{column}`` template asked once per row (``nbllm.map``)."""

from __future__ import annotations

import argparse
import keyword
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from .ask import call_params, parse_targets

if TYPE_CHECKING:
    from .handler_context import MagicContext

# Options that make no sense row by row: they shape one conversation or one displayed answer.
_SINGLE_ANSWER = {"insert": "--insert", "new": "--new", "with_": "--with", "cells": "--cells", "format": "-f"}


def run_over(ctx: MagicContext, args: argparse.Namespace, cell: str) -> Any:
    """Answer every row of ``args.over`` (a variable) and store the answers in ``-o NAME``."""
    template = cell.strip()
    _check(args, template)
    targets = parse_targets(args.target, args.provider)
    if targets.mode != "single":
        raise UsageError("--over sends every row to one provider; name one (compare a sample of rows first).")
    shell = ctx.shell
    if not args.over.isidentifier():
        raise UsageError(f"--over takes the name of a variable, not {args.over!r}: assign it first "
                         f"(rows = {args.over}) and write --over rows.")
    if args.over not in shell.user_ns:
        raise UsageError(f"--over names {args.over!r}, which is not a variable in this notebook.")
    from nbllm.batch.table import Interrupted, run_map

    provider = targets.names[0] if targets.names else None
    params = call_params(args) | ({"stream": False} if args.no_stream else {}) | ({"cache": args.cache} if args.cache else {})
    try:
        answers = run_map(template, shell.user_ns[args.over], provider, args.model, args.system,
                          args.concurrency, args.rpm, args.tpm, True, params, source="magic")
    except Interrupted as stop:  # the rows answered so far are the user's: keep them where they asked
        if args.out:
            shell.user_ns[args.out] = stop.results
            stop.kept_in = args.out
        raise
    if args.out:
        shell.user_ns[args.out] = answers
        return None
    return answers


def _check(args: argparse.Namespace, template: str) -> None:
    if not template:
        raise UsageError("The %%llm --over cell has no prompt: write the template, e.g. Label this review: {text}")
    used = [flag for name, flag in _SINGLE_ANSWER.items() if getattr(args, name, None)]
    if used:
        raise UsageError(f"{used[0]} applies to a single answer, not to --over (every row is its own request).")
    if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
        raise UsageError(f"-o needs a variable name, got {args.out!r}.")
    if args.out is not None and args.out == args.over:
        raise UsageError(f"-o {args.out} would replace the rows themselves with the answers; name another "
                         f"variable (or add a column afterwards: {args.over}['answer'] = answers).")
    if args.concurrency < 1:
        raise UsageError("--concurrency takes a number of requests at once, 1 or more.")
