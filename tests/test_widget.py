"""Headless tests of the provider switcher: set ``.value``, call ``.click()``, look at the session.

Calls go over real loopback HTTP to the fake OpenAI-compatible server; ``wait()`` joins the
panel's background threads (model listing, Test) before asserting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from comm import DummyComm
from nbllm.widgets import ProviderSwitcher

from nbllm import keys
from nbllm.config import get_spec, load_specs
from nbllm.session import Session, default_session
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer

KEY = "sk-widget-test-0123456789abcdef"


@pytest.fixture
def switcher() -> Iterator[ProviderSwitcher]:
    panel = ProviderSwitcher()
    yield panel
    panel.wait(10)
    panel.close()


def labels(panel: ProviderSwitcher) -> dict[str, str]:
    return {value: label for label, value in panel.provider.options}


class RecordingComm(DummyComm):
    """The kernel-side comm, recording every message the widget sends to the browser."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                    **keys: Any) -> None:
        if msg_type == "comm_msg":
            self.sent.append(data)


# -- provider list and two-way binding --------------------------------------------------------
def test_dropdown_lists_every_provider_and_marks_the_configured(openai_server: FakeOpenAIServer,
                                                                use_fake: UseFake) -> None:
    use_fake("deepseek", openai_server)
    panel = ProviderSwitcher()
    assert [value for _, value in panel.provider.options] == list(load_specs())
    assert labels(panel)["deepseek"] == "✓ DeepSeek [deepseek]"
    assert labels(panel)["qwen"] == "✗ Alibaba Qwen (DashScope) [qwen] (no key)"
    assert labels(panel)["ollama"] == "✓ Ollama [ollama]"  # needs no key
    panel.close()


def test_status_says_how_to_configure_a_provider_without_key(switcher: ProviderSwitcher) -> None:
    assert switcher.provider.value == "ernie"
    assert "not configured: set QIANFAN_API_KEY (or QIANFAN_BEARER_TOKEN), or run %llm key ernie" in (
        switcher.status.value
    )


def test_picking_a_provider_changes_the_session_at_once(switcher: ProviderSwitcher) -> None:
    switcher.provider.value = "kimi"
    session = default_session()
    assert session.provider == "kimi"
    assert session.model == ""
    assert switcher.model.placeholder == "moonshot-v1-8k (default)"
    assert switcher.model.options == get_spec("kimi").models
    assert "<b>kimi</b> · moonshot-v1-8k (default)" in switcher.status.value


def test_session_use_changes_the_widget_at_once(switcher: ProviderSwitcher) -> None:
    default_session().use("glm:glm-4-air")
    assert switcher.provider.value == "glm"
    assert switcher.model.value == "glm-4-air"
    assert switcher.model.options == get_spec("glm").models
    assert "<b>glm</b> · glm-4-air" in switcher.status.value
    default_session().use("qwen")
    assert (switcher.provider.value, switcher.model.value) == ("qwen", "")


def test_choosing_a_model_changes_the_session(switcher: ProviderSwitcher) -> None:
    switcher.provider.value = "deepseek"
    switcher.model.value = "deepseek-reasoner"
    assert default_session().target == "deepseek:deepseek-reasoner"
    switcher.model.value = "a-model-not-in-the-catalogue"
    assert default_session().target == "deepseek:a-model-not-in-the-catalogue"


def test_a_panel_can_follow_its_own_session() -> None:
    mine = Session("qwen:qwen-max")
    panel = ProviderSwitcher(mine)
    panel.provider.value = "kimi"
    assert mine.provider == "kimi"
    assert default_session().provider == "ernie"
    panel.close()
    mine.use("glm")  # a closed panel stops following
    assert panel.provider.value == "kimi"
    assert panel.model.comm is None and panel.comm is None


def test_temperature_and_max_tokens_go_to_the_session_params(switcher: ProviderSwitcher) -> None:
    session = default_session()
    assert session.params == {}
    assert "provider defaults" in switcher.status.value
    switcher.temperature.value = 0.3
    switcher.max_tokens.value = 256
    assert session.params == {"temperature": 0.3, "max_tokens": 256}
    assert "max_tokens=256, temperature=0.3" in switcher.status.value
    switcher.max_tokens.value = 0
    assert session.params == {"temperature": 0.3}
    session.params = {"temperature": 1.5, "max_tokens": 64}
    assert (switcher.temperature.value, switcher.max_tokens.value) == (1.5, 64)


# -- live model listing -----------------------------------------------------------------------
def test_live_models_arrive_in_the_background(use_fake: UseFake) -> None:
    with FakeOpenAIServer(models=["deepseek-live-1", "deepseek-chat"]) as server:
        use_fake("deepseek", server)
        default_session().use("deepseek")
        # The listing is held back by the server until released: the panel must not wait for it.
        server.enqueue(ErrorReply(200, {"object": "list", "data": [{"id": "deepseek-live-1", "object": "model"},
                                                                   {"id": "deepseek-chat", "object": "model"}]},
                                  delay=60))
        panel = ProviderSwitcher()
        assert panel.model.options == get_spec("deepseek").models
        assert panel.busy
        server.stopping.set()  # releases the held reply
        panel.wait(10)
        assert not panel.busy
        assert panel.model.options == ("deepseek-live-1", "deepseek-chat", "deepseek-reasoner")
        assert [r.path for r in server.requests] == ["/v1/models"]
        panel.close()


def test_failed_listing_keeps_the_catalogue_and_says_why(openai_server: FakeOpenAIServer,
                                                         use_fake: UseFake) -> None:
    use_fake("qwen", openai_server)
    default_session().use("qwen")
    openai_server.enqueue(ErrorReply(404, {"error": {"code": "not_found", "message": "no model listing here"}}))
    panel = ProviderSwitcher()
    panel.wait(10)
    assert panel.model.options == get_spec("qwen").models
    assert "Live model list unavailable, showing the catalogue." in panel.status.value
    assert "no model listing here" in panel.status.value
    panel.close()


def test_unconfigured_provider_is_not_listed_live(openai_server: FakeOpenAIServer,
                                                  switcher: ProviderSwitcher, use_fake: UseFake) -> None:
    use_fake("kimi", openai_server, key="")
    switcher.provider.value = "kimi"
    switcher.wait(10)
    assert openai_server.requests == []
    assert switcher.model.options == get_spec("kimi").models


# -- Test button ------------------------------------------------------------------------------
def test_test_button_reports_latency_and_the_answer(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                    switcher: ProviderSwitcher) -> None:
    key = use_fake("deepseek", openai_server)
    switcher.refresh()
    switcher.provider.value = "deepseek"
    switcher.wait(10)
    switcher.temperature.value = 0.2
    openai_server.enqueue(Answer(["O", "K"]))
    switcher.test_button.click()
    switcher.wait(30)
    assert "✓ deepseek:deepseek-chat answered in " in switcher.status.value
    assert "&#x27;OK&#x27;" in switcher.status.value
    assert switcher.test_button.disabled is False
    chat = openai_server.chat_requests[-1].json
    assert chat["model"] == "deepseek-chat"
    assert chat["max_tokens"] == 16
    assert chat["temperature"] == 0.2
    assert chat["messages"] == [{"role": "user", "content": "Reply with the single word OK."}]
    assert key not in switcher.status.value


def test_test_button_is_logged_and_never_answered_from_the_cache(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                                  switcher: ProviderSwitcher,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    use_fake("deepseek", openai_server)
    monkeypatch.setenv("NBLLM_CACHE", "on")
    switcher.refresh()
    switcher.provider.value = "deepseek"
    switcher.wait(10)
    for _ in range(2):
        switcher.test_button.click()
        switcher.wait(30)
    assert len(openai_server.chat_requests) == 2  # the same request twice, both asked of the provider
    conn = sqlite3.connect(os.environ["NBLLM_LOG"])
    assert conn.execute("SELECT source, provider, cached FROM exchanges").fetchall() == [("widget", "deepseek", 0)] * 2


def test_test_button_shows_the_one_paragraph_error_without_the_key(use_fake: UseFake,
                                                                   switcher: ProviderSwitcher) -> None:
    with FakeOpenAIServer(api_key="the-right-key-000000") as server:
        wrong = use_fake("glm", server, key="glm-wrong-key-1234567890")
        switcher.provider.value = "glm"
        switcher.wait(10)
        switcher.test_button.click()
        switcher.wait(30)
    status = switcher.status.value
    assert "✗ glm failed. AuthError:" in status
    assert "Incorrect API key provided" in status
    assert wrong not in status
    assert "glm***" in status


def test_test_button_without_key_names_the_fix(switcher: ProviderSwitcher) -> None:
    switcher.provider.value = "kimi"
    switcher.test_button.click()
    switcher.wait(10)
    assert "✗ kimi failed. MissingKeyError: No API key for Moonshot Kimi (kimi): set MOONSHOT_API_KEY" in (
        switcher.status.value
    )


# -- keys -------------------------------------------------------------------------------------
def test_typed_key_is_used_for_the_session_and_leaves_no_trace(openai_server: FakeOpenAIServer,
                                                              use_fake: UseFake,
                                                              switcher: ProviderSwitcher) -> None:
    use_fake("deepseek", openai_server, key="")
    switcher.provider.value = "deepseek"
    assert labels(switcher)["deepseek"].startswith("✗")
    switcher.key_input.value = KEY
    switcher.wait(10)
    assert switcher.key_input.value == ""
    assert keys.find_key(get_spec("deepseek")) == KEY
    assert labels(switcher)["deepseek"] == "✓ DeepSeek [deepseek]"
    assert "Key set for deepseek for this Python session only" in switcher.status.value
    switcher.test_button.click()
    switcher.wait(30)
    assert openai_server.chat_requests[-1].headers["authorization"] == f"Bearer {KEY}"
    import ipywidgets

    state = json.dumps(ipywidgets.Widget.get_manager_state(drop_defaults=False))
    assert KEY not in state
    assert KEY not in repr(switcher) + switcher.status.value


def test_key_from_the_browser_is_never_echoed_back(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                   switcher: ProviderSwitcher) -> None:
    use_fake("qwen", openai_server, key="")
    switcher.provider.value = "qwen"
    comm = RecordingComm()
    switcher.key_input.comm = comm
    update = {"method": "update", "state": {"value": KEY}, "buffer_paths": []}
    switcher.key_input._handle_msg({"content": {"data": update}, "buffers": []})
    assert keys.find_key(get_spec("qwen")) == KEY
    switcher.wait(10)
    assert comm.sent == [{"method": "update", "state": {"value": ""}, "buffer_paths": []}]
    assert openai_server.requests[-1].headers["authorization"] == f"Bearer {KEY}"  # the live listing
    switcher.key_input.comm = None


def test_key_field_says_which_provider_and_shape(switcher: ProviderSwitcher) -> None:
    assert switcher.key_input.placeholder == "API key for ernie, this session only"
    switcher.provider.value = "ernie-v1"
    assert switcher.key_input.placeholder == "QIANFAN_AK:QIANFAN_SK for ernie-v1, this session only"


def test_blank_key_is_ignored(switcher: ProviderSwitcher) -> None:
    switcher.provider.value = "qwen"
    switcher.key_input.value = "   "
    assert switcher.key_input.value == ""
    assert keys.find_key(get_spec("qwen")) is None


def test_refresh_picks_up_a_key_set_elsewhere(switcher: ProviderSwitcher) -> None:
    assert labels(switcher)["kimi"].startswith("✗")
    keys.set_key("kimi", KEY)
    switcher.refresh()
    assert labels(switcher)["kimi"] == "✓ Moonshot Kimi [kimi]"
    assert switcher.provider.value == "ernie"
    assert default_session().provider == "ernie"


def test_a_key_from_elsewhere_shows_when_the_provider_changes(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                                              switcher: ProviderSwitcher) -> None:
    use_fake("glm", openai_server, key="")
    keys.set_key("glm", KEY)  # what `%llm key glm` does
    default_session().use("glm")
    assert labels(switcher)["glm"] == "✓ Zhipu GLM (BigModel) [glm]"
    assert switcher.provider.value == "glm"
    assert "· configured" in switcher.status.value


def test_public_surface_and_lazy_import() -> None:
    import subprocess
    import sys

    import nbllm.widgets

    assert nbllm.widgets.__all__ == ["ProviderSwitcher"]
    code = "import sys, nbllm.widgets; print('ipywidgets' in sys.modules, nbllm.widgets.ProviderSwitcher.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "ProviderSwitcher"]
