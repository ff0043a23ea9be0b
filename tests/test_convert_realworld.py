"""Failure classes found by running real public notebooks through the converter, each reduced to
a few lines of our own (benchmarks/corpus_harness.py finds them; docs/converter.md lists them)."""

from __future__ import annotations

import json
from pathlib import Path

from nbllm.convert import convert_paths
from tests.convert_fixtures.helpers import convert_cells, convert_one, dedent, kinds, notebook_json, write_notebook

URL = "https://qianfan.baidubce.com/v2"
KEY = 'os.environ["QIANFAN_API_KEY"]'


def test_module_level_client_gets_a_base_url_ending_in_a_slash() -> None:
    """The SDK joins ``openai.base_url`` and the route without a slash (``.../v2chat/completions``)."""
    out = convert_one("""
        import openai
        r = openai.chat.completions.create(model="gpt-4o", messages=[])
    """)
    assert f'openai.base_url = "{URL}/"' in out


def test_result_access_follows_returns_loops_and_sub_objects() -> None:
    cells, _ = convert_cells("""
        import openai
        openai.api_key = "sk-placeholderplaceholder00"
        def ask(prompt, model="gpt-3.5-turbo"):
            resp = openai.ChatCompletion.create(model=model, messages=[{"role": "user", "content": prompt}])
            return resp
    """, """
        answer = ask("hi")
        print(answer['choices'][0]['message']['content'], answer['usage']['total_tokens'])
    """, """
        def stream(prompt):
            return openai.ChatCompletion.create(model="gpt-4", messages=[], stream=True)
        for chunk in stream("x"):
            delta = chunk['choices'][0]['delta']
            print(delta.get('content', ''), end="")
    """)
    assert "answer.choices[0].message.content, answer.usage.total_tokens" in cells[1]
    assert "delta = chunk.choices[0].delta" in cells[2]
    assert "(delta.content or '')" in cells[2]


def test_v0_exception_names_map_to_v1_everywhere() -> None:
    out = convert_one("""
        import openai
        from tenacity import retry, retry_if_exception_type
        @retry(retry=retry_if_exception_type((openai.error.RateLimitError, openai.APIError)))
        def f():
            try:
                return openai.ChatCompletion.create(model="gpt-4", messages=[])
            except openai.InvalidRequestError:
                return None
            except (openai.error.Timeout, openai.error.ServiceUnavailableError):
                return None
    """)
    assert "retry_if_exception_type((openai.RateLimitError, openai.APIError))" in out
    assert "except openai.BadRequestError:" in out
    assert "except (openai.APITimeoutError, openai.InternalServerError):" in out


def test_v0_calls_without_an_equivalent_move_to_v1_on_openai_and_are_marked() -> None:
    out, items = convert_cells("""
        import openai
        r = openai.ChatCompletion.create(model="gpt-4", messages=[])
        flagged = openai.Moderation.create(input="text")["results"][0]["flagged"]
        img = openai.Image.create(prompt="a cat", n=1, size="256x256")
    """)
    assert 'openai.OpenAI().moderations.create(input="text")' in out[0]
    assert 'openai.OpenAI().images.generate(prompt="a cat", n=1, size="256x256")' in out[0]
    assert out[0].count("# nbllm: still calls OpenAI") == 2
    assert "openai.Moderation" not in out[0] and "openai.Image" not in out[0]
    assert "openai-only" in kinds(items)


def test_azure_client_is_converted_whole() -> None:
    out = convert_one("""
        import os
        from openai import AzureOpenAI
        client = AzureOpenAI(api_key=os.getenv("AZURE_OPENAI_API_KEY"), api_version="2024-02-01",
                             azure_endpoint=os.getenv("AZURE_OPENAI_ENDPOINT"))
        deployment = os.getenv("AZURE_OPENAI_DEPLOYMENT")
        r = client.chat.completions.create(model=deployment, messages=[])
    """)
    assert "AZURE" not in out.replace('os.getenv("AZURE_OPENAI_DEPLOYMENT")', "")
    assert f"api_key={KEY}" in out
    assert 'model="ernie-4.5-turbo-128k"' in out


def test_azure_module_settings_are_converted_whole() -> None:
    out = convert_one("""
        import os, openai
        openai.api_type = "azure"
        openai.api_base = os.getenv("AZURE_OPENAI_ENDPOINT")
        openai.api_version = "2023-05-15"
        openai.api_key = os.getenv("AZURE_OPENAI_KEY")
        r = openai.ChatCompletion.create(engine="my-gpt35-deployment", messages=[])
    """)
    assert "AZURE" not in out
    assert "my-gpt35-deployment" not in out
    assert f"api_key={KEY}" in out


def test_placeholder_written_to_the_environment_never_overwrites_the_target_key() -> None:
    out = convert_one("""
        import os
        os.environ["OPENAI_API_KEY"] = "YOUR_API_KEY"
        from openai import OpenAI
        client = OpenAI()
    """)
    assert 'os.environ["OPENAI_API_KEY"] = "YOUR_API_KEY"' in out
    assert 'os.environ["QIANFAN_API_KEY"] =' not in out


def test_env_magic_with_a_placeholder_is_left_alone() -> None:
    out = convert_one("""
        %env OPENAI_API_KEY=your-key-here
        from openai import OpenAI
        client = OpenAI()
    """)
    assert "%env OPENAI_API_KEY=your-key-here" in out


def test_models_in_lists_loops_dataclasses_and_kwargs_wrappers_are_mapped() -> None:
    out = convert_one("""
        from dataclasses import dataclass
        from openai import OpenAI
        import tiktoken
        client = OpenAI()
        @dataclass
        class Config:
            model: str = "gpt-4o"
        def call(**kwargs):
            return client.chat.completions.create(**kwargs)
        for m in ["gpt-3.5-turbo", "gpt-4"]:
            client.chat.completions.create(model=m, messages=[])
        call(model=Config().model, messages=[])
        options = {"model": "gpt-4o-mini"}
        call(messages=[], **options)
        enc = tiktoken.encoding_for_model("gpt-4")
    """)
    for name in ('"gpt-3.5-turbo"', '"gpt-4o"', '"gpt-4o-mini"', '["gpt-3.5-turbo", "gpt-4"]'):
        assert name not in out
    assert 'tiktoken.encoding_for_model("gpt-4")' in out


def test_key_reads_for_other_services_stay() -> None:
    """A vector database's OpenAI embedding function or a requests call keeps OPENAI_API_KEY."""
    out = convert_one("""
        import os, requests
        from openai import OpenAI
        from chromadb.utils import embedding_functions
        ef = embedding_functions.OpenAIEmbeddingFunction(api_key=os.environ["OPENAI_API_KEY"])
        headers = {"api-key": os.getenv("OPENAI_API_KEY")}
        requests.post("https://example.org/embed", headers=headers)
        client = OpenAI(api_key=os.getenv("OPENAI_API_KEY"))
    """)
    assert 'OpenAIEmbeddingFunction(api_key=os.environ["OPENAI_API_KEY"])' in out
    assert '{"api-key": os.getenv("OPENAI_API_KEY")}' in out
    assert 'OpenAI(api_key=os.getenv("QIANFAN_API_KEY")' in out


def test_line_magics_holding_openai_code_are_converted() -> None:
    out = convert_one("""
        from openai import OpenAI
        %time client = OpenAI()
        %timeit -n 1 client.chat.completions.create(model="gpt-4o", messages=[])
    """)
    assert f'%time client = OpenAI(base_url="{URL}", api_key={KEY})' in out
    assert '%timeit -n 1 client.chat.completions.create(model="ernie-4.5-turbo-128k", messages=[])' in out


def test_cell_nested_deeper_than_python_allows_is_skipped_and_the_rest_converts(tmp_path: Path) -> None:
    deep = "x = " + "(" * 400 + "1" + ")" * 400 + "\n"
    deep_block = "".join("    " * n + "if x:\n" for n in range(120)) + "    " * 120 + "pass\n"
    path = tmp_path / "deep.ipynb"
    write_notebook(path, notebook_json([deep, deep_block, "from openai import OpenAI\nclient = OpenAI()\n"]))
    result = convert_paths([path], "ernie").results[0]
    cells = [c["source"] for c in json.loads(path.read_text("utf-8"))["cells"]]
    assert cells[:2] == [deep, deep_block]
    assert "base_url" in cells[2]
    assert {i.cell for i in result.items if i.kind == "skipped-cell"} == {1, 2}


def test_cell_with_a_tokenizer_error_is_skipped() -> None:
    cells, items = convert_cells("s = 'unterminated\n", "from openai import OpenAI\nclient = OpenAI()\n")
    assert cells[0] == "s = 'unterminated\n"
    assert "base_url" in cells[1]


def test_no_sdk_use_means_no_key_rewrite() -> None:
    code = dedent("""
        import os, requests
        key = os.getenv("OPENAI_API_KEY")
        requests.post("https://example.openai.azure.com/x", headers={"api-key": key})
    """)
    assert convert_one(code) == code


def test_client_key_read_stays_retargeted_when_results_go_to_other_libraries() -> None:
    out = convert_one("""
        import json, os
        from openai import OpenAI
        client = OpenAI(api_key=os.getenv("OPENAI_API_KEY"))
        response = client.chat.completions.create(model="gpt-4o", messages=[])
        print(json.dumps(response.model_dump()))
    """)
    assert 'OpenAI(api_key=os.getenv("QIANFAN_API_KEY")' in out


def test_key_variable_holding_a_literal_is_not_sent_to_the_target() -> None:
    out, items = convert_cells("""
        OPENAI_API_KEY = "YOUR API KEY"
    """, """
        import openai
        client = openai.OpenAI(api_key=OPENAI_API_KEY)
    """)
    assert f"openai.OpenAI(api_key={KEY}" in out[1]
    assert "hardcoded-key" in kinds(items)


def test_other_packages_openai_modules_are_not_sdk_use() -> None:
    """``agent_framework.openai`` and the like are not retargeted, so their key reads stay."""
    code = dedent("""
        import os
        from agent_framework.openai import OpenAIChatClient
        chat = OpenAIChatClient(api_key=os.getenv("OPENAI_API_KEY"))
    """)
    assert convert_one(code) == code
    assert "QIANFAN_API_KEY" in convert_one("import os, openai\nk = os.getenv('OPENAI_API_KEY')\n")
