"""The ``llm`` line and cell magic: parse, resolve, delegate (the work lives elsewhere)."""

from __future__ import annotations

import argparse
import functools
import os
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Int, TraitError, Unicode, observe

from nbllm.validate import finite, seconds, token_count

if TYPE_CHECKING:
    from nbllm.session import Session

    from .handler_context import MagicContext


@magics_class
class LLMMagics(Magics):
    """Ask ERNIE, HunYuan, Qwen, DeepSeek, GLM, Kimi or a local model from a notebook."""

    default_provider = Unicode(
        "", help="Provider (or provider:model) used when a cell names none; NBLLM_DEFAULT wins over it."
    ).tag(config=True)
    max_history = Int(20, help="How many past messages are sent with each new prompt (0 sends none).").tag(
        config=True
    )
    stream = Bool(True, help="Stream answers as they arrive; --no-stream asks for the whole answer at once.").tag(
        config=True
    )
    format = Unicode("markdown", help="How answers are shown: markdown, text, code, json, html or math.").tag(
        config=True
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        self._bound: Session | None = None  # set first: config loading fires the observers
        super().__init__(shell=shell, **kwargs)

    def session(self) -> Session:
        """The shared session, given this magic's configured defaults the first time it is seen."""
        from nbllm.session import default_session

        session = default_session()
        if session is not self._bound:
            self._bound = session
            session.max_history = self.max_history
            if self.default_provider and not os.environ.get("NBLLM_DEFAULT"):
                session.use_default(self.default_provider, "the LLMMagics.default_provider setting")
        return session

    def context(self) -> MagicContext:
        """What the handlers may use of this magic."""
        from .handler_context import MagicContext

        return MagicContext(shell=self.shell, session=self.session(), stream=self.stream, format=self.format,
                            set_option=self.set_option, parse=self.parse)

    def set_option(self, name: str, value: Any) -> None:
        """Change a setting; None restores its default; a bad value is a usage error."""
        try:
            setattr(self, name, value if value is not None else self.trait_defaults(name))
        except TraitError as exc:
            raise UsageError(f"Bad value for {name}: {value!r} ({type(exc).__name__}).") from None

    @observe("max_history")
    def _max_history_changed(self, change: dict[str, Any]) -> None:
        if self._bound is not None:
            self._bound.max_history = change["new"]

    @magic_arguments()
    @argument("target", nargs="*", help="provider, provider:model or provider/model; several compare them")
    @argument("-p", "--provider", help="provider(s): 'a' one, 'a,b,c' compare, 'a||b' fall back to b")
    @argument("-m", "--model", help="model name (default: the provider's default model)")
    @argument("-s", "--system", help="system prompt")
    @argument("-t", "--temperature", type=finite)
    @argument("--max-tokens", type=token_count, dest="max_tokens")
    @argument("--top-p", type=finite, dest="top_p")
    @argument("--timeout", type=seconds, help="seconds to wait for the first text and for each pause after it")
    @argument("--param", action="append", metavar="KEY=VALUE", help="any other option, passed through (repeatable)")
    @argument("-f", "--format", help="markdown (default), text, code, json, html or math")
    @argument("--insert", action="store_true", help="with -f code: put the code into the next cell")
    @argument("-o", "--out", metavar="NAME", help="store the answer text in this variable")
    @argument("--no-stream", action="store_true", dest="no_stream", help="ask for the whole answer at once")
    @argument("--cache", action="store_const", const="on", dest="cache",
              help="answer from the exchange log when this exact request was answered before")
    @argument("--no-cache", action="store_const", const="off", dest="cache", help="always call the provider")
    @argument("--new", action="store_true", help="start a new conversation")
    @argument("--no-history", action="store_true", dest="no_history", help="one-off: send and keep no history")
    @argument("--with", dest="with_", metavar="A,B", help="add these variables to the prompt as context")
    @argument("--cells", type=int, metavar="N", help="add the last N cells' inputs and text outputs as context")
    @line_cell_magic
    def llm(self, line: str, cell: str | None = None) -> None:
        """Ask a language model. ``%%llm [TARGET] [options]`` with the prompt in the cell body.

        The prompt may name notebook context: {name} (a variable), {In[3]}, {Out[3]}, {Err}
        (the last error); {{name}} sends the braces literally. Line commands: ``%llm`` (current
        settings), ``%llm help``, providers/list, models [ID], use TARGET, set KEY=VALUE,
        key ID, history, reset, check [ID], switcher, error/fix, convert PATH --to ID,
        redirect ID[:MODEL] | off, log [N], usage, cache [on|off|replay].
        """
        if cell is None:
            from .commands import run_line

            return run_line(self.context(), line)
        from .ask import run_cell, split_words

        if {"-h", "--help"} & set(split_words(line)):
            print(self.llm.parser.format_help())
            return None

        run_cell(self.context(), self.parse(line), cell)
        return None

    def parse(self, line: str) -> Any:
        """Parse the %%llm line; quotes group words as in a shell (-s "Be brief.").

        A notebook re-runs the same few lines, so parses are kept; each call gets its own copy.
        """
        return argparse.Namespace(**{k: list(v) if isinstance(v, list) else v for k, v in _parsed(line)})


@functools.lru_cache(maxsize=64)
def _parsed(line: str) -> tuple[tuple[str, Any], ...]:
    """The %%llm line's options (a usage error is raised, never kept)."""
    from .ask import split_words

    return tuple(vars(LLMMagics.llm.parser.parse_args(split_words(line))).items())

