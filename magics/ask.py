"""One %%llm cell: turn parsed arguments into a call, run it, and keep what the user asked for."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.utils.process import arg_split

from nbllm.context import build_prompt
from nbllm.messages import Message, as_messages
from nbllm.validate import check_options

from .call import Call, run_chain
from .compare import run_compare
from .handler_context import MagicContext
from .render import FORMATS, extract_code
from .shell_context import notebook_state


@dataclass(frozen=True)
class Targets:
    """Which providers a cell goes to: one, a comparison (``a,b``) or a fallback chain (``a||b``)."""

    names: list[str]
    mode: str  # "single", "compare" or "fallback"


def split_words(line: str) -> list[str]:
    """The words of a magic line, quoted as in a shell; an open quote is a usage error."""
    try:
        return arg_split(line, posix=True)
    except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
        raise UsageError(f"Could not read the %llm line ({exc}): close each quote, and end the line "
                         "without a lone backslash.") from None


def parse_targets(positional: list[str], provider: str | None) -> Targets:
    """Providers from ``-p`` or the words after %%llm; ``ernie, qwen`` and ``a || b`` read as typed."""
    if positional and provider:
        raise UsageError("Name the provider once: either as TARGET or with -p/--provider, not both.")
    text = provider if provider is not None else " ".join(positional)
    if not text.strip():
        return Targets([], "single")
    if "||" in text and "," in text:
        raise UsageError(f"Use ',' (compare) or '||' (fallback) between providers, not both: {text!r}.")
    sep = "||" if "||" in text else ","
    parts = text.split(sep) if sep in text else text.split()
    names = [name.strip() for name in parts]
    if not all(names) or any(len(name.split()) > 1 for name in names):
        raise UsageError(f"Could not read the providers in {text!r}: write e.g. ernie, or ernie,qwen to compare, "
                         "or ernie||hunyuan to fall back.")
    if len(names) == 1:
        return Targets(names, "single")
    return Targets(names, "fallback" if sep == "||" else "compare")


def parse_value(text: str) -> Any:
    """A command-line value as JSON when it is JSON (0.2, 100, true, [..]), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pair(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"Expected KEY=VALUE, got {item!r}.")
    return key.strip(), parse_value(value.strip()) if value.strip() else None


def call_params(args: argparse.Namespace) -> dict[str, Any]:
    """Sampling options of this cell; --param passes anything else through to the provider."""
    params: dict[str, Any] = {
        "temperature": args.temperature, "max_tokens": args.max_tokens, "top_p": args.top_p, "timeout": args.timeout,
    }
    for item in args.param or []:
        key, value = parse_pair(item)
        params[key] = value
    params = {key: value for key, value in params.items() if value is not None}
    check_options(params, "--param")
    return params


def _names(text: str | None) -> list[str]:
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    bad = [name for name in names if not name.isidentifier()]
    if bad:
        raise UsageError(f"--with takes variable names separated by commas; {bad[0]!r} is not a name.")
    return names


def _check(args: argparse.Namespace, cell: str, targets: Targets, fmt: str) -> None:
    """Usage mistakes, found before anything is sent."""
    if not cell.strip():
        raise UsageError("The %%llm cell has no prompt: write it on the lines below %%llm.")
    if fmt not in FORMATS:
        raise UsageError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if args.model and len(targets.names) > 1:
        raise UsageError("-m applies to one provider; with several, write provider:model for each.")
    if args.insert and (fmt != "code" or targets.mode == "compare"):
        raise UsageError("--insert puts code into the next cell; use it with -f code and one provider.")
    if args.out is not None and not args.out.isidentifier():
        raise UsageError(f"-o needs a variable name, got {args.out!r}.")
    if args.cells is not None and args.cells < 0:
        raise UsageError("--cells takes a number of cells, 0 or more.")


def run_cell(ctx: MagicContext, args: argparse.Namespace, cell: str) -> None:
    """Send the cell to its provider(s), show the answer, then update history and variables."""
    fmt = args.format or ctx.format
    targets = parse_targets(args.target, args.provider)
    _check(args, cell, targets, fmt)
    shell, session = ctx.shell, ctx.session
    text, cells = cell.strip(), args.cells or 0
    prompt = build_prompt(text, notebook_state(shell, text, cells), with_names=_names(args.with_), cells=cells)
    history: list[Message] = [] if (args.new or args.no_history) else session.windowed_history()
    messages = as_messages([*history, {"role": "user", "content": prompt}], args.system)
    call = Call(session, messages, call_params(args), args.model, ctx.stream and not args.no_stream, fmt, shell,
                cache=args.cache)
    if targets.mode == "compare":
        call.source = "compare"
        lanes = run_compare(call, targets.names)
        result: Any = {t: lane.text for t, lane in zip(targets.names, lanes, strict=True) if lane.error is None}
    else:
        if not args.no_history:
            call.on_done.append(session.recorder(prompt, fresh=args.new))
        answer = run_chain(call, list(targets.names) or [None])
        if args.insert:
            shell.set_next_input(extract_code(answer.text))
        result = answer.text
    if args.out:
        shell.user_ns[args.out] = result


ERROR_PROMPT = (
    "Explain the error below from my Jupyter notebook in a few sentences, then show how to fix it.\n\n{Err}"
)
