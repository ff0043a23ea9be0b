"""The ``%llm`` line commands: settings, providers, keys, history, checks, widget, convert, redirect,
the exchange log."""

from __future__ import annotations

import argparse
import functools
import getpass
from collections.abc import Callable

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display

from nbllm.config import get_spec, load_specs
from nbllm.context import cut
from nbllm.errors import ConvertError, MissingKeyError
from nbllm.keys import is_configured, set_key
from nbllm.status import CHECK_HEADERS, check_provider, check_targets, key_status
from nbllm.tables import Table
from nbllm.validate import check_options

from .ask import ERROR_PROMPT, parse_pair, run_cell, split_words
from .handler_context import MagicContext

Handler = Callable[[MagicContext, argparse.Namespace], None]
MAGIC_SETTINGS = ("stream", "format", "max_history", "default_provider")  # the rest of `set` is session options


@functools.cache
def build_parser() -> MagicArgumentParser:
    """The %llm line commands' parser, built once (argparse parsers can be reused)."""
    parser = MagicArgumentParser(prog="%llm", description="Line commands of the llm magic.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("providers", aliases=["list"], help="providers, whether a key is set, default models")
    sub.add_parser("models", help="models of a provider").add_argument("provider", nargs="?")
    sub.add_parser("use", help="switch provider (and model) for the following cells").add_argument("target")
    sub.add_parser("set", help="session defaults, e.g. temperature=0.2 (empty value removes)").add_argument(
        "pairs", nargs="+", metavar="KEY=VALUE")
    sub.add_parser("key", help="enter a key for this session (hidden, never saved)").add_argument("provider")
    sub.add_parser("history", help="the conversation sent with the next cell")
    sub.add_parser("reset", help="forget the conversation")
    sub.add_parser("check", help="a tiny request per provider, with latency").add_argument("providers", nargs="*")
    sub.add_parser("switcher", help="show the provider switcher widget")
    sub.add_parser("error", aliases=["fix"], help="ask the model to explain the last error").add_argument(
        "target", nargs="?")
    sub.add_parser("convert", help="rewrite OpenAI calls in notebooks: convert PATH --to ID ...").add_argument(
        "argv", nargs=argparse.REMAINDER)
    sub.add_parser("redirect", help="send OpenAI SDK traffic to a provider: redirect ID[:MODEL] | off").add_argument(
        "argv", nargs=argparse.REMAINDER)
    sub.add_parser("log", help="the last N exchanges in the log (default 10)").add_argument(
        "n", nargs="?", type=int, default=10, metavar="N")
    sub.add_parser("usage", help="tokens (and cost) by provider and model: this session, today, all time")
    sub.add_parser("cache", help="answer repeated requests from the log: on, off or replay").add_argument(
        "mode", nargs="?", choices=["on", "off", "replay"])
    sub.add_parser("help", help="this help")
    return parser


def run_line(ctx: MagicContext, line: str) -> None:
    words = split_words(line)
    if words and words[0] == "convert":  # its options belong to the converter's own parser
        return convert(words[1:])
    if words and words[0] == "redirect":  # likewise
        from .redirect import run_redirect

        return run_redirect(words[1:])
    args = build_parser().parse_args(words)
    handler = HANDLERS.get(args.command or "", show_status)
    handler(ctx, args)
    return None


def show_status(ctx: MagicContext, args: argparse.Namespace) -> None:
    session = ctx.session
    spec = session.spec()
    options = ", ".join(f"{k}={v}" for k, v in session.params.items()) or "none"
    print(f"provider: {spec.id} ({spec.label}), key {'set' if is_configured(spec) else 'missing'}")
    print(f"model:    {session.model or spec.default_model + ' (default)'}")
    print(f"options:  {options}")
    print(f"history:  {len(session.history)} messages kept, up to {session.max_history} sent")
    print(f"display:  stream={'on' if ctx.stream else 'off'}, format={ctx.format}")


def show_help(ctx: MagicContext, args: argparse.Namespace) -> None:
    print(build_parser().format_help().replace("::\n\n  %", ""))
    print("Ask with a cell:  %%llm [TARGET] [options]  then the prompt; %%llm? lists the options.")


def show_providers(ctx: MagicContext, args: argparse.Namespace) -> None:
    current = ctx.session.provider
    rows = [["*" if spec.id == current else "", spec.id, spec.label, key_status(spec), spec.default_model]
            for spec in load_specs().values()]
    display(Table(["", "id", "provider", "key", "default model"], rows))


def show_models(ctx: MagicContext, args: argparse.Namespace) -> None:
    session = ctx.session
    spec = session.spec(args.provider)
    try:
        provider, _ = session.resolve(spec.id)
        models = provider.models()
        source = ""
    except MissingKeyError:
        models, source = list(spec.models), " (from nbllm's catalogue: no key set to ask the provider)"
    print(f"{spec.label} ({spec.id}) models{source}:")
    for name in models:
        print(f"{'*' if name == spec.default_model else ' '} {name}")


def use(ctx: MagicContext, args: argparse.Namespace) -> None:
    session = ctx.session
    session.use(args.target)
    print(f"Using {session.target} for the following cells.")


def set_options(ctx: MagicContext, args: argparse.Namespace) -> None:
    session = ctx.session
    pairs = [parse_pair(item) for item in args.pairs]
    params = dict(session.params)
    for key, value in pairs:
        if key in MAGIC_SETTINGS:
            ctx.set_option(key, value)
        elif value is None:
            params.pop(key, None)
        else:
            params[key] = value
    check_options(params, "%llm set")
    session.params = params
    options = ", ".join(f"{k}={v}" for k, v in params.items()) or "none"
    print(f"Options sent with every call: {options}")


def enter_key(ctx: MagicContext, args: argparse.Namespace) -> None:
    spec = get_spec(args.provider)
    key = getpass.getpass(f"API key for {spec.label} ({spec.id}), kept for this session only: ")
    if not key.strip():
        print(f"No key entered; {spec.id} is unchanged.")
        return
    try:
        set_key(spec.id, key)
    finally:
        del key  # never left in this frame for a verbose traceback to print
    print(f"Key for {spec.id} set for this session; it is not saved anywhere.")


def show_history(ctx: MagicContext, args: argparse.Namespace) -> None:
    session = ctx.session
    if not session.history:
        print("No conversation yet; the next cell starts one.")
        return
    for message in session.history:
        print(f"[{message['role']}] {cut(message['content'], 500)}\n")


def reset(ctx: MagicContext, args: argparse.Namespace) -> None:
    ctx.session.reset()
    print("Conversation forgotten; the next cell starts a new one.")


def check(ctx: MagicContext, args: argparse.Namespace) -> None:
    """A tiny real request per provider: those named, else every one with a key or a changed URL."""
    specs = check_targets(args.providers)
    if not specs:
        print("No provider has a key yet: set one (see %llm providers) or name one, e.g. %llm check ollama.")
        return
    display(Table(CHECK_HEADERS, [check_provider(spec, source="magic").row() for spec in specs]))


def switcher(ctx: MagicContext, args: argparse.Namespace) -> None:
    from nbllm.widgets import ProviderSwitcher

    display(ProviderSwitcher(session=ctx.session))


def explain_error(ctx: MagicContext, args: argparse.Namespace) -> None:
    run_cell(ctx, ctx.parse(args.target or ""), ERROR_PROMPT)


def convert(argv: list[str]) -> None:
    from nbllm.convert.cli import run_argv

    status = run_argv(argv, notebook=True)
    if status == 2:  # a usage mistake: no notebook was read, none failed
        raise UsageError("%llm convert: the arguments above are not usable, so no notebook was read or "
                         "written. %llm convert --help lists the options.")
    if status != 0:
        raise ConvertError(
            f"nbllm convert stopped with exit status {status}; the lines above say which notebooks failed "
            "and why. Fix those and run it again (%llm convert --help lists the options)."
        )


def show_log(ctx: MagicContext, args: argparse.Namespace) -> None:
    from nbllm.log.report import recent

    if args.n < 0:
        raise UsageError("%llm log takes a number of exchanges, 0 or more.")
    _show(recent(args.n))


def show_usage(ctx: MagicContext, args: argparse.Namespace) -> None:
    from nbllm.log.report import usage

    _show(usage(this_session=True))


def _show(found: Table | str) -> None:
    """A table as HTML (text in a terminal), or the sentence saying why there is none."""
    if isinstance(found, str):
        print(found)
    else:
        display(found)


def cache(ctx: MagicContext, args: argparse.Namespace) -> None:
    """``%llm cache MODE`` sets the mode for this kernel; without MODE it says which one applies."""
    from nbllm.log.cache import describe_mode, set_kernel_mode

    if args.mode:
        set_kernel_mode(args.mode)
    print(describe_mode())


HANDLERS: dict[str, Handler] = {
    "providers": show_providers, "list": show_providers, "models": show_models, "use": use,
    "set": set_options, "key": enter_key, "history": show_history, "reset": reset, "check": check,
    "switcher": switcher, "error": explain_error, "fix": explain_error, "help": show_help,
    "log": show_log, "usage": show_usage, "cache": cache,
}
