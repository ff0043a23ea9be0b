"""Convert a folder of real notebooks, run them before and after, and say what the conversion broke.

    python benchmarks/corpus_harness.py ../shared/corpus --to ernie [--jobs 2] [--json out.json]

Steps: copy the folder twice (originals, converted); ``nbllm convert`` the second copy in place
(timed) and check a second conversion changes nothing; then execute every notebook that uses the
OpenAI SDK with nbclient, the original against a loopback OpenAI-compatible fake (``openai<1``
code in a kernel from a second venv, ``--openai0-python``) and the converted one against a fake
standing in for the target, with the target's key set and no OpenAI key. Per notebook:

- ``runs``: the converted notebook ran as far as the original did (to the end, or to the same
  error in the same cell);
- ``broken``: the converted one failed earlier or differently, or its fake saw an OpenAI model
  name, an OpenAI or Azure key, or a path that is not an OpenAI route (malformed base URL);
- ``runs to a call left on OpenAI``: the converted one stops only at a call the converter marked
  as still going to OpenAI (no equivalent at the target; no OpenAI key is set here);
- ``fails in original``: the original needs something missing here (a package, a data file,
  a network host, an input) and the converted one gets no less far.

Notebooks importing a package that is not installed are classed ``fails in original`` from their
imports without executing (heavy stacks such as langchain are not installed on purpose). Not a
pytest test: the corpus is not part of the project.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPENAI_KEY = "sk-harnessOpenAIkey0123456789abcdef"
TARGET_KEY = "harness-target-key-5f3a9c"
AZURE_KEY = "harness-azure-key-77b1e2"
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/moderations", "/v1/models",
          "/v1/responses")
V0_CODE = re.compile(r"openai\.(?:ChatCompletion|Completion|Embedding|Moderation|Image|Edit|FineTune|error)\b|"
                     r"openai\.api_base\b|openai\.api_type\b")
OPENAI0_KERNEL = "nbllm-harness-openai0"
OPENAI_ONLY_MARK = "# nbllm: still calls OpenAI"
# Run first in every kernel: a prompt for a key gets the key a user would type (the OpenAI key
# for the original, the target's for the converted notebook); nothing else is answered.
PREAMBLE = """\
import builtins as _b, getpass as _g, os as _o
_g.getpass = lambda prompt="", stream=None: _o.environ.get("NBLLM_HARNESS_INPUT", "")
_b.input = lambda prompt="": _o.environ.get("NBLLM_HARNESS_INPUT", "")
"""
# OpenAI SDK use, or a wrapper the converter retargets; a notebook without it must stay byte-identical.
SDK_USE = re.compile(r"^\s*(?:import\s+(?:[\w.]+\s*,\s*)*openai\b|from\s+openai\b|from\s+langchain_openai\b|from\s+(?:langchain\w*|llama_index)[\w.]*\s+import\b"
                     r"[^\n]*OpenAI)", re.M)


@dataclass
class Run:
    """How far one execution got."""

    ok: bool
    cell: int | None = None  # 1-based code cell that failed
    error: str = ""
    requests: int = 0
    leaks: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    path: str
    verdict: str  # runs | broken | fails in original | not executed
    reason: str = ""
    original: Run | None = None
    converted: Run | None = None


# --- static checks -------------------------------------------------------------------------


def code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text("utf-8"))
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def _python(cell: str) -> str:
    """The cell with IPython lines (``%magic``, ``!cmd``) replaced by ``pass`` at their indent."""
    out = []
    for line in cell.splitlines():
        body = line.lstrip()
        out.append(line[: len(line) - len(body)] + "pass" if body.startswith(("%", "!")) else line)
    return "\n".join(out)


def missing_modules(path: Path, python_has: dict[str, bool]) -> list[str]:
    """Top-level packages the notebook imports that are neither installed nor next to it."""
    missing: list[str] = []
    for cell in code_cells(path):
        if cell.lstrip().startswith("%%"):
            continue
        try:
            tree = ast.parse(_python(cell))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top in python_has:
                    if not python_has[top]:
                        missing.append(top)
                    continue
                local = (path.parent / f"{top}.py").exists() or (path.parent / top).is_dir()
                try:
                    python_has[top] = local or importlib.util.find_spec(top) is not None
                except (ImportError, ValueError):  # __main__, broken namespace packages
                    python_has[top] = True
                if not python_has[top]:
                    missing.append(top)
    return sorted(set(missing))


def uses_openai(path: Path) -> bool:
    return any("openai" in c.lower() for c in code_cells(path))


# --- execution -----------------------------------------------------------------------------


def _leaks(requests: list[Any], converted: bool) -> list[str]:
    from nbllm.modelmap import is_openai_model

    found: list[str] = []
    for req in requests:
        if req.path not in ROUTES:
            found.append(f"path {req.path}")
        if not converted:
            continue
        auth = req.headers.get("authorization", "")
        if auth and auth != f"Bearer {TARGET_KEY}":
            found.append("wrong key " + ("(OpenAI)" if OPENAI_KEY in auth else "(Azure)" if AZURE_KEY in auth
                                         else "(other)"))
        if "api-key" in req.headers:
            found.append("Azure api-key header")
        body = req.json if isinstance(req.json, dict) else {}
        model = body.get("model")
        if isinstance(model, str) and is_openai_model(model):
            found.append(f"OpenAI model {model}")
    return sorted(set(found))


def execute(path: str, kernel: str, env: dict[str, str], timeout: int, converted: bool) -> Run:
    """Run one notebook to its first error against a fresh fake; what got how far."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from tests.fakes.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(require_auth=False) as fake:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_", "NBLLM_"))}
        full |= {k: v.replace("{FAKE}", fake.base_url) for k, v in env.items()}
        full["PIP_NO_INDEX"] = "1"  # a notebook's %pip install must not change the shared environments
        nb = nbformat.read(path, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_code_cell(PREAMBLE))
        if converted:
            for cell in nb.cells:  # the converter wrote the placeholder host; point it at this fake
                if cell.cell_type == "code":
                    cell.source = cell.source.replace(env["_PLACEHOLDER"], fake.base_url)
        client = NotebookClient(nb, kernel_name=kernel, timeout=timeout, startup_timeout=120,
                                resources={"metadata": {"path": str(Path(path).parent)}})
        try:
            client.execute(env=full)
            run = Run(ok=True)
        except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as exc:
            codes = [c for c in nb.cells if c.cell_type == "code"][1:]
            cell = next((i for i, c in enumerate(codes, 1) for o in c.get("outputs", [])
                         if o.get("output_type") == "error"), None)
            name = getattr(exc, "ename", None) or type(exc).__name__
            value = str(getattr(exc, "evalue", "") or "")[:160]
            if cell is None:
                cell = sum(1 for c in codes if c.get("execution_count") or c.get("outputs")) or None
            run = Run(ok=False, cell=cell, error=f"{name}: {value}")
            if cell and OPENAI_ONLY_MARK in codes[cell - 1].source:
                run.error = "openai-only: " + run.error
        run.requests = len(fake.requests)
        run.leaks = _leaks(list(fake.requests), converted)
    return run


def judge(rel: str, orig_path: Path, conv_path: Path, opts: dict[str, Any]) -> Verdict:
    v0 = any(V0_CODE.search(c) for c in code_cells(orig_path))
    placeholder = opts["placeholder"]
    orig_env = {"OPENAI_API_KEY": OPENAI_KEY, "NBLLM_HARNESS_INPUT": OPENAI_KEY, "OPENAI_BASE_URL": "{FAKE}", "OPENAI_API_BASE": "{FAKE}",
                "AZURE_OPENAI_API_KEY": AZURE_KEY, "_PLACEHOLDER": placeholder}
    conv_env = {opts["key_env"]: TARGET_KEY, "NBLLM_HARNESS_INPUT": TARGET_KEY, "AZURE_OPENAI_API_KEY": AZURE_KEY, "_PLACEHOLDER": placeholder}
    kernel = OPENAI0_KERNEL if v0 and opts["openai0"] else "python3"
    original = execute(str(orig_path), kernel, orig_env, opts["timeout"], converted=False)
    converted = execute(str(conv_path), "python3", conv_env, opts["timeout"], converted=True)
    if converted.leaks:
        return Verdict(rel, "broken", "fake saw: " + ", ".join(converted.leaks), original, converted)
    if converted.error.startswith("openai-only") and (original.ok or (original.cell or 0) >= (converted.cell or 0)):
        return Verdict(rel, "runs to a call left on OpenAI", f"cell {converted.cell}: {converted.error}",
                       original, converted)
    if original.ok:
        verdict = "runs" if converted.ok else "broken"
        return Verdict(rel, verdict, "" if converted.ok else f"cell {converted.cell}: {converted.error}",
                       original, converted)
    if converted.ok or (converted.cell or 0) > (original.cell or 0):
        return Verdict(rel, "fails in original", f"original cell {original.cell}: {original.error}",
                       original, converted)
    if converted.cell == original.cell and converted.error.split(":")[0] == original.error.split(":")[0]:
        return Verdict(rel, "fails in original", f"cell {original.cell}: {original.error}", original, converted)
    return Verdict(rel, "broken", f"converted cell {converted.cell}: {converted.error} (original: cell "
                   f"{original.cell}: {original.error})", original, converted)


def _judge_star(args: tuple[str, Path, Path, dict[str, Any]]) -> Verdict:
    try:
        return judge(*args)
    except Exception as exc:  # the harness reports, it does not stop
        return Verdict(args[0], "not executed", f"harness error {type(exc).__name__}: {exc}")


# --- the run -------------------------------------------------------------------------------


def convert_copy(folder: Path, to: str, jobs: int, env: dict[str, str], report: Path,
                 check: bool = False) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "nbllm", "convert", str(folder), "--to", to, "--jobs", str(jobs), "--quiet",
           "--report", str(report)]
    if check:
        cmd.append("--check")
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"nbllm convert failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return took, proc.returncode


def register_openai0(python: str, home: Path) -> bool:
    """A kernelspec for the openai<1 venv, visible to this harness only (JUPYTER_PATH)."""
    if not Path(python).exists():
        return False
    spec = home / "kernels" / OPENAI0_KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "openai<1 (harness)", "language": "python"}), encoding="utf-8")
    os.environ["JUPYTER_PATH"] = str(home) + os.pathsep + os.environ.get("JUPYTER_PATH", "")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--to", default="ernie")
    parser.add_argument("--jobs", type=int, default=2, help="conversion processes and parallel executions")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per cell")
    parser.add_argument("--workdir", type=Path, help="keep the copies here (default: a temp folder)")
    parser.add_argument("--openai0-python", default="/work/venvs/openai0/bin/python")
    parser.add_argument("--no-exec", action="store_true", help="convert and check only")
    parser.add_argument("--match", default="", help="only notebooks whose path contains this")
    parser.add_argument("--json", type=Path, help="write every verdict here")
    parser.add_argument("--reuse", action="store_true", help="reuse the copies and reports in --workdir "
                        "(execute again without converting again)")
    args = parser.parse_args(argv)

    from nbllm.config import env_name, load_specs

    work = args.workdir or Path(tempfile.mkdtemp(prefix="nbllm-harness-"))
    orig, conv = work / "original", work / "converted"
    for dest in (orig, conv) if not args.reuse else ():
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(args.folder, dest, symlinks=True)
        for dirpath, _, names in os.walk(dest):  # the corpus is read-only; its copies must not be
            for name in [".", *names]:
                p = Path(dirpath, name)
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | 0o200)
    placeholder = "http://harness.invalid/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NBLLM_"))}
    env["NBLLM_CONFIG"] = str(work / "nbllm.toml")
    env[f"NBLLM_{env_name(args.to)}_BASE_URL"] = placeholder
    env["PYTHONPATH"] = str(ROOT)
    spec = load_specs({})[args.to]

    took = 0.0 if args.reuse else convert_copy(conv, args.to, args.jobs, env, work / "report1.json")[0]
    if not args.reuse:
        (work / "took").write_text(str(took), encoding="utf-8")
    took = float((work / "took").read_text(encoding="utf-8"))
    report = json.loads((work / "report1.json").read_text("utf-8"))
    files = report.get("files", report.get("results", []))
    statuses: dict[str, int] = {}
    for f in files:
        statuses[f["status"]] = statuses.get(f["status"], 0) + 1
    if not args.reuse:
        convert_copy(conv, args.to, args.jobs, env, work / "report2.json", check=True)
    again = json.loads((work / "report2.json").read_text("utf-8"))
    second = [f["path"] for f in again.get("files", again.get("results", [])) if f["status"] == "changed"]

    notebooks = sorted(p.relative_to(orig) for p in orig.rglob("*.ipynb") if args.match in str(p))
    touched_plain = [str(r) for r in notebooks if not any(SDK_USE.search(c) for c in code_cells(orig / r))
                     and (orig / r).read_bytes() != (conv / r).read_bytes()]
    print(f"converted {len(files)} files in {took:.1f} s ({len(files) / took:.1f}/s) {statuses}")
    print(f"second conversion changed {len(second)}: {second[:10]}")
    print(f"notebooks without openai changed: {len(touched_plain)} {touched_plain[:10]}")

    verdicts: list[Verdict] = []
    if not args.no_exec:
        openai0 = register_openai0(args.openai0_python, work / "jupyter")
        opts = {"placeholder": placeholder, "key_env": spec.key_env[0], "timeout": args.timeout, "openai0": openai0}
        has: dict[str, bool] = {}
        todo = []
        for rel in notebooks:
            if not uses_openai(orig / rel):
                continue
            missing = missing_modules(orig / rel, has)
            if missing:
                verdicts.append(Verdict(str(rel), "fails in original", "not installed: " + ", ".join(missing)))
            else:
                todo.append((str(rel), orig / rel, conv / rel, opts))
        print(f"executing {len(todo)} notebooks ({len(verdicts)} need packages not installed here)", flush=True)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for n, verdict in enumerate(pool.map(_judge_star, todo), 1):
                verdicts.append(verdict)
                print(f"[{n}/{len(todo)}] {verdict.verdict:18} {verdict.path}  {verdict.reason[:150]}", flush=True)
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    summary = {"files": len(files), "convert_seconds": round(took, 2), "notebooks_per_s": round(len(files) / took, 1),
               "statuses": statuses, "second_conversion_changed": second, "plain_notebooks_changed": touched_plain,
               "verdicts": counts, "executed": sum(1 for v in verdicts if v.original is not None)}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "notebooks": [asdict(v) for v in verdicts]},
                                        indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
