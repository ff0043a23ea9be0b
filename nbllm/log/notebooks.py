"""``nbllm cache import``: load the answers saved in notebooks' outputs into the log.

Every output whose metadata carries ``nbllm`` provenance with a fingerprint gives one answer
(a comparison gives one per lane); answers that failed or broke off are left out, since replay
must only give complete answers. Importing the same notebook twice adds nothing the second time.
Notebooks are read as JSON and never written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbllm.errors import NbllmError
from nbllm.log.provenance import KEY
from nbllm.log.record import Exchange
from nbllm.log.store import LogStore


@dataclass(frozen=True)
class Imported:
    path: Path
    added: int
    known: int  # already in the log


def saved_answers(nb: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Provenance entries of a notebook's outputs, each with its answer ``text`` filled in."""
    for cell in nb.get("cells") or []:
        for output in cell.get("outputs") or [] if cell.get("cell_type") == "code" else []:
            meta = (output.get("metadata") or {}).get(KEY)
            if not isinstance(meta, dict):
                continue
            for entry in meta.get("lanes") or [meta]:
                if _complete(entry):
                    text = entry.get("text")
                    if text is None:
                        text = _joined((output.get("data") or {}).get("text/plain"))
                    yield {**entry, "text": text}


def _complete(entry: Any) -> bool:
    return isinstance(entry, dict) and bool(entry.get("fingerprint")) and not entry.get("error")


def _joined(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def read_notebook(path: Path) -> dict[str, Any]:
    try:
        nb = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise NbllmError(f"{path} could not be read as a notebook ({exc}); nothing was imported from it.") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NbllmError(f"{path} is not a Jupyter notebook (no cells list); nothing was imported from it.")
    return nb


def exchange_of(entry: dict[str, Any], path: Path) -> Exchange:
    usage = entry.get("usage") or {}
    timing = entry.get("timing") or {}
    return Exchange(
        source="import", provider=str(entry.get("provider") or "?"), model=str(entry.get("model") or "?"),
        messages=[], fingerprint=str(entry["fingerprint"]), params=dict(entry.get("params") or {}),
        answer=entry["text"], reasoning=str(entry.get("reasoning") or ""),
        prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
        total_tokens=usage.get("total_tokens"), first_token_s=timing.get("first_token_s"),
        total_s=timing.get("total_s"), version=str(entry.get("version") or "?"), notebook=str(path),
    )


def import_notebook(store: LogStore, path: Path) -> Imported:
    """Add a notebook's saved answers to the log; those already there (same fingerprint and text) are skipped."""
    nb = read_notebook(path)
    added = known = 0
    for entry in saved_answers(nb):
        if store.has_answer(entry["fingerprint"], entry["text"]):
            known += 1
            continue
        store.insert(exchange_of(entry, path))
        added += 1
    return Imported(path, added, known)
