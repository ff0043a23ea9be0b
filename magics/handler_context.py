"""What the ``%llm`` handlers get from the magic: a small value, not the whole ``LLMMagics``.

Handlers in ``ask`` and ``commands`` use the shell, the shared session and the magic's display
settings, and may change a setting; nothing else of the magic, so they do not import it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbllm.session import Session


@dataclass(frozen=True)
class MagicContext:
    shell: Any
    session: Session
    stream: bool  # the magic's default: stream answers as they arrive
    format: str  # the magic's default answer format
    set_option: Callable[[str, Any], None]  # change one of the magic's settings (None: its default)
    parse: Callable[[str], argparse.Namespace]  # parse a %%llm line (for %llm error)
