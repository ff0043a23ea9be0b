"""The ``nbllm`` command: the engine in a terminal.

    nbllm providers                 which providers exist and which are configured
    nbllm models ID                 the models a provider offers (live where it lists them)
    nbllm chat [-p ID[:MODEL]] ...  stream one answer to stdout (prompt from stdin if absent)
    nbllm check [ID...]             a tiny real request per configured provider, with latency
    nbllm convert ...               rewrite OpenAI calls in notebooks (imports libcst only here)
    nbllm logs ...                  the exchange log: list, show ID, path, usage (nbllm.log.cli)
    nbllm cache import NOTEBOOK...  load answers saved in notebooks into the log, for replay
    nbllm run NB --to ID[:MODEL]    run a notebook unchanged, its OpenAI SDK traffic sent to a provider

Exit status, one policy for every command: 2 for usage mistakes (bad options, no prompt),
found by argparse or raised as ``_Usage``, with the usage line; 1 for every ``NbllmError``, be it
a configuration problem (``ConfigError``: unknown provider, missing key, broken config file or
plugin) or a runtime failure (``ProviderError``), printed as its one paragraph on stderr; 130
for Ctrl-C. ``nbllm convert`` follows the same policy in its own module. Everything printed
goes through ``redact`` so no key can reach the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from nbllm import __version__
from nbllm.config import get_spec, load_specs
from nbllm.errors import ConfigError, NbllmError
from nbllm.keys import require_key
from nbllm.log import cli as log_cli
from nbllm.messages import as_messages
from nbllm.providers.base import make_provider
from nbllm.secrets import redact
from nbllm.status import CHECK_HEADERS, check_provider, check_targets, key_status
from nbllm.tables import text_table
from nbllm.validate import finite, seconds, token_count

if TYPE_CHECKING:
    from nbllm.response import Response


# -- output helpers -------------------------------------------------------------------------
def _out(text: str, stream: TextIO | None = None, end: str = "\n", *, masked: bool = False) -> None:
    """Write a line; ``masked`` text (an answer, masked as it streamed) is written as it is."""
    stream = stream or sys.stdout
    stream.write((text if masked else redact(text)) + end)
    stream.flush()


# -- commands -------------------------------------------------------------------------------
def cmd_providers(args: argparse.Namespace) -> int:
    """Table of id, name, configured or not, base URL, default model."""
    specs = load_specs()
    rows = [[s.id, s.label, key_status(s), s.base_url or "-", s.default_model or "-"] for s in specs.values()]
    _out(text_table(["ID", "NAME", "STATUS", "BASE URL", "DEFAULT MODEL"], rows))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """One model per line; the built-in list, with a note on stderr, when the live list fails."""
    spec = get_spec(args.provider)
    if spec.lists_models:
        try:
            provider = make_provider(spec, require_key(spec), timeout=args.timeout, max_retries=0)
            try:
                names = provider.models()
            finally:
                provider.close()
        except NbllmError as exc:
            _out(f"nbllm: the live model list failed ({exc.message}) Showing nbllm's built-in list instead.",
                 sys.stderr)
            names = list(spec.models)
    else:
        names = list(spec.models)
    for name in names:
        _out(name)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Stream one answer to stdout; reasoning (when asked for) goes to stderr."""
    from nbllm.session import Session

    _check_text_args(args)
    prompt = args.prompt if args.prompt is not None else _read_stdin()
    if not prompt.strip():
        raise _Usage("no prompt: give one as an argument or on stdin")
    session = Session()
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens, "timeout": args.timeout}
    targets: list[str | None] = [t.strip() for t in args.provider.split("||")] if args.provider else [None]
    if args.provider and not all(targets):
        raise _Usage(f"empty provider name in -p {args.provider!r}: write e.g. -p ernie||qwen")
    try:
        response = _first_to_answer(session, targets, as_messages(prompt, args.system), args.model, params)
        _print_stream(response, args.show_reasoning)
    finally:
        session.close()
    if args.stats:
        tokens = f", {response.usage.total_tokens} tokens" if response.usage.total_tokens else ""
        first = response.first_token_s
        first_txt = f"first token {first:.2f} s, " if first is not None else ""
        _out(f"[{response.provider}:{response.model}] {first_txt}total {response.total_s:.2f} s{tokens}", sys.stderr)
    return 0


def _first_to_answer(session: Any, targets: list[str | None], messages: Any, model: str | None,
                     params: dict[str, Any]) -> Response:
    """The first target that starts answering (``-p a||b``): any failure before text moves on."""
    failed: list[str] = []
    for target in targets:
        try:
            return session.respond(messages, target, model, params=params, source="cli").prefetch()
        except NbllmError as exc:
            if len(failed) + 1 == len(targets):
                if failed:
                    exc.message += f" Tried before it, also failing: {', '.join(failed)}."
                    exc.args = (exc.message,)
                raise
            failed.append(f"{target} ({type(exc).__name__})")
            _out(f"nbllm: {target} failed before any text ({exc.message}) Trying the next provider.", sys.stderr)
    raise AssertionError("unreachable: targets is never empty")  # pragma: no cover


def _read_stdin() -> str:
    """The prompt from stdin as UTF-8; other bytes are a usage error that says where."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream put in place of stdin (tests, embedding)
        return sys.stdin.read()
    data = stream.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Usage(f"the prompt on stdin is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                     "cannot be decoded. Convert it first (e.g. iconv -f GBK -t UTF-8).") from None


def _check_text_args(args: argparse.Namespace) -> None:
    """Arguments holding bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    for name, value in vars(args).items():
        if isinstance(value, str):
            bad = next((i for i, c in enumerate(value) if "\udc80" <= c <= "\udcff"), None)
            if bad is not None:
                raise _Usage(f"the {name} argument is not UTF-8 text: byte 0x{ord(value[bad]) - 0xDC00:02x} "
                             f"at character {bad + 1} cannot be decoded. Check the terminal's encoding.")


def _print_stream(response: Response, show_reasoning: bool) -> None:
    """Write text as it arrives; end with a newline even when the stream breaks off."""
    try:
        for delta in response:
            if delta.reasoning and show_reasoning:
                _out(delta.reasoning, sys.stderr, end="", masked=True)
            if delta.text:
                _out(delta.text, end="", masked=True)
    finally:
        if response.text and not response.text.endswith("\n"):
            _out("")


def cmd_check(args: argparse.Namespace) -> int:
    """A tiny real request per provider; exit 1 when any of them failed."""
    specs = check_targets(args.providers)
    if not specs:
        raise ConfigError("No provider is configured, so there is nothing to check. Set a provider's key "
                          "(`nbllm providers` shows which variable), or name the providers to check.")
    results = [check_provider(spec, args.timeout) for spec in specs]
    _out(text_table(CHECK_HEADERS, [r.row() for r in results]))
    return 0 if all(r.ok for r in results) else 1


# -- parser ---------------------------------------------------------------------------------
class _Usage(Exception):
    """A usage mistake found after parsing (exit 2, like argparse's own)."""


def _add_convert(sub: Any, argv: Sequence[str]) -> None:
    """Register `convert`; its options (and libcst) load only when it is the command."""
    parser = sub.add_parser("convert", help="rewrite OpenAI calls in notebooks to another provider")
    if _first_word(argv) == "convert":
        from nbllm.convert.cli import configure_parser, run

        configure_parser(parser)
        parser.set_defaults(func=run)


def _first_word(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbllm", description="Use Chinese and open-source LLMs from Jupyter "
                                     "and the terminal, and move notebooks off OpenAI.")
    parser.add_argument("--version", action="version", version=f"nbllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("providers", help="list providers and whether they are configured")
    p.set_defaults(func=cmd_providers)

    p = sub.add_parser("models", help="list the models a provider offers")
    p.add_argument("provider", metavar="ID")
    p.add_argument("--timeout", type=seconds, default=20.0, help="seconds to wait for a live list (default 20)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("chat", help="stream one answer to stdout")
    p.add_argument("prompt", nargs="?", metavar="PROMPT", help="the prompt; read from stdin when absent")
    p.add_argument("-p", "--provider", metavar="ID[:MODEL]", help="provider, optionally with a model")
    p.add_argument("-m", "--model", help="model name (overrides one given with -p)")
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("-t", "--temperature", type=finite)
    p.add_argument("--max-tokens", type=token_count, metavar="N")
    p.add_argument("--timeout", type=seconds, metavar="SECONDS",
                   help="seconds to wait for the first text and for each pause after it")
    p.add_argument("--show-reasoning", action="store_true", help="print reasoning models' thinking to stderr")
    p.add_argument("--stats", action="store_true", help="print provider, latency and tokens to stderr")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("check", help="send a tiny request to each configured provider and time it")
    p.add_argument("providers", nargs="*", metavar="ID")
    p.add_argument("--timeout", type=seconds, default=30.0, help="seconds per provider (default 30)")
    p.set_defaults(func=cmd_check)

    log_cli.configure(sub)
    _add_convert(sub, argv)
    from nbllm.run import configure_parser as configure_run

    configure_run(sub.add_parser("run", help="run a notebook unchanged with its OpenAI SDK calls sent to a provider"))
    return parser


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        return int(func(args) or 0)
    except (_Usage, log_cli.LogUsage) as exc:
        parser.print_usage(sys.stderr)
        _out(f"nbllm: error: {exc}", sys.stderr)
        return 2
    except NbllmError as exc:
        _out(f"nbllm: {exc.message}", sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nbllm`` script and ``python -m nbllm``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        return _run(args.func, args, parser)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except NbllmError as exc:  # e.g. a broken config file found while building the parser
        _out(f"nbllm: {exc.message}", sys.stderr)
        return 1
    except KeyboardInterrupt:
        _out("\nnbllm: interrupted", sys.stderr)
        return 130
    except BrokenPipeError:  # `nbllm models qwen | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stop the failing flush at exit
        return 1
