"""nbllm.context: prompt references, literal braces, size caps, redaction (units, no IPython)."""

from __future__ import annotations

import string

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbllm.context import (
    MAX_VALUE_CHARS,
    NotebookState,
    build_prompt,
    describe,
    expand,
    recent_cells,
    render_value,
)
from nbllm.errors import ContextError
from nbllm.secrets import register_secret


def state(**ns: object) -> NotebookState:
    return NotebookState(
        namespace=ns,
        inputs=["", "x = 1", "df.head()", "1/0", "%%llm\nq"],
        outputs={2: "a frame"},
        texts={3: "ZeroDivisionError: division by zero"},
        last_error="Traceback...\nZeroDivisionError: division by zero",
        current=4,
    )


def test_variables_in_and_out_and_err_are_filled_in() -> None:
    s = state(x=42, name="Ada")
    assert expand("{name} is {x}", s) == "Ada is 42"
    assert expand("code: {In[1]}", s) == "code: x = 1"
    assert expand("prev: {In[-2]}", s) == "prev: df.head()"
    assert expand("out: {Out[2]}", s) == "out: a frame"
    assert expand("why? {Err}", s) == "why? Traceback...\nZeroDivisionError: division by zero"


@pytest.mark.parametrize("prompt", [
    '{"a": 1}', '{"a": {"b": [1, 2]}}', "{ x }", "{x.y}", "{1}", "{}", "}{", "{", "}", "{In[x]}",
    "def f(): return {'k': v}", "a {{ b", "c }} d", "{{\n}}",
])
def test_json_code_and_odd_braces_are_left_alone(prompt: str) -> None:
    assert expand(prompt, state()) == prompt


def test_doubled_braces_are_literal() -> None:
    assert expand("{{x}} and {{In[3]}} and {{ }}", state(x=1)) == "{x} and {In[3]} and { }"
    assert expand('{{"a": 1}}', state()) == '{"a": 1}'


@pytest.mark.parametrize(("prompt", "words"), [
    ("{missing}", "no variable named 'missing'"),
    ("{In[9]}", "no input cell 9"),
    ("{In[0]}", "no input cell 0"),
    ("{Out[1]}", "cell 1 has no output"),
])
def test_references_to_missing_things_are_clear_errors(prompt: str, words: str) -> None:
    with pytest.raises(ContextError, match=words):
        expand(prompt, state())


def test_err_without_an_error() -> None:
    with pytest.raises(ContextError, match="no error has happened"):
        expand("{Err}", NotebookState())


def test_long_strings_are_cut_with_a_marker() -> None:
    text = render_value("x" * (MAX_VALUE_CHARS + 500))
    assert text == "x" * MAX_VALUE_CHARS + "\n… [cut: 500 more characters]"


def test_dataframes_are_a_truncated_table() -> None:
    df = pd.DataFrame({"a": range(1000), "b": [f"r{i}" for i in range(1000)]})
    text = render_value(df)
    assert text.splitlines()[0].split() == ["a", "b"]
    assert "r0" in text and "r999" in text and "r500" not in text and ".." in text
    assert len(text.splitlines()) <= 25
    assert describe(df) == "DataFrame, 1000 rows × 2 columns"


def test_big_containers_are_summarised_cheaply() -> None:
    text = render_value(list(range(1_000_000)))
    assert text.startswith("[0, 1, 2") and text.endswith("...]") and len(text) < 1000


def test_a_broken_repr_does_not_break_the_prompt() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert render_value(Broken()) == "<Broken object>"


def test_known_secrets_are_redacted_from_values() -> None:
    register_secret("tok-0123456789abcdef")
    assert render_value({"key": "tok-0123456789abcdef"}) == "{'key': 'tok***'}"


def test_with_and_cells_blocks_come_before_the_request() -> None:
    s = state(df=pd.DataFrame({"a": [1, 2]}), n=3)
    prompt = build_prompt("explain {n}", s, with_names=["df"], cells=2)
    assert prompt.startswith("Recent cells of my notebook:\n\nIn [2]:\n```python\ndf.head()\n```\nOutput:\n```\na frame")
    assert "In [3]:\n```python\n1/0\n```\nOutput:\n```\nZeroDivisionError: division by zero\n```" in prompt
    assert "In [4]" not in prompt  # the running cell itself is left out
    assert "Variables from my notebook:\n\nVariable `df` (DataFrame, 2 rows × 1 columns):\n```\n   a\n0  1\n1  2\n```" in prompt
    assert prompt.endswith("My request:\n\nexplain 3")


def test_cells_never_reach_before_the_first_cell() -> None:
    assert recent_cells(state(), 50).count("In [") == 3


def test_with_a_missing_name_is_an_error() -> None:
    with pytest.raises(ContextError, match="'nope'"):
        build_prompt("q", state(), with_names=["nope"])


_alphabet = st.sampled_from(list("{}[]:\"' \nxyIOnutErr0123-") + ["In", "Out", "Err", "{{", "}}"])


@given(st.lists(_alphabet, max_size=40).map("".join))
def test_any_brace_soup_expands_or_raises_a_context_error(prompt: str) -> None:
    s = state(x=1, y="why", Err="shadowed")
    try:
        result = expand(prompt, s)
    except ContextError:
        return
    assert isinstance(result, str)


@given(st.text(alphabet=string.printable.replace("{", "")))
def test_text_without_opening_braces_is_unchanged(prompt: str) -> None:
    assert expand(prompt, state()) == prompt
