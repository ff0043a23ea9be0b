"""``nbllm convert``: rewrite OpenAI usage in saved notebooks (and .py files) for another provider.

Importing this package is cheap: libcst is loaded only when a notebook actually mentions openai.
"""

from __future__ import annotations

from nbllm.convert.api import TargetError, convert_paths, resolve_target
from nbllm.convert.result import BatchResult, CellDiff, FileResult, Item

__all__ = ["BatchResult", "CellDiff", "FileResult", "Item", "TargetError", "convert_paths", "resolve_target"]
