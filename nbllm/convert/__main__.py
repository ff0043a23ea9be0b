"""``python -m nbllm.convert PATH... --to ID``."""

from __future__ import annotations

import sys

from nbllm.convert.cli import run_argv

raise SystemExit(run_argv(sys.argv[1:]))
