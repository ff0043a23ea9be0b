"""IPython extension: ``%load_ext nbllm`` registers the ``llm`` line and cell magic.

Loading stays cheap: nothing here imports httpx, ipywidgets or libcst.
"""

from __future__ import annotations

from typing import Any

from .llm import LLMMagics

__all__ = ["LLMMagics", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(LLMMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magic again (``%unload_ext nbllm``)."""
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("llm", None)
    manager.registry.pop("LLMMagics", None)
