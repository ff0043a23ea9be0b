"""``nbllm convert PATH... --to ID``: argument parsing and exit codes.

0: all fine. 1: a runtime failure (a file failed, the report could not be written) or, with
``--check``, something would change. 2: a usage mistake (a missing path, an unknown or unusable
target, a malformed ``--model``, ``--output-dir`` problems found before anything is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nbllm.errors import NbllmError

EPILOG = """\
Notebooks are rewritten in place (atomically) unless --dry-run, --check or --output-dir is given.
Only rewritten cells change; outputs are kept unless --clear-outputs clears those of rewritten cells.
Exit codes: 0 all fine, 1 a file failed (or --check found changes), 2 usage mistake.
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the convert options to a (sub)parser; ``nbllm`` and ``%llm convert`` share it."""
    parser.description = "Rewrite OpenAI usage in notebooks and .py files for another provider."
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("paths", nargs="+", metavar="PATH", help="notebooks, .py files or folders (recursive)")
    parser.add_argument("--to", required=True, metavar="ID", help="target provider id (OpenAI-compatible)")
    parser.add_argument("--model", action="append", default=[], metavar="OLD=NEW",
                        help="map model OLD to NEW instead of the default tier map (repeatable)")
    parser.add_argument("--keep-v0", action="store_true",
                        help="retarget openai<1 code without migrating it to the v1 client")
    parser.add_argument("--dry-run", action="store_true", help="write nothing")
    parser.add_argument("--diff", action="store_true", help="print per-cell unified diffs (path#cell-N)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    parser.add_argument("--output-dir", metavar="DIR", help="write converted copies under DIR (relative paths kept)")
    parser.add_argument("--backup", action="store_true", help="keep NAME.ipynb.bak next to each rewritten file")
    parser.add_argument("--clear-outputs", action="store_true", help="clear the outputs of rewritten cells")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="convert in N processes")
    parser.add_argument("--report", metavar="FILE.json", help="write every file's result to a JSON report")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems and the exit status")


def _usage(message: str) -> int:
    print(f"nbllm convert: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``nbllm convert`` command and return its exit code."""
    from nbllm.convert.api import ArgumentError, convert_paths
    from nbllm.convert.report import Progress, diff_text, printable, summary, use_color, write_report
    from nbllm.errors import ConfigError

    missing = [printable(p) for p in args.paths if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        return _usage(f"no such file or folder: {', '.join(missing)}")
    if args.jobs < 1:
        return _usage("--jobs must be at least 1")
    if args.report and Path(args.report).is_dir():
        return _usage(f"--report {printable(args.report)} is a folder; give a file name such as "
                      f"{printable(str(Path(args.report) / 'nbllm-report.json'))}")
    dry = args.dry_run or args.check
    try:
        batch = convert_paths(args.paths, args.to, models=args.model, keep_v0=args.keep_v0, dry_run=dry,
                              output_dir=args.output_dir, backup=args.backup, clear_outputs=args.clear_outputs,
                              jobs=args.jobs, progress=Progress(notebook=getattr(args, "notebook", False)))
    except (ConfigError, ArgumentError) as exc:  # found in the arguments, before any file was touched
        return _usage(exc.message)
    except NbllmError as exc:
        print(f"nbllm convert: {exc.message}", file=sys.stderr)
        return 1
    if args.diff:
        color = use_color(sys.stdout)
        for result in batch.results:
            sys.stdout.write(diff_text(result, color))
    if not args.quiet or batch.failed or (args.check and batch.changed):
        sys.stdout.write(summary(batch, dry_run=dry))
    if args.report:
        try:
            write_report(batch, args.report)
        except NbllmError as exc:
            print(exc.message, file=sys.stderr)
            return 1
    if batch.failed or (args.check and batch.changed):
        return 1
    return 0


def run_argv(argv: list[str], notebook: bool = False) -> int:
    """``%llm convert ...`` and ``python -m nbllm.convert``: parse argv and run; never raises SystemExit.

    ``notebook``: running inside a kernel (``%llm convert``), so the progress bar is a widget.
    """
    parser = argparse.ArgumentParser(prog="nbllm convert")
    configure_parser(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    args.notebook = notebook
    return run(args)
