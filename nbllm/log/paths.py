"""Where the exchange log lives, or that there is none.

``NBLLM_LOG=PATH`` puts it elsewhere and ``NBLLM_LOG=off`` turns it off; otherwise ``log = false``
in the config file turns it off; otherwise it is ``logs.db`` in the platform's user data folder.
The environment wins over the file, as everywhere in nbllm.
"""

from __future__ import annotations

import os
from pathlib import Path

OFF_WORDS = frozenset({"off", "false", "0", "no", "none"})


def log_path() -> Path | None:
    """The database file, or None when logging is turned off."""
    value = os.environ.get("NBLLM_LOG", "").strip()
    if value:
        return None if value.lower() in OFF_WORDS else _anchored(value)
    if not _config_allows_log():
        return None
    return default_log_path()


_anchored_paths: dict[str, Path] = {}


def _anchored(value: str) -> Path:
    """A relative NBLLM_LOG is taken from the folder the process was in when it first read it: a
    notebook's ``%cd`` must not move the log (writes to one file, cache lookups in another)."""
    found = _anchored_paths.get(value)
    if found is None:
        found = _anchored_paths[value] = Path(value).expanduser().absolute()
    return found


def default_log_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("nbllm", appauthor=False)) / "logs.db"


def off_reason() -> str:
    """Which setting turned the log off, for messages."""
    if os.environ.get("NBLLM_LOG", "").strip().lower() in OFF_WORDS:
        return "NBLLM_LOG=off"
    from nbllm.config import config_path

    return f"log = false in {config_path()}"


_allowed: tuple[Path, bytes | None, bool] | None = None  # the last config file read, and its answer


def _config_allows_log() -> bool:
    """``log`` in the config file. The file is read on every call (an edit takes effect at once),
    but parsed again only when its bytes changed: batch rows ask for every request."""
    global _allowed
    from nbllm.config import _parse_config, _read_config, config_path
    from nbllm.errors import ConfigError

    path = config_path()
    data = _read_config(path)
    if _allowed is not None and _allowed[:2] == (path, data):
        return _allowed[2]
    value = _parse_config(path, data).get("log", True)
    if not isinstance(value, bool):
        raise ConfigError(f"log = {value!r} in {path} must be true or false "
                          "(NBLLM_LOG=PATH puts the log elsewhere).")
    _allowed = (path, data, value)
    return value
