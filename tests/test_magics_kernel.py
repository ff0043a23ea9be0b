"""%%llm in a real Jupyter kernel (nbclient): streamed display updates, and "Run all" stops on failure."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.fakes.openai_server import Answer, FakeOpenAIServer

pytestmark = pytest.mark.timeout(180)


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


def _run(nb: nbformat.NotebookNode) -> None:
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=False).execute()


def test_a_streamed_answer_ends_as_one_display_plus_footer_in_the_saved_notebook(
    openai_server: FakeOpenAIServer, use_fake  # noqa: ANN001
) -> None:
    key = use_fake("ernie", openai_server)
    openai_server.enqueue(Answer([f"part{i} " for i in range(300)], chunk_delay=0.002))
    nb = _notebook("%load_ext nbllm", "%%llm -o answer\nHello from a kernel", "print(len(answer.split()))")
    _run(nb)
    outputs = nb.cells[1].outputs
    assert [o.output_type for o in outputs] == ["display_data", "display_data"]
    assert outputs[0].data["text/markdown"] == "".join(f"part{i} " for i in range(300))
    assert outputs[1].data["text/plain"].startswith("ernie · ernie-4.0-turbo-8k · first token ")
    assert nb.cells[2].outputs[0].text == "300\n"
    assert key not in json.dumps(nb)


def test_a_failing_cell_stops_run_all_with_one_paragraph(openai_server: FakeOpenAIServer, use_fake) -> None:  # noqa: ANN001
    key = use_fake("ernie", openai_server)
    nb = _notebook("%load_ext nbllm", "%%llm qwen\nq", "print('never runs')")
    with pytest.raises(CellExecutionError):
        _run(nb)
    error = nb.cells[1].outputs[-1]
    assert error.output_type == "error" and error.ename == "MissingKeyError"
    assert len(error.traceback) == 1 and "DASHSCOPE_API_KEY" in error.traceback[0]
    assert nb.cells[2].outputs == []
    assert key not in json.dumps(nb)
