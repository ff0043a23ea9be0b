"""One notebook's code through the codemods: mask, join, transform, split, restore, verify.

The codemods run in a fixed order, one concern each: warnings first (on the code as written),
then the v0 migration (or retarget), result access, clients, LangChain, keys, models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst

from nbllm.convert.cells import (
    CodeCell,
    cell_line_starts,
    join,
    mask_cell,
    new_salt,
    restore_text,
    split,
    uses_sdk,
)
from nbllm.convert.codemods.base import Event, NbllmCommand, Scratch, Target, new_context
from nbllm.convert.codemods.batched import transform_batched
from nbllm.convert.codemods.clients import ClientArgs, ModuleClient
from nbllm.convert.codemods.env import EnvKeys
from nbllm.convert.codemods.fastmeta import Codegen, SharedWrapper
from nbllm.convert.codemods.fastwalk import fast_visits
from nbllm.convert.codemods.flags import Flags
from nbllm.convert.codemods.langchain import LangChainArgs
from nbllm.convert.codemods.legacy import LegacyMigrate, LegacyRetarget
from nbllm.convert.codemods.modelnames import ModelNames
from nbllm.convert.codemods.results import ResultAccess
from nbllm.convert.ipython_lines import rewrite_magic
from nbllm.convert.result import Item

# Cells matching none of these hold nothing a codemod rewrites or resolves; leaving them out of
# the joined module keeps libcst's work proportional to the OpenAI part of a notebook.
_RELEVANT = re.compile(r"(?i)openai|gpt|\bo[134]\b|o[134]-|text-|davinci|babbage|model|api_key|api_base|getpass|"
                       r"input|dotenv|tiktoken|langchain|llama_index|client|environ|engine|deployment|1536|3072|"
                       r"completion|embedding|\bsk-|choices|usage|delta|\[\s*[\"']data[\"']")
_IMPORTS_OS = re.compile(r"^(?:import\s+(?:[\w.]+\s*(?:as\s+\w+)?\s*,\s*)*os\b(?!\.)|from\s+os\s+import\b)", re.M)


@dataclass
class Outcome:
    new_sources: dict[int, str] = field(default_factory=dict)  # cell index -> converted source
    items: list[Item] = field(default_factory=list)


def _passes(target: Target) -> list[type[NbllmCommand]]:
    legacy: list[type[NbllmCommand]] = [LegacyRetarget] if target.keep_v0 else [LegacyMigrate, ResultAccess]
    return [Flags, *legacy, ClientArgs, ModuleClient, LangChainArgs, EnvKeys, ModelNames]


def _parse_cells(cells: list[CodeCell]) -> None:
    """Find the cells that do not parse on their own (the joined module failed)."""
    for cell in cells:
        if cell.skip is None and cell.relevant:
            try:
                cst.parse_module(cell.masked)
            except cst.ParserSyntaxError as exc:
                cell.skip = f"does not parse (line {exc.raw_line}: {exc.message})"
            except (RecursionError, MemoryError, ValueError) as exc:  # libcst's tokenizer and limits
                cell.skip = f"does not parse ({type(exc).__name__})"


def _module(cells: list[CodeCell], salt: str) -> tuple[cst.Module, str]:
    """The joined module and its code (LibCST gives back the exact source it parsed)."""
    code = join(cells, salt)
    try:
        return cst.parse_module(code), code
    except (cst.ParserSyntaxError, RecursionError, MemoryError, ValueError):
        _parse_cells(cells)
        code = join(cells, salt)
        return cst.parse_module(code), code


def _place(events: list[Event], starts: list[int], cells: list[CodeCell], out: list[Item]) -> None:
    for ev in events:
        cell = line = None
        if ev.line:
            n = max(i for i, s in enumerate(starts) if s <= ev.line)
            cell, line = cells[n].index + 1, ev.line - starts[n] + 1
        out.append(Item(ev.kind, ev.message, cell, line, ev.warning))


def run_codemods(cells: list[CodeCell], target: Target) -> Outcome:
    """Convert the (already masked) code cells of one notebook or file."""
    outcome = Outcome()
    if not any(uses_sdk(c.masked) for c in cells if c.skip is None):
        return outcome  # nothing retargeted, so no key or model may change either
    with fast_visits():  # read-only walks without LibCST's copying (fastwalk.py)
        _run_passes(cells, target, outcome)
    return outcome


def _run_passes(cells: list[CodeCell], target: Target, outcome: Outcome) -> None:
    salt = new_salt("".join(c.text + c.masked for c in cells))
    module, code = _module(cells, salt)
    context = new_context(target)
    scratch: Scratch = context.scratch["nbllm"]
    codegen = Codegen()  # one per notebook: a statement no pass changed is generated once
    wrapper = SharedWrapper(module, codegen=codegen)
    starts = cell_line_starts(code, salt)
    passes = _passes(target)
    done: set[int] = set()
    for n, command in enumerate(passes):
        if n in done or not command.wanted(code, scratch):
            continue
        before = len(scratch.events)
        group = [command]
        while group[-1].SHARES_WALK_WITH_NEXT and n + len(group) < len(passes):
            following = passes[n + len(group)]
            if not following.wanted(code, scratch):
                break
            group.append(following)
            done.add(n + len(group) - 1)
        if len(group) > 1:
            module = transform_batched([c(context) for c in group], wrapper)  # see batched.py
        else:
            module = command(context).transform_wrapped(wrapper)
        _place(scratch.events[before:], starts, cells, outcome.items)
        if any(not e.warning for e in scratch.events[before:]):  # every change is noted
            # Only a changed tree needs its metadata resolved again; a pass that changed
            # nothing hands the next one the same tree and wrapper (scope and names resolved).
            code, lines = codegen.code_and_lines(module)
            wrapper = SharedWrapper(module, lines, codegen)
            starts = cell_line_starts(code, salt)
    parts = split(code, salt, len(cells))
    if parts is None:
        raise RuntimeError("a cell separator was lost")
    _restore(cells, parts, target, scratch, outcome)


def _restore(cells: list[CodeCell], parts: list[str], target: Target, scratch: Scratch, outcome: Outcome) -> None:
    """Put magics back (rewritten where needed), add ``import os`` once, keep only real changes.

    A cell counts as changed only when a codemod recorded a change in it: libcst re-renders a
    few odd whitespace layouts differently, and such noise must never reach a notebook.
    """
    touched = {i.cell for i in outcome.items if not i.warning}
    os_done = False
    for cell, part in zip(cells, parts, strict=True):
        if cell.skip or not cell.relevant:
            continue
        masks = dict(cell.masks)
        for token, line in cell.masks.items():
            lineno = int(token[:-2].rsplit("_", 1)[1]) + 1
            masks[token], events = rewrite_magic(line, target, bool(scratch.migrated), lineno)
            outcome.items += [Item(e.kind, e.message, cell.index + 1, e.line, e.warning) for e in events]
        if masks == cell.masks and cell.index + 1 not in touched:
            continue
        if not os_done and scratch.needs_os and "os.environ" in part and cell.index + 1 in touched:
            os_done = _imports_os_before(cells, cell)
            if not os_done:
                part = _add_import_os(part, cell.cell_magic)
                outcome.items.append(Item("import", "import os added", cell.index + 1, 1))
                os_done = True
        text = restore_text(cell, part if cell.index + 1 in touched else cell.masked, masks)
        if text is None:
            raise RuntimeError(f"an IPython line of cell {cell.index + 1} was lost")
        if text != cell.text:
            cst.parse_module(part)  # every rewritten cell must still parse on its own
            outcome.new_sources[cell.index] = text


def _imports_os_before(cells: list[CodeCell], upto: CodeCell) -> bool:
    for cell in cells:
        if cell.skip is None and _IMPORTS_OS.search(cell.masked):
            return True
        if cell is upto:
            return False
    return False


def _add_import_os(code: str, cell_magic: bool) -> str:
    """``import os`` just before the cell's first import (or first statement), comments kept above it."""
    head = ""
    if cell_magic:
        head, _, code = code.partition("\n")
        head += "\n"
    module = cst.parse_module(code)
    body = list(module.body)
    at = next((i for i, s in enumerate(body) if isinstance(s, cst.SimpleStatementLine)
               and isinstance(s.body[0], (cst.Import, cst.ImportFrom))), 0)
    new = cst.parse_statement("import os\n")
    if body:
        new = new.with_changes(leading_lines=body[at].leading_lines)
        body[at] = body[at].with_changes(leading_lines=())
    body.insert(at, new)
    return head + module.with_changes(body=body).code


def prepare(texts: list[tuple[int, str, str | None]]) -> list[CodeCell]:
    """CodeCells from (index, source, skip reason) triples, masked with a fresh salt."""
    salt = new_salt("".join(t for _, t, _ in texts))
    cells = [CodeCell(index=i, text=text, skip=skip) for i, text, skip in texts]
    for cell in cells:
        cell.relevant = bool(_RELEVANT.search(cell.text))
        if cell.skip is None:
            mask_cell(cell, salt)
    return cells
