"""``convert_paths``: the Python entry point behind ``nbllm convert`` and ``%llm convert``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from nbllm.config import get_spec, load_specs
from nbllm.convert.report import printable
from nbllm.convert.result import BatchResult
from nbllm.convert.runner import Options, destinations, discover, run_batch
from nbllm.errors import ConfigError, ConvertError
from nbllm.modelmap import describe, parse_overrides
from nbllm.providers.catalog import ProviderSpec


class ArgumentError(ConvertError):
    """An argument that cannot work, found before any file is touched (a usage mistake)."""


class TargetError(ConfigError):
    """The target provider cannot be used by converted code (not OpenAI-compatible)."""


def resolve_target(provider_id: str) -> ProviderSpec:
    """The spec to convert to; only OpenAI-compatible providers (custom ones included) qualify."""
    specs = load_specs()
    spec = get_spec(provider_id, specs)
    if not spec.openai_compatible:
        valid = ", ".join(sorted(s.id for s in specs.values() if s.openai_compatible and s.id != "openai"))
        raise TargetError(
            f"{provider_id!r} ({spec.label}) speaks the {spec.dialect} protocol, which the openai SDK cannot "
            f"call, so notebooks cannot be converted to it. OpenAI-compatible targets: {valid}."
        )
    return spec


def convert_paths(
    paths: list[str] | list[Path] | str | Path,
    to: str,
    *,
    models: Mapping[str, str] | list[str] | None = None,
    keep_v0: bool = False,
    dry_run: bool = False,
    output_dir: str | Path | None = None,
    backup: bool = False,
    clear_outputs: bool = False,
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> BatchResult:
    """Convert notebooks and .py files (folders recursively) to provider ``to``; never raises per file.

    ``models`` overrides the default model map (``{"gpt-4o": "ernie-4.5-turbo-128k"}`` or
    ``["gpt-4o=ernie-4.5-turbo-128k"]``). With ``dry_run`` nothing is written; results and
    diffs are still computed.
    """
    spec = resolve_target(to)
    overrides = dict(models) if isinstance(models, Mapping) else parse_overrides(models)
    opts = Options(spec=spec, model_overrides=tuple(overrides.items()), keep_v0=keep_v0, write=not dry_run,
                   output_dir=str(output_dir) if output_dir is not None else None, backup=backup,
                   clear_outputs=clear_outputs)
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ArgumentError(f"--output-dir {printable(str(output_dir))} is a file, not a folder; name a folder "
                            "(it is created if missing). Nothing was written.")
    files = list(discover(items))
    clashes = destinations(files, opts)
    if clashes:
        dest, sources = next(iter(clashes.items()))
        raise ArgumentError(f"--output-dir: {len(sources)} inputs would be written to {printable(str(dest))} "
                            f"({', '.join(printable(str(s)) for s in sources[:3])}); convert them in separate runs "
                            "or pass their common folder instead. Nothing was written.")
    results = run_batch(files, opts, jobs=jobs, progress=progress)
    return BatchResult(target=spec.id, results=results, model_map=describe(spec, overrides))
