"""The switcher in a real browser: JupyterLab on loopback, driven by Playwright in Debian's chromium.

The test opens notebooks/switch-providers.ipynb, runs all cells, picks a provider and a model and
types a key in the rendered panel, runs the ``%%llm`` cell again and checks in the page that the
loopback server's streamed answer appeared and that the kernel's session changed. It then saves
the notebook and scans the file for keys, and leaves a screenshot in its tmp dir and in
/work/screenshots/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from tests.conftest import UseFake
from tests.fakes.loopback import free_port
from tests.fakes.openai_server import Answer, FakeOpenAIServer

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "switch-providers.ipynb"
SCREENSHOTS = Path("/work/screenshots")
TYPED_KEY = "sk-typed-in-browser-5f1c2e9a7b3d4c6e"
MAGIC_KEY = "glm-key-given-to-getpass-8e2b1c4d9f"
QWEN_ANSWER = "Ni hao from the loopback Qwen endpoint, streamed in small pieces."
LIVE_MODELS = ["qwen-max", "qwen-live-demo", "qwen-plus"]
WAIT_MS = 60_000


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    server: FakeOpenAIServer
    env_key: str

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"


def _settings(base: Path) -> Path:
    """Lab user settings: widget state saved with the notebook (so the key scan means something), no news."""
    settings = base / "lab-settings"
    files = {
        "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False},
    }
    for name, content in files.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content), encoding="utf-8")
    return settings


def _lab_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)  # carries the conftest isolation and the provider routing below
    env.update({
        "JUPYTERLAB_SETTINGS_DIR": str(_settings(base)),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _wait_ready(url: str, token: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with opener.open(f"{url}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets the server shut its kernels down; the process group is killed if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def lab(tmp_path: Path, use_fake: UseFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 whose kernels reach the loopback server as deepseek (env key) and qwen (no key)."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    with FakeOpenAIServer(models=LIVE_MODELS) as server:
        env_key = use_fake("deepseek", server)
        use_fake("qwen", server, key="")
        monkeypatch.setenv("NBLLM_DEFAULT", "deepseek")
        port, token = free_port(), uuid.uuid4().hex
        log = tmp_path / "jupyterlab.log"
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--ServerApp.open_browser=False"]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=_lab_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            _wait_ready(f"http://127.0.0.1:{port}", token, proc, log)
            yield Lab(f"http://127.0.0.1:{port}", token, root, server, env_key)
        finally:
            _stop(proc)


# -- driving the page ---------------------------------------------------------------------------
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def _menu(page: Page, menu: str, command: str) -> None:
    """Run a JupyterLab command through its main-menu entry, as a user would."""
    page.locator(".lm-MenuBar-item").filter(has_text=menu).first.click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').first.click()


def _cell(page: Page, index: int) -> Locator:
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)


def _saved(path: Path, needle: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8")
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{path.name} was not saved with {needle!r}")


def _open_and_run_all(page: Page, lab: Lab) -> None:
    """Open the notebook, wait for its kernel, Run All: the default provider (deepseek) answers."""
    page.goto(lab.notebook_url(NOTEBOOK.name))
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=WAIT_MS)
    page.locator('.jp-SideBar li[data-id="filebrowser"]').click()  # more room for the notebook
    _menu(page, "Run", "runmenu:run-all")
    expect(_cell(page, 6).locator(".jp-OutputArea-output")).to_have_text("deepseek", timeout=WAIT_MS)
    expect(_cell(page, 4).locator(".jp-OutputArea-output").first).to_contain_text(
        "echo: In one sentence, why would a notebook switch LLM providers?")


def _switch_to_qwen(page: Page) -> None:
    """In the rendered panel: pick qwen (no key yet), type a key, pick a model from the live list."""
    panel = page.locator(".nbllm-switcher")
    status = panel.locator(".widget-html-content")
    provider = panel.locator("select")
    provider.select_option(value="✗ Alibaba Qwen (DashScope) [qwen] (no key)")
    expect(status).to_contain_text("not configured: set DASHSCOPE_API_KEY")
    key = panel.locator("input[type=password]")
    key.fill(TYPED_KEY)
    key.press("Enter")
    expect(status).to_contain_text("Key set for qwen for this Python session only")
    expect(key).to_have_value("")
    expect(provider).to_have_value("✓ Alibaba Qwen (DashScope) [qwen]")
    expect(panel.locator('datalist option[value="qwen-live-demo"]')).to_have_count(1)  # the live listing
    model = panel.locator("input[list]")
    model.fill("qwen-max")
    model.press("Enter")
    expect(status).to_contain_text("qwen · qwen-max · provider defaults · configured")


def _rerun_and_test(page: Page, lab: Lab) -> None:
    """Run the %%llm cell and the target cell again; the answer now streams from 'qwen'."""
    lab.server.enqueue(Answer(QWEN_ANSWER))
    _cell(page, 4).locator(".jp-InputPrompt").click()
    _menu(page, "Run", "notebook:run-all-below")
    expect(_cell(page, 6).locator(".jp-OutputArea-output")).to_have_text("qwen:qwen-max", timeout=WAIT_MS)
    expect(_cell(page, 4).locator(".jp-OutputArea-output").first).to_contain_text(QWEN_ANSWER)
    panel = page.locator(".nbllm-switcher")
    panel.locator("button").filter(has_text="Test").click()
    expect(panel.locator(".widget-html-content")).to_contain_text("✓ qwen:qwen-max answered in", timeout=WAIT_MS)


def _key_and_use_magics(page: Page) -> None:
    """Add cells running `%llm key glm` (answering its password prompt) and `%llm use glm:glm-4-air`."""
    _cell(page, 6).locator(".jp-InputPrompt").click()
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type("%llm key glm")
    page.keyboard.press("Shift+Enter")
    stdin = page.locator(".jp-Stdin-input")
    stdin.fill(MAGIC_KEY)
    stdin.press("Enter")
    expect(_cell(page, 7).locator(".jp-OutputArea")).to_contain_text("Key for glm set for this session")
    _cell(page, 8).locator(".cm-content").click()  # the empty cell Shift+Enter left at the end
    page.keyboard.type("%llm use glm:glm-4-air")
    page.keyboard.press("Shift+Enter")
    panel = page.locator(".nbllm-switcher")
    expect(panel.locator("select")).to_have_value("✓ Zhipu GLM (BigModel) [glm]")
    expect(panel.locator("input[list]")).to_have_value("glm-4-air")
    expect(panel.locator(".widget-html-content")).to_contain_text("glm · glm-4-air · provider defaults · configured")


def _save(page: Page, lab: Lab) -> dict[str, object]:
    _menu(page, "File", "docmanager:save")
    text = _saved(lab.root / NOTEBOOK.name, "Key for glm set for this session")
    for secret in (TYPED_KEY, MAGIC_KEY, lab.env_key):
        assert secret not in text
    return json.loads(text)


def test_switcher_drives_the_kernel_session_in_jupyterlab(lab: Lab, tmp_path: Path) -> None:
    expect.set_options(timeout=20_000)
    shot = tmp_path / "switch-providers.png"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 1100})
        page = context.pages[0] if context.pages else context.new_page()
        try:
            _open_and_run_all(page, lab)
            _switch_to_qwen(page)
            _rerun_and_test(page, lab)
            _cell(page, 0).scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
            _key_and_use_magics(page)
            saved = _save(page, lab)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            context.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / shot.name)

    qwen_calls = [r for r in lab.server.chat_requests if r.headers.get("authorization") == f"Bearer {TYPED_KEY}"]
    assert [r.json["model"] for r in qwen_calls] == ["qwen-max", "qwen-max"]  # the %%llm cell, then Test
    assert qwen_calls[0].json["stream"] is True
    widget_state = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    passwords = [m["state"] for m in widget_state.values() if m["model_name"] == "PasswordModel"]
    assert len(passwords) == 1
    assert passwords[0].get("value", "") == ""
    outputs = json.dumps(saved["cells"][4]["outputs"])
    assert QWEN_ANSWER in outputs
