"""The wheel installs exactly one import name, `nbllm`, with magics/ and widgets/ mapped inside it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _offline_build_possible() -> bool:
    """setuptools >= 70.1 builds wheels itself; older ones need the `wheel` package."""
    import setuptools

    major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build from a copy of the tree, so no build/ or egg-info lands in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("nbllm", "magics", "widgets"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    isolation = ["--no-isolation", "--skip-dependency-check"] if _offline_build_possible() else []
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (built,) = out.glob("nbllm-*.whl")
    return built


def test_wheel_holds_only_nbllm(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(info).decode().split() == ["nbllm"]
        entry_points = zf.read(info.replace("top_level.txt", "entry_points.txt")).decode()
    outside = [n for n in names if not n.startswith(("nbllm/", "nbllm-"))]
    assert outside == []
    for expected in ("nbllm/__init__.py", "nbllm/cli.py", "nbllm/providers/openai_compat.py",
                     "nbllm/magics/__init__.py", "nbllm/widgets/__init__.py", "nbllm/convert/__init__.py"):
        assert expected in names
    assert not any("__pycache__" in n or n.startswith("nbllm/tests") for n in names)
    assert "nbllm = nbllm.cli:main" in entry_points


def test_wheel_installs_one_top_level_name(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    top = sorted(p.name for p in target.iterdir() if p.name != "bin")
    assert len(top) == 2 and top[0] == "nbllm"
    assert top[1].startswith("nbllm-") and top[1].endswith(".dist-info")
    probe = "import nbllm.magics, nbllm.widgets, nbllm.cli; print(nbllm.__file__)"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                           env={"PYTHONPATH": str(target), "PATH": ""}, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == str(target / "nbllm" / "__init__.py")
