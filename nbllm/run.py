"""``nbllm run NOTEBOOK --to ID``: execute a notebook unchanged with its OpenAI traffic redirected.

The honest way to try a notebook on another provider before converting it: the code cells run as
written (their sources are never touched), in the notebook's own kernel, after a hidden setup
cell that starts ``nbllm.redirect`` in that kernel. The executed copy goes next to the input
(``NAME.ID.ipynb``) unless ``--output`` names another file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbllm.errors import NbllmError, NotebookReadError, NotebookWriteError
from nbllm.validate import seconds

_MAPPED = re.compile(r"^nbllm redirect: (\S+) -> (\S+)", re.M)


@dataclass
class RunResult:
    output: Path
    cells_run: int
    seconds: float
    failed_cell: int | None = None  # 1-based, counting every cell (as nbllm convert's #cell-N)
    error: str = ""
    execution_count: int | None = None
    mapped: dict[str, str] = field(default_factory=dict)
    target: str = ""  # the provider as nbllm names it (``--to ERNIE`` ran against ernie)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    parser.add_argument("--to", required=True, metavar="ID[:MODEL]", help="the provider (and model) to send OpenAI "
                        "SDK requests to")
    parser.add_argument("--output", "-o", metavar="OUT.ipynb", help="where the executed copy goes "
                        "(default NOTEBOOK.ID.ipynb next to it; never the input unless named here)")
    parser.add_argument("--timeout", type=seconds, default=600.0, metavar="S", help="seconds per cell (default 600)")
    parser.add_argument("--model", action="append", default=[], type=_override, metavar="OLD=NEW",
                        help="send NEW where the code names OLD (repeatable)")
    parser.set_defaults(func=cmd_run)


def _override(text: str) -> str:
    """A well-formed ``OLD=NEW``: a malformed one is a usage error (exit 2), as in nbllm convert."""
    from nbllm.errors import ConfigError
    from nbllm.modelmap import parse_overrides

    try:
        parse_overrides([text])
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message.removeprefix("--model ")) from None
    return text


def cmd_run(args: argparse.Namespace) -> int:
    from nbllm.modelmap import parse_overrides
    from nbllm.secrets import redact

    result = run_notebook(Path(args.notebook), args.to, output=Path(args.output) if args.output else None,
                          timeout=args.timeout, models=parse_overrides(args.model))
    mapped = ", ".join(f"{old} -> {new}" for old, new in result.mapped.items()) or "none"
    if result.failed_cell is None:
        print(redact(f"Ran {result.cells_run} code cells of {args.notebook} against {result.target} in "
                     f"{result.seconds:.1f} s. Models mapped: {mapped}. Executed copy: {result.output}"))
        return 0
    count = f" (In [{result.execution_count}])" if result.execution_count else ""
    print(redact(f"nbllm run: cell {result.failed_cell}{count} of {args.notebook} failed: {result.error}. "
                 f"{result.cells_run} code cells ran against {result.target} before it (models mapped: {mapped}). "
                 f"The executed copy, with outputs up to that cell, is {result.output}."), file=sys.stderr)
    return 1


def run_notebook(path: Path, target: str, *, output: Path | None = None, timeout: float | None = 600.0,
                 models: dict[str, str] | None = None) -> RunResult:
    """Execute every cell of ``path`` with the redirect to ``target`` on; stop at the first failing cell."""
    import nbformat

    from nbllm.redirect import resolve

    spec_target = resolve(target, models)  # unknown provider, missing key: fail before a kernel starts
    nb = _read(path)
    output = output or path.with_name(f"{path.stem}.{spec_target.spec.id}.ipynb")
    start = time.perf_counter()
    result = _execute(nb, path, target, models or {}, timeout)
    result.output, result.seconds = output, time.perf_counter() - start
    result.target = spec_target.spec.id + (f":{spec_target.model}" if spec_target.model else "")
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                result.mapped.update(_MAPPED.findall(out.get("text", "")))
    _write(nbformat, nb, output)
    return result


def _execute(nb: Any, path: Path, target: str, models: dict[str, str], timeout: float | None) -> RunResult:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    setup = (f"from nbllm.redirect import redirect as _nbllm_redirect\n"
             f"_nbllm_redirect({target!r}, {models!r}, quiet=True)\ndel _nbllm_redirect")
    client = NotebookClient(nb, timeout=timeout, kernel_name=_kernel_name(nb),
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.reset_execution_trackers()
    ran = 0
    # The kernel's own stderr (ipykernel's warnings, its traceback when Ctrl-C shuts it down mid-cell)
    # is kept out of the terminal; its last line explains a kernel that died.
    with tempfile.TemporaryFile() as kernel_log, client.setup_kernel(stderr=kernel_log):
        # Straight through the kernel client: execute_cell would store the cell in the notebook.
        reply = client.wait_for_reply(client.kc.execute(setup, store_history=False, stop_on_error=True))
        content = reply["content"] if reply else {"status": "error", "ename": "Timeout", "evalue": "no reply"}
        if content["status"] != "ok":
            raise NbllmError(f"The kernel could not start the redirect ({content.get('ename')}: "
                             f"{content.get('evalue')}). nbllm must be installed where the notebook's kernel "
                             f"({client.kernel_name}) runs.")
        info = client.wait_for_reply(client.kc.kernel_info())
        if info and "language_info" in info["content"]:
            nb.metadata["language_info"] = info["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index, execution_count=ran + 1)
            except CellExecutionError as exc:
                _not_run(nb.cells[index + 1:])
                error = f"{exc.ename}: {exc.evalue}"
                return RunResult(Path(), ran, 0.0, index + 1, error if len(error) < 400 else error[:400] + "...",
                                 cell.execution_count)
            except (CellTimeoutError, DeadKernelError) as exc:
                _not_run(nb.cells[index + 1:])
                what = f"no result within {timeout:g} s (--timeout)" if isinstance(exc, CellTimeoutError) else \
                    "the kernel died" + _last_line(kernel_log)
                return RunResult(Path(), ran, 0.0, index + 1, what, cell.execution_count)
            ran += cell.cell_type == "code" and bool(cell.source.strip())
        client.set_widgets_metadata()
    return RunResult(Path(), ran, 0.0)


def _not_run(cells: list[Any]) -> None:
    """Cells after the failing one lose the outputs they were saved with: the copy shows only this run."""
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def _last_line(log: Any) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return f" ({lines[-1][:300]})" if lines else ""


def _kernel_name(nb: Any) -> str:
    """The notebook's kernel when it is installed here, else the current Python's."""
    from jupyter_client.kernelspec import KernelSpecManager

    name = (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
    if name != "python3" and name not in KernelSpecManager().find_kernel_specs():
        print(f"nbllm run: kernel {name!r} is not installed here; running with this Python (python3).",
              file=sys.stderr)
        return "python3"
    return name


def _read(path: Path) -> Any:
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise NotebookReadError(f"No such notebook: {path}.") from None
    except Exception as exc:  # JSON errors, schema errors, directories: all one message
        # Never the parser's message for a file that is not JSON: it quotes the file (a .env, a key file).
        why = "it is not JSON" if type(exc).__name__ == "NotJSONError" else \
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        raise NotebookReadError(f"{path} could not be read as a notebook ({why}).") from None


def _write(nbformat: Any, nb: Any, output: Path) -> None:
    """Write atomically: a failed or interrupted write leaves no file, half-written or temporary.

    The file gets the mode it had (or a new file's usual one), not ``mkstemp``'s owner-only 0600.
    """
    tmp = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            nbformat.write(nb, handle)
        os.chmod(tmp, _mode_for(output))
        os.replace(tmp, output)
        tmp = None
    except OSError as exc:
        raise NotebookWriteError(f"The executed notebook could not be written to {output}: {exc}.") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _mode_for(output: Path) -> int:
    try:
        return stat.S_IMODE(output.stat().st_mode)
    except OSError:  # a new file: 0666 less the umask, as open() would make it
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
