"""The provider switcher widget (installed as ``nbllm.widgets``).

ipywidgets is imported only when ``ProviderSwitcher`` is first used, so importing this
package from the magics costs nothing until ``%llm switcher`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbllm.widgets.switcher import ProviderSwitcher

__all__ = ["ProviderSwitcher"]


def __getattr__(name: str) -> Any:
    if name == "ProviderSwitcher":
        from nbllm.widgets.switcher import ProviderSwitcher

        return ProviderSwitcher
    raise AttributeError(f"module 'nbllm.widgets' has no attribute {name!r}")
