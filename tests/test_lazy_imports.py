"""`import nbllm` and the light CLI commands stay cheap: heavy libraries load only when used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("httpx", "httpx_sse", "libcst", "ipywidgets", "nbformat", "IPython", "openai", "nbclient", "jupyter_client")


def loaded_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    """Run code in a fresh interpreter and return which heavy modules it imported."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_nbllm_is_light() -> None:
    assert loaded_after("import nbllm") == []


def test_engine_modules_are_light() -> None:
    code = "import nbllm.config, nbllm.keys, nbllm.errors, nbllm.providers.base, nbllm.cli"
    assert loaded_after(code) == []


def test_providers_command_does_not_load_converter_or_widgets(tmp_path: Path) -> None:
    env = {"NBLLM_CONFIG": str(tmp_path / "none.toml")}
    loaded = loaded_after("import contextlib, io\nfrom nbllm.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['providers']) == 0", env)
    assert loaded == []


def test_chat_function_not_shadowed_by_submodule() -> None:
    import importlib.util

    import nbllm
    import nbllm.messages  # noqa: F401 - the values that used to live in a submodule named chat
    import nbllm.response  # noqa: F401

    assert callable(nbllm.chat) and nbllm.chat.__module__ == "nbllm"
    assert importlib.util.find_spec("nbllm.chat") is None  # no module of that name to shadow it


def test_redirect_function_not_shadowed_by_submodule() -> None:
    import nbllm
    from nbllm.redirect import status  # noqa: F401 - the submodule of the same name

    assert callable(nbllm.redirect) and nbllm.redirect.__module__ == "nbllm"


def test_load_ext_imports_and_opens_nothing_of_the_exchange_log(tmp_path: Path) -> None:
    log = tmp_path / "logs.db"
    probe = ("import sys, json\nfrom IPython.core.interactiveshell import InteractiveShell\n"
             "InteractiveShell.instance().run_line_magic('load_ext', 'nbllm')\n"
             "print(json.dumps([m for m in sys.modules if m.startswith('nbllm.log')]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "NBLLM_LOG": str(log), "IPYTHONDIR": str(tmp_path / "ipython")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [] and not log.exists()
