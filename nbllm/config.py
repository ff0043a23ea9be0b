"""Provider rows after overrides: built-in < config file < environment < explicit argument.

The config file is ``$NBLLM_CONFIG`` or ``config.toml`` in the platform's user config dir.
It may change any field of a built-in row and add new OpenAI-compatible providers; other
packages add providers through the ``nbllm.providers`` entry-point group.

Provider ids are names a user types (``--to ERNIE``, ``%llm use Qwen``, ``[providers.Kimi]``), so
they are found in any case: ``find_id`` is the one lookup, used by ``get_spec``, ``split_target``
and the config file's tables. Two ids differing only in case are one provider.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from nbllm.errors import ConfigError, UnknownProviderError
from nbllm.providers.catalog import BUILTIN, ProviderSpec
from nbllm.secrets import register_key_env
from nbllm.validate import check_base_url, check_header_value, env_name_problem, header_name_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SPEC_FIELDS = {f.name for f in fields(ProviderSpec)}
_SPEC_TYPES = {f.name: f.type for f in fields(ProviderSpec)}


def config_path() -> Path:
    """Where the config file is read from (it need not exist)."""
    explicit = os.environ.get("NBLLM_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("nbllm", appauthor=False)) / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """Read the config file; a missing file is an empty config, a broken one a clear error."""
    path = path or config_path()
    return _parse_config(path, _read_config(path))


def _read_config(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _broken(path, exc) from exc


def _parse_config(path: Path, data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        return tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _broken(path, exc) from exc


def _broken(path: Path, exc: Exception) -> ConfigError:
    return ConfigError(
        f"The nbllm config file {path} could not be read ({exc}). Fix or remove it, or point "
        "NBLLM_CONFIG at another file."
    )


def find_id(name: str, specs: dict[str, ProviderSpec]) -> str | None:
    """The id in ``specs`` that ``name`` names, in any case (``"DeepSeek"`` -> ``"deepseek"``), or None."""
    if name in specs:
        return name
    folded = name.casefold()
    return next((pid for pid in specs if pid.casefold() == folded), None)


def catalogue_id(name: str) -> str:
    """A built-in or plugin id ``name`` names in any case, else ``name`` itself (a provider of the config's own)."""
    specs = {spec.id: spec for spec in (*BUILTIN, *_plugin_specs())}
    return find_id(name, specs) or name


def env_name(provider_id: str) -> str:
    """The upper-case form used in NBLLM_<ID>_BASE_URL."""
    return provider_id.upper().replace("-", "_").replace(".", "_")


def _apply_table(base: ProviderSpec | None, pid: str, table: dict[str, Any], origin: str) -> ProviderSpec:
    unknown = set(table) - (_SPEC_FIELDS - {"id"})
    if unknown:
        raise ConfigError(
            f"[providers.{pid}] in {origin} has unknown field(s) {', '.join(sorted(unknown))}; "
            f"known fields are {', '.join(sorted(_SPEC_FIELDS - {'id'}))} (the id is the table's name)."
        )
    values = {name: _field_value(pid, name, value, origin) for name, value in table.items()}
    dialect = values.get("dialect", base.dialect if base is not None else "openai")
    _check_dialect(pid, dialect, origin)
    if "base_url" in values and dialect != "local":  # the local dialect's base_url is a model file
        check_base_url(values["base_url"], f"[providers.{pid}] base_url in {origin}")
    for header, value in values.get("extra_headers", {}).items():
        check_header_value(value, f"[providers.{pid}] extra_headers.{header} in {origin}")
    if base is not None:
        return base.with_changes(**values)
    if "base_url" not in values:
        raise ConfigError(f"[providers.{pid}] in {origin} is a new provider and needs a base_url.")
    values.setdefault("dialect", "openai")
    values.setdefault("label", pid)
    values.setdefault("key_required", bool(values.get("key_env")))
    models = values.get("models", ())
    values.setdefault("default_model", models[0] if models else "")
    return ProviderSpec(id=pid, **values)


# What each ProviderSpec annotation accepts from a TOML file, and how it is said in an error.
_KINDS = {
    "str": "a string",
    "str | None": "a string",
    "bool": "true or false",
    "tuple[str, ...]": "a list of strings (or one string)",
    "dict[str, str]": "a table of strings",
    "dict[str, Any]": "a table",
}


def _field_value(pid: str, name: str, value: Any, origin: str) -> Any:
    """A config value in the type its ProviderSpec field has, or an error naming file, provider and field."""
    kind = str(_SPEC_TYPES.get(name, ""))
    ok = True
    if kind in ("str", "str | None"):
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "tuple[str, ...]":
        value = [value] if isinstance(value, str) else value  # one name, not its letters
        ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
        value = tuple(v.strip() for v in value) if ok else value
    elif kind.startswith("dict["):
        ok = isinstance(value, dict) and (kind != "dict[str, str]" or all(isinstance(v, str) for v in value.values()))
    problem = _item_problem(name, value) if ok else None
    if problem:
        raise ConfigError(f"The nbllm config file {origin}: [providers.{pid}] {name} has {problem}. Fix the file, "
                          "or point NBLLM_CONFIG at another one.")
    if not ok:
        raise ConfigError(
            f"The nbllm config file {origin}: [providers.{pid}] {name} must be {_KINDS.get(kind, kind)}, "
            f"not {_type_name(value)} ({_short(value)}). Fix the file, or point NBLLM_CONFIG at another one."
        )
    return value


def _item_problem(name: str, value: Any) -> str | None:
    """Names inside a well-typed field that could never work: variable and header names."""
    if name in ("key_env", "secret_env", "base_url_env", "headers_from_env"):
        names = value.values() if isinstance(value, dict) else [value] if isinstance(value, str) else value
        for env in names:
            if env_name_problem(env):
                return f"{_short(env)}, which is not a variable name ({env_name_problem(env)})"
    if name in ("extra_headers", "headers_from_env"):
        for header in value:
            if header_name_problem(header):
                return f"the header {_short(header)} ({header_name_problem(header)})"
    return None


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
             dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


def _short(value: Any) -> str:
    from nbllm.secrets import redact

    text = redact(repr(value))
    return text if len(text) <= 60 else text[:59] + "…"


def _check_dialect(pid: str, dialect: str, origin: str) -> None:
    from nbllm.providers.base import DIALECTS

    if dialect not in DIALECTS and ":" not in dialect:
        raise ConfigError(
            f"The nbllm config file {origin}: [providers.{pid}] dialect {dialect!r} is not one nbllm knows; "
            f"use one of {', '.join(DIALECTS)}, or a plugin's module:Class."
        )


@functools.cache
def _plugin_specs() -> tuple[ProviderSpec, ...]:
    """Rows from installed plugins: each entry point gives a ProviderSpec or a list of them.

    Scanned once per process: reading every installed package's metadata costs ~15 ms, far
    more than the rest of a call's overhead. ``reload_plugins()`` scans again.
    """
    from importlib.metadata import entry_points

    specs: list[ProviderSpec] = []
    for ep in entry_points(group="nbllm.providers"):
        try:
            loaded = ep.load()
        except Exception as exc:
            # Fail rather than warn: skipping it would turn the plugin's providers into a misleading
            # "unknown provider" (or, for a plugin that overrides a built-in row, send prompts to a
            # different endpoint than the user installed). The message names what to fix or uninstall.
            raise ConfigError(f"The nbllm plugin {ep.name!r} ({ep.value}) failed to load: {exc}. Fix or "
                              "uninstall the package that provides it, or run `pip check`.") from exc
        loaded = loaded() if callable(loaded) and not isinstance(loaded, ProviderSpec) else loaded
        specs.extend(loaded if isinstance(loaded, (list, tuple)) else [loaded])
    return tuple(specs)


def reload_plugins() -> None:
    """Forget the plugin scan, e.g. after installing a provider plugin in a running kernel."""
    _plugin_specs.cache_clear()
    _last_specs.clear()


# The last specs built from the config file: (path, file bytes, env names, their values) -> specs.
# Every call (each %%llm cell) needs them; re-reading the file is cheap, re-parsing it and
# re-applying every override is not, so they are rebuilt only when one of those inputs changed.
_last_specs: list[tuple[str, bytes | None, tuple[str, ...], tuple[str | None, ...], dict[str, ProviderSpec]]] = []


def load_specs(config: dict[str, Any] | None = None) -> dict[str, ProviderSpec]:
    """All providers by id, with config-file and environment overrides applied."""
    if config is not None:
        return _build_specs(config)
    path = config_path()
    data = _read_config(path)
    if _last_specs:
        last_path, last_data, names, values, specs = _last_specs[0]
        if last_path == str(path) and last_data == data and _env_values(names) == values:
            return dict(specs)
    specs = _build_specs(_parse_config(path, data))
    names = _env_keys(specs)
    _last_specs[:] = [(str(path), data, names, _env_values(names), specs)]
    return dict(specs)


def _env_keys(specs: dict[str, ProviderSpec]) -> tuple[str, ...]:
    """The environment variables that can change these specs' base URLs."""
    names = [f"NBLLM_{env_name(pid)}_BASE_URL" for pid in specs]
    return tuple(names + [env for spec in specs.values() for env in (spec.base_url_env, spec.model_path_env) if env])


def _env_values(names: tuple[str, ...]) -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in names)


def _build_specs(config: dict[str, Any]) -> dict[str, ProviderSpec]:
    specs = {spec.id: spec for spec in BUILTIN}
    for spec in _plugin_specs():
        if find_id(spec.id, specs) is None:  # a built-in row wins over a plugin's, in any case
            specs[spec.id] = spec
    origin = str(config_path())
    tables = config.get("providers") or {}
    if not isinstance(tables, dict):
        raise ConfigError(f"The nbllm config file {origin}: providers must be a table of [providers.<id>] "
                          f"tables, not {_type_name(tables)}.")
    written: dict[str, str] = {}  # each table's id in lower case -> the table's name as written
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"The nbllm config file {origin}: providers.{name} must be a table "
                              f"([providers.{name}]), not {_type_name(table)}.")
        first = written.setdefault(name.casefold(), name)
        if first != name:
            raise ConfigError(
                f"The nbllm config file {origin} has both [providers.{first}] and [providers.{name}]: provider ids "
                "do not depend on case, so both tables name one provider. Merge them into one table."
            )
        pid = find_id(name, specs) or name  # [providers.Kimi] changes the built-in kimi
        # [providers.ID.prices] is read by the exchange log's usage totals, not part of the row
        fields_ = {k: v for k, v in table.items() if k != "prices"}
        if fields_ or pid not in specs:
            specs[pid] = _apply_table(specs.get(pid), name, fields_, origin)
    for spec in specs.values():
        register_key_env((*spec.key_env, *spec.secret_env))  # their values are masked from now on
    for pid, spec in specs.items():
        url = os.environ.get(f"NBLLM_{env_name(pid)}_BASE_URL")
        if not url and spec.base_url_env and pid.casefold() not in written:
            url = os.environ.get(spec.base_url_env)
        if url:
            specs[pid] = spec = spec.with_changes(base_url=url)
        if spec.dialect == "local":
            specs[pid] = _with_model_path(spec)
    return specs


def _with_model_path(spec: ProviderSpec) -> ProviderSpec:
    """An in-process model is a file, not a URL: its ``model_path`` comes from the env variable
    (``NBLLM_LOCAL_MODEL``), else ``model_path`` in the config file, else ``base_url`` there (the
    spelling older nbllm versions read, still honoured)."""
    env = os.environ.get(spec.model_path_env or "") if spec.model_path_env else None
    return spec.with_changes(model_path=env or spec.model_path or spec.base_url, base_url="")


def get_spec(provider_id: str, specs: dict[str, ProviderSpec] | None = None) -> ProviderSpec:
    """The spec for an id, or an error that suggests the closest known ids."""
    if not isinstance(provider_id, str):
        raise UnknownProviderError(f"A provider is named by its id as a string, not {_type_name(provider_id)} "
                                   f"({_short(provider_id)}).")
    specs = load_specs() if specs is None else specs
    pid = find_id(provider_id, specs)
    if pid is not None:
        return specs[pid]
    close = difflib.get_close_matches(provider_id.lower(), list(specs), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownProviderError(
        f"Unknown provider {provider_id!r}.{hint} Known providers: {', '.join(sorted(specs))}. "
        "Add your own OpenAI-compatible endpoint under [providers.<id>] in the nbllm config file."
    )


def split_target(target: str, specs: dict[str, ProviderSpec] | None = None) -> tuple[str, str | None]:
    """Split ``id``, ``id:model`` or ``id/model`` (model names may hold ':' and '/')."""
    if not isinstance(target, str):
        get_spec(target)  # type: ignore[arg-type] - raises the error that says what a target is
    target = target.strip()
    cut = min((i for i in (target.find(":"), target.find("/")) if i > 0), default=-1)
    if cut < 0:
        return target, None
    head, model = target[:cut], target[cut + 1 :]
    specs = load_specs() if specs is None else specs
    if find_id(head, specs) is None and find_id(target, specs) is not None:
        return target, None
    return head, model or None


def default_target(config: dict[str, Any] | None = None) -> str:
    """The provider (and model) used when none is named."""
    return default_source(config)[0]


def default_source(config: dict[str, Any] | None = None) -> tuple[str, str]:
    """The default target and where it was set, for errors that say what to fix."""
    env = os.environ.get("NBLLM_DEFAULT", "").strip()
    if env:
        return env, "NBLLM_DEFAULT"
    config = load_config() if config is None else config
    value = config.get("default")
    if value is None or value == "":
        return "ernie", "nbllm's built-in default"
    origin = f"default in the nbllm config file {config_path()}"
    if not isinstance(value, str):
        raise ConfigError(f"The {origin} must be a provider id as a string, not {_type_name(value)}.")
    return value.strip(), origin


def base_url_origin(spec: ProviderSpec) -> str:
    """Where a provider's base URL came from: the variable that set it, the config file or nbllm."""
    name = f"NBLLM_{env_name(spec.id)}_BASE_URL"
    if os.environ.get(name):
        return f"the environment variable {name}"
    if spec.base_url_env and os.environ.get(spec.base_url_env) == spec.base_url:
        return f"the environment variable {spec.base_url_env}"
    return f"[providers.{spec.id}] base_url"
