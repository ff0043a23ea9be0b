"""``%llm redirect [ID[:MODEL] | off] [--model OLD=NEW]``: the magic's face of ``nbllm.redirect``."""

from __future__ import annotations

import functools

from IPython.core.magic_arguments import MagicArgumentParser


@functools.cache
def _parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(
        prog="%llm redirect",
        description="Send this kernel's OpenAI SDK traffic (clients old and new, LangChain too) to a provider; "
                    "'off' restores it, no argument shows what is redirected.")
    parser.add_argument("target", nargs="?", metavar="ID[:MODEL]|off")
    parser.add_argument("--model", action="append", default=[], metavar="OLD=NEW",
                        help="send NEW where the code names OLD (repeatable)")
    return parser


def run_redirect(argv: list[str]) -> None:
    from nbllm.modelmap import parse_overrides
    from nbllm.redirect import redirect, status, stop
    from nbllm.secrets import redact

    args = _parser().parse_args(argv)
    if args.target is None:
        text = status()
    elif args.target.lower() == "off":
        text = stop(quiet=True)
    else:
        text = redirect(args.target, parse_overrides(args.model), quiet=True).message
    print(redact(text))
