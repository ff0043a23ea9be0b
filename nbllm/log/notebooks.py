"""``nbllm cache import``: load the answers saved in notebooks' outputs into the log.

Every output whose metadata carries ``nbllm`` provenance with a fingerprint gives one answer
(a comparison gives one per lane); answers that failed or broke off are left out, since replay
must only give complete answers. Importing the same notebook twice adds nothing the second time.
Notebooks are read as JSON and never written.
"""

from __future__ import annotations

import json
import math
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
    malformed: int = 0  # entries left out: not what nbllm writes


def saved_answers(nb: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Provenance entries of a notebook's outputs, each with its answer ``text`` filled in."""
    for cell in _dicts(nb.get("cells")):
        for output in _dicts(cell.get("outputs")) if cell.get("cell_type") == "code" else []:
            meta = _table(output.get("metadata")).get(KEY)
            if not isinstance(meta, dict):
                continue
            lanes = meta.get("lanes")
            for entry in _dicts(lanes) if lanes else [meta]:
                if _complete(entry):
                    text = entry.get("text")
                    if text is None:
                        text = _joined(_table(output.get("data")).get("text/plain"))
                    yield {**entry, "text": text}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dicts of a list (cells, outputs, lanes); anything else in a hand-edited file is skipped."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _complete(entry: Any) -> bool:
    return isinstance(entry, dict) and bool(entry.get("fingerprint")) and not entry.get("error")


def well_formed(entry: dict[str, Any]) -> bool:
    """Whether an entry is one nbllm could have written: a notebook is a file anyone can edit, and
    replay answers from what it imports, so a fingerprint that is no 64-digit hex string or an
    answer that is no text is left out, not stored as something else."""
    fp = entry.get("fingerprint")
    return (isinstance(fp, str) and len(fp) == 64 and all(c in "0123456789abcdef" for c in fp)
            and isinstance(entry.get("text"), str))


def _number(value: Any, kind: type) -> Any:
    """A token count or a time as nbllm wrote it, else None (a string or infinity would break totals)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return kind(value)


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def read_notebook(path: Path) -> dict[str, Any]:
    try:
        nb = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise NbllmError(f"{path} could not be read as a notebook ({exc}); nothing was imported from it.") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NbllmError(f"{path} is not a Jupyter notebook (no cells list); nothing was imported from it.")
    return nb


def exchange_of(entry: dict[str, Any], path: Path) -> Exchange:
    usage, timing = _table(entry.get("usage")), _table(entry.get("timing"))
    return Exchange(
        source="import", provider=_text(entry.get("provider"), "?") or "?", model=_text(entry.get("model"), "?") or "?",
        messages=[], fingerprint=entry["fingerprint"], params=_table(entry.get("params")),
        answer=entry["text"], reasoning=_text(entry.get("reasoning")),
        prompt_tokens=_number(usage.get("prompt_tokens"), int), completion_tokens=_number(usage.get("completion_tokens"), int),
        total_tokens=_number(usage.get("total_tokens"), int), first_token_s=_number(timing.get("first_token_s"), float),
        total_s=_number(timing.get("total_s"), float), version=_text(entry.get("version"), "?") or "?", notebook=str(path),
    )


def import_notebook(store: LogStore, path: Path) -> Imported:
    """Add a notebook's saved answers to the log; those already there (same fingerprint and text) are
    skipped, and so are entries that are not well formed (counted in ``malformed``)."""
    nb = read_notebook(path)
    added = known = malformed = 0
    for entry in saved_answers(nb):
        if not well_formed(entry):
            malformed += 1
        elif store.has_answer(entry["fingerprint"], entry["text"]):
            known += 1
        else:
            store.insert(exchange_of(entry, path))
            added += 1
    return Imported(path, added, known, malformed)
