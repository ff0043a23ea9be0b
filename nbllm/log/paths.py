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


def _config_allows_log() -> bool:
    from nbllm.config import load_config
    from nbllm.errors import ConfigError

    value = load_config().get("log", True)
    if not isinstance(value, bool):
        from nbllm.config import config_path

        raise ConfigError(f"log = {value!r} in {config_path()} must be true or false "
                          "(NBLLM_LOG=PATH puts the log elsewhere).")
    return value
