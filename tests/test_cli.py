"""The `nbllm` command, run in-process and as a real subprocess against the loopback server."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from nbllm.cli import main
from nbllm.tables import text_table as table
from tests.conftest import UseFake
from tests.fakes.openai_server import Answer, ErrorReply, FakeOpenAIServer, qianfan_error

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_key(key: str, *outputs: str) -> None:
    for output in outputs:
        assert key not in output


def test_chat_streams_answer_from_ernie(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    key = use_fake("ernie", openai_server)
    code, out, err = run_cli(capsys, "chat", "-p", "ernie", "hi")
    assert (code, out, err) == (0, "echo: hi\n", "")
    body = openai_server.chat_requests[0].json
    assert body["model"] == "ernie-4.0-turbo-8k" and body["stream"] is True
    assert openai_server.chat_requests[0].headers["authorization"] == f"Bearer {key}"


def test_chat_without_key_names_the_variable(openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NBLLM_ERNIE_BASE_URL", openai_server.base_url)
    code, out, err = run_cli(capsys, "chat", "-p", "ernie", "hi")
    assert code == 1 and out == ""
    assert "QIANFAN_API_KEY" in err and "Traceback" not in err
    assert err.count("\n") == 1  # one paragraph
    assert openai_server.requests == []


def test_chat_retries_429_then_succeeds(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    key = use_fake("ernie", openai_server)
    openai_server.enqueue(qianfan_error(429, "rpm_rate_limit_exceeded", "Too many requests", "rate_limit_exceeded",
                                        headers={"Retry-After": "0"}))
    code, out, err = run_cli(capsys, "chat", "-p", "ernie", "again")
    assert (code, out, err) == (0, "echo: again\n", "")
    assert len(openai_server.chat_requests) == 2
    assert_no_key(key, out, err)


def test_chat_401_gives_auth_message_without_key(capsys: pytest.CaptureFixture[str], use_fake: UseFake) -> None:
    with FakeOpenAIServer(api_key="the-right-key") as server:  # echoes the wrong key back
        key = use_fake("ernie", server, key="wrong-key-Zq81kd02")
        code, out, err = run_cli(capsys, "chat", "-p", "ernie", "hi")
    assert code == 1 and out == ""
    assert "answered HTTP 401" in err and "Check the key (QIANFAN_API_KEY" in err
    assert "Incorrect API key provided: wro***" in err
    assert_no_key(key, out, err)


def test_chat_cut_keeps_partial_and_fails(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    key = use_fake("ernie", openai_server)
    openai_server.enqueue(Answer(["first ", "second ", "third"], cut_after=2))
    code, out, err = run_cli(capsys, "chat", "-p", "ernie", "hi")
    assert code == 1
    assert out == "first second \n"
    assert "after 13 characters" in err and "partial answer is kept" in err
    assert_no_key(key, out, err)


def test_chat_options_reach_the_request(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("ernie", openai_server)
    code, _, _ = run_cli(capsys, "chat", "-p", "ernie:ernie-speed-128k", "-s", "Be brief.", "-t", "0.3",
                         "--max-tokens", "50", "hello")
    assert code == 0
    body = openai_server.chat_requests[0].json
    assert body["model"] == "ernie-speed-128k"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    assert (body["temperature"], body["max_tokens"]) == (0.3, 50)
    run_cli(capsys, "chat", "-p", "ernie:ernie-speed-128k", "-m", "ernie-lite-8k", "x")
    assert openai_server.chat_requests[1].json["model"] == "ernie-lite-8k"


def test_chat_reads_prompt_from_stdin(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("ernie", openai_server)
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    assert run_cli(capsys, "chat", "-p", "ernie")[:2] == (0, "echo: from stdin\n")


def test_chat_empty_prompt_is_usage_error(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    code, out, err = run_cli(capsys, "chat")
    assert code == 2 and "no prompt" in err and out == ""


def test_chat_stats_and_reasoning_go_to_stderr(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("deepseek", openai_server)
    openai_server.enqueue(Answer(["42"], reasoning=["thinking..."]))
    code, out, err = run_cli(capsys, "chat", "-p", "deepseek", "--show-reasoning", "--stats", "q")
    assert (code, out) == (0, "42\n")
    assert err.startswith("thinking...[deepseek:deepseek-chat] first token ")
    assert err.rstrip().endswith(", 2 tokens")


def test_default_provider_from_env(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("kimi", openai_server)
    monkeypatch.setenv("NBLLM_DEFAULT", "kimi:moonshot-v1-32k")
    assert run_cli(capsys, "chat", "yo")[:2] == (0, "echo: yo\n")
    assert openai_server.chat_requests[0].json["model"] == "moonshot-v1-32k"


def test_unknown_provider_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "chat", "-p", "deepsek", "hi")
    assert code == 1 and "Did you mean 'deepseek'?" in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "bogus")[0] == 2
    assert run_cli(capsys)[0] == 2
    assert run_cli(capsys, "chat", "-t", "hot", "x")[0] == 2
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("nbllm 0.")


def test_providers_table(openai_server: FakeOpenAIServer, use_fake: UseFake,
                         capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = use_fake("qwen", openai_server)
    Path(os.environ["NBLLM_CONFIG"]).write_text(
        '[providers.gateway]\nbase_url = "http://10.1.2.3:8000/v1"\nkey_env = "GATEWAY_KEY"\nmodels = ["qwen2.5-72b"]\n')
    code, out, err = run_cli(capsys, "providers")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "BASE", "URL", "DEFAULT", "MODEL"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "missing QIANFAN_API_KEY" in rows["ernie"]
    assert "ready" in rows["qwen"] and openai_server.base_url in rows["qwen"]
    assert "no key needed" in rows["ollama"]
    assert "missing GATEWAY_KEY" in rows["gateway"] and "qwen2.5-72b" in rows["gateway"]
    starts = {line.index("https://qianfan") for line in lines if "https://qianfan" in line}
    assert starts == {lines[0].index("BASE URL")}  # aligned
    assert_no_key(key, out)


def test_models_live_and_builtin(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    use_fake("hunyuan", openai_server)
    openai_server.models = ["hy3-preview", "kimi-k2.6"]
    assert run_cli(capsys, "models", "hunyuan") == (0, "hy3-preview\nkimi-k2.6\n", "")
    use_fake("ernie", openai_server)
    code, out, _ = run_cli(capsys, "models", "ernie")
    assert code == 0 and out.splitlines()[0] == "ernie-4.0-turbo-8k"
    assert len(openai_server.requests) == 1  # ernie's list is the catalogue


def test_models_falls_back_with_note(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    key = use_fake("deepseek", openai_server)
    openai_server.enqueue(ErrorReply(500, {"error": {"message": "boom", "type": "server_error"}}))
    code, out, err = run_cli(capsys, "models", "deepseek")
    assert (code, out) == (0, "deepseek-chat\ndeepseek-reasoner\n")
    assert '"boom"' in err and "built-in list" in err
    assert_no_key(key, out, err)


def test_check_reports_each_provider(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    keys = [use_fake("ernie", openai_server), use_fake("glm", openai_server)]
    openai_server.enqueue(Answer(["pong"]), qianfan_error(401, "1001", "token invalid"))
    code, out, err = run_cli(capsys, "check")
    assert code == 1
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert set(rows) == {"ernie", "glm"}
    assert rows["ernie"][2] == "ok" and rows["ernie"][-1] == "pong"
    assert rows["glm"][2] == "AuthError"
    assert openai_server.chat_requests[0].json["max_tokens"] == 16
    assert_no_key(keys[0], out, err)
    assert_no_key(keys[1], out, err)


def test_check_named_and_nothing_configured(openai_server: FakeOpenAIServer, use_fake: UseFake,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "check")
    assert code == 1 and "nothing to check" in err
    use_fake("vllm", openai_server)
    code, out, _ = run_cli(capsys, "check", "vllm")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["vllm", "Qwen/Qwen2.5-7B-Instruct", "ok"]


def test_convert_is_dispatched_lazily(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = types.ModuleType("nbllm.convert.cli")
    seen: list[object] = []

    def configure_parser(parser: object) -> None:
        parser.add_argument("paths", nargs="+")  # type: ignore[attr-defined]

    def run(args: object) -> int:
        seen.append(args.paths)  # type: ignore[attr-defined]
        return 3

    fake.configure_parser, fake.run = configure_parser, run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nbllm.convert.cli", fake)
    assert main(["convert", "a.ipynb", "b.ipynb"]) == 3
    assert seen == [["a.ipynb", "b.ipynb"]]


def test_table_aligns_wide_characters() -> None:
    text = table(["A", "B"], [["你好", "x"], ["ab", "y"]])
    assert text.splitlines() == ["A     B", "你好  x", "ab    y"]


# -- real processes -------------------------------------------------------------------------
def _env(server: FakeOpenAIServer, key: str) -> dict[str, str]:
    return {**os.environ, "NBLLM_ERNIE_BASE_URL": server.base_url, "QIANFAN_API_KEY": key,
            "PYTHONPATH": str(REPO)}


def test_console_script_and_module(openai_server: FakeOpenAIServer) -> None:
    key = "bce-v3/ALTAK-procTEST99/abcdef0123456789"
    script = Path(sys.executable).with_name("nbllm")
    for cmd in ([str(script)], [sys.executable, "-m", "nbllm"]):
        done = subprocess.run([*cmd, "chat", "-p", "ernie", "你好"], env=_env(openai_server, key),
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, "echo: 你好\n", "")


def test_ctrl_c_exits_130_without_traceback(openai_server: FakeOpenAIServer) -> None:
    key = "bce-v3/ALTAK-sigintTEST/abcdef0123456789"
    openai_server.enqueue(Answer(["start "] + ["more "] * 50, chunk_delay=0.2))
    proc = subprocess.Popen([sys.executable, "-m", "nbllm", "chat", "-p", "ernie", "go"],
                            env=_env(openai_server, key), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.read(6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert first == b"start "
    assert proc.returncode == 130
    assert b"Traceback" not in err and b"interrupted" in err
    assert key.encode() not in first + out + err
