"""Before/after tests for the converter's codemods, one per case of docs/converter.md (synthetic code)."""

from __future__ import annotations

from tests.convert_fixtures.helpers import convert_cells, convert_one, dedent, kinds

URL = "https://qianfan.baidubce.com/v2"
KEY = 'os.environ["QIANFAN_API_KEY"]'


def test_client_gets_base_url_and_key_and_import_os() -> None:
    """Case 6: OpenAI() gets the provider base_url and the key from the provider's env var."""
    out = convert_one("""
        from openai import OpenAI
        client = OpenAI()
    """)
    assert out == dedent(f"""
        import os
        from openai import OpenAI
        client = OpenAI(base_url="{URL}", api_key={KEY})
    """)


def test_module_attribute_and_async_clients() -> None:
    """Case 6/21: openai.OpenAI(...) and AsyncOpenAI(...) with top-level await are converted."""
    out = convert_one("""
        import os, openai
        from openai import AsyncOpenAI
        sync = openai.OpenAI(timeout=30)
        aclient = AsyncOpenAI()
        r = await aclient.chat.completions.create(model="gpt-4o", messages=[])
    """)
    assert out == dedent(f"""
        import os, openai
        from openai import AsyncOpenAI
        sync = openai.OpenAI(timeout=30, base_url="{URL}", api_key={KEY})
        aclient = AsyncOpenAI(base_url="{URL}", api_key={KEY})
        r = await aclient.chat.completions.create(model="ernie-4.5-turbo-128k", messages=[])
    """)


def test_existing_api_key_env_read_is_retargeted() -> None:
    """Case 6/3: api_key=os.getenv("OPENAI_API_KEY") reads the provider variable instead."""
    out = convert_one("""
        import os
        from openai import OpenAI
        client = OpenAI(
            api_key=os.getenv("OPENAI_API_KEY"),
        )
    """)
    assert out == dedent(f"""
        import os
        from openai import OpenAI
        client = OpenAI(
            api_key=os.getenv("QIANFAN_API_KEY"),
            base_url="{URL}",
        )
    """)


def test_key_lookups_everywhere() -> None:
    """Case 3: os.getenv, os.environ.get, os.environ[...], assignments and membership tests."""
    out = convert_one("""
        import os
        import openai
        a = os.getenv("OPENAI_API_KEY")
        b = os.environ.get('OPENAI_API_KEY', "")
        os.environ["OPENAI_API_KEY"] = a
        if "OPENAI_API_KEY" not in os.environ:
            print("no key")
    """)
    assert out == dedent("""
        import os
        import openai
        a = os.getenv("QIANFAN_API_KEY")
        b = os.environ.get('QIANFAN_API_KEY', "")
        os.environ["QIANFAN_API_KEY"] = a
        if "QIANFAN_API_KEY" not in os.environ:
            print("no key")
    """)


def test_getpass_prompt_names_the_provider() -> None:
    """Case 13: getpass prompts ask for the provider's key, in the same quotes."""
    out = convert_one("""
        import os, openai
        from getpass import getpass
        os.environ['OPENAI_API_KEY'] = getpass('Paste your OpenAI API key: ')
    """, to="deepseek")
    assert out == dedent("""
        import os, openai
        from getpass import getpass
        os.environ['DEEPSEEK_API_KEY'] = getpass('Paste your DeepSeek API key: ')
    """)


def test_dotenv_is_reported_with_the_new_variable() -> None:
    """Case 12: load_dotenv keeps working; the report names the variable to put in .env."""
    out, items = convert_cells("""
        from dotenv import load_dotenv
        load_dotenv()
        from openai import OpenAI
    """)
    assert out[0] == dedent("""
        from dotenv import load_dotenv
        load_dotenv()
        from openai import OpenAI
    """)
    [dotenv] = [i for i in items if i.kind == "dotenv"]
    assert "QIANFAN_API_KEY=" in dotenv.message and dotenv.cell == 1 and dotenv.line == 2


def test_model_binding_sites() -> None:
    """Case 2/5/10: literal, module constant, helper default, helper argument and request dict."""
    out = convert_cells(
        """
        from openai import OpenAI
        client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key="x")
        GPT_MODEL = "gpt-4"
        """,
        """
        def get_completion(prompt, model="gpt-3.5-turbo"):
            return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        params = {"model": "gpt-4o-mini", "messages": [], "temperature": 0}
        """,
        """
        get_completion("hi", GPT_MODEL)
        get_completion("hi", model="o1-mini")
        client.chat.completions.create(**params)
        client.chat.completions.create(model="gpt-4o", messages=[], temperature=0.2, max_tokens=5)
        """,
    )[0]
    assert out == [
        dedent("""
            from openai import OpenAI
            client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key="x")
            GPT_MODEL = "ernie-4.5-turbo-128k"
        """),
        dedent("""
            def get_completion(prompt, model="ernie-speed-128k"):
                return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
            params = {"model": "ernie-speed-128k", "messages": [], "temperature": 0}
        """),
        dedent("""
            get_completion("hi", GPT_MODEL)
            get_completion("hi", model="ernie-x1-turbo-32k")
            client.chat.completions.create(**params)
            client.chat.completions.create(model="ernie-4.5-turbo-128k", messages=[], temperature=0.2, max_tokens=5)
        """),
    ]


def test_model_override_wins_and_embeddings_map_to_embedding_tier() -> None:
    """Case 2/18: --model OLD=NEW beats the tier map; embedding models go to the embedding tier."""
    out, items = convert_cells("""
        from openai import OpenAI
        client = OpenAI(base_url="https://api.deepseek.com", api_key="k")
        c = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key="k")
        c.chat.completions.create(model="gpt-4o", messages=[])
        c.embeddings.create(model="text-embedding-3-large", input="x", dimensions=3072)
    """, models={"gpt-4o": "ernie-5.0"})
    assert 'model="ernie-5.0"' in out[0] and 'model="embedding-v1"' in out[0]
    assert "foreign-client" in kinds(items) and "embedding-size" in kinds(items)


def test_missing_tier_falls_back_to_default_model_with_warning() -> None:
    """A tier the target lacks keeps the target's default model and says so."""
    out, items = convert_cells("""
        from openai import OpenAI
        c = OpenAI(base_url="https://api.deepseek.com", api_key="k")
        c.embeddings.create(model="text-embedding-ada-002", input="x")
    """, to="deepseek")
    assert 'model="deepseek-chat"' in out[0]
    assert any(i.kind == "model" and i.warning and "no embedding model" in i.message for i in items)


def test_lookalike_strings_are_not_models() -> None:
    """Case 35: index names, vector-DB configs and labels keep their text."""
    code = """
        from openai import OpenAI
        client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=KEY)
        index_name = "gpt-4-langchain-docs"
        vector_config = {"model": "ada", "metric": "cosine"}
        label = "gpt-4"
        print(f"Using {label}")
    """
    assert convert_one(code) == dedent(code)


def test_tiktoken_keeps_the_openai_name() -> None:
    """Case 24: a mapped constant passed to tiktoken.encoding_for_model is replaced by the old name."""
    out = convert_one("""
        import tiktoken
        from openai import OpenAI
        client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=KEY)
        GPT_MODEL = "gpt-3.5-turbo"
        enc = tiktoken.encoding_for_model(GPT_MODEL)
        client.chat.completions.create(model=GPT_MODEL, messages=[])
        enc2 = tiktoken.encoding_for_model("gpt-4")
    """)
    assert 'GPT_MODEL = "ernie-speed-128k"' in out
    assert 'tiktoken.encoding_for_model("gpt-3.5-turbo")' in out
    assert 'tiktoken.encoding_for_model("gpt-4")' in out


def test_openai_api_key_literal_and_variable() -> None:
    """Case 7/39: a placeholder key reads the env; with a v1 client the key is passed explicitly."""
    out = convert_one("""
        import openai
        from openai import OpenAI
        openai.api_key = "YOUR_API_KEY"
        client = OpenAI()
    """)
    assert out == dedent(f"""
        import os
        import openai
        from openai import OpenAI
        openai.api_key = {KEY}
        client = OpenAI(base_url="{URL}", api_key=openai.api_key)
    """)


def test_hardcoded_key_is_removed_and_reported_masked() -> None:
    """Case 40: an sk-... literal is replaced by an env read and reported with 3 characters only."""
    secret = "sk-" + "A1b2C3d4" * 5
    out, items = convert_cells(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{secret}")
        backup = "{secret}"
    """)
    assert secret not in out[0]
    assert f"api_key={KEY}" in out[0] and f"backup = {KEY}" in out[0]
    warnings = [i for i in items if i.kind == "hardcoded-key"]
    assert len(warnings) == 2
    assert all("sk-***" in w.message and secret[3:10] not in w.message for w in warnings)


def test_imports_and_client_in_other_cells() -> None:
    """Case 4/8: imports in one cell, client in a second, use in a third; names resolve across cells."""
    out, _ = convert_cells(
        "import openai\nimport os\n",
        "client = openai.OpenAI()\n",
        "def ask(q):\n    return client.chat.completions.create(model='gpt-4o-mini', messages=[q])\n",
    )
    assert out == [
        "import openai\nimport os\n",
        f'client = openai.OpenAI(base_url="{URL}", api_key={KEY})\n',
        "def ask(q):\n    return client.chat.completions.create(model='ernie-speed-128k', messages=[q])\n",
    ]


def test_other_libraries_openai_class_is_not_the_sdk() -> None:
    """Case 17: llama_index's OpenAI is resolved by import and left alone (reported)."""
    code = """
        from llama_index.llms.openai import OpenAI
        llm = OpenAI(model="gpt-4", temperature=0)
    """
    out, items = convert_cells(code)
    assert out[0] == dedent(code)
    assert kinds(items) == ["llama-index"]


def test_langchain_new_package() -> None:
    """Case 11: langchain_openai classes get base_url/api_key/model; embeddings stop sending token ids."""
    out = convert_one("""
        from langchain_openai import ChatOpenAI, OpenAIEmbeddings
        llm = ChatOpenAI(temperature=0)
        emb = OpenAIEmbeddings()
    """)
    assert out == dedent(f"""
        import os
        from langchain_openai import ChatOpenAI, OpenAIEmbeddings
        llm = ChatOpenAI(temperature=0, base_url="{URL}", api_key={KEY}, model="ernie-speed-128k")
        emb = OpenAIEmbeddings(base_url="{URL}", api_key={KEY}, check_embedding_ctx_length=False, model="embedding-v1")
    """)


def test_langchain_old_package_uses_old_argument_names() -> None:
    """Case 11: langchain.chat_models.ChatOpenAI takes openai_api_base/openai_api_key; model_name mapped."""
    out = convert_one("""
        import os
        from langchain.chat_models import ChatOpenAI
        chat = ChatOpenAI(model_name="gpt-4", openai_api_key=os.environ["OPENAI_API_KEY"])
    """)
    assert out == dedent(f"""
        import os
        from langchain.chat_models import ChatOpenAI
        chat = ChatOpenAI(model_name="ernie-4.5-turbo-128k", openai_api_key=os.environ["QIANFAN_API_KEY"], openai_api_base="{URL}")
    """)


def test_v0_chat_migration_with_helper_and_results() -> None:
    """Case 15/9/5: ChatCompletion.create in a helper -> client call; dict access -> attributes."""
    out, _ = convert_cells(
        """
        import openai
        import os
        openai.api_key = os.getenv("OPENAI_API_KEY")
        """,
        """
        def get_completion(prompt, model="gpt-3.5-turbo"):
            messages = [{"role": "user", "content": prompt}]
            response = openai.ChatCompletion.create(model=model, messages=messages, temperature=0)
            return response.choices[0].message["content"]
        """,
        """
        resp = openai.ChatCompletion.create(model="gpt-4", messages=[])
        print(resp['choices'][0]['message']['content'], resp["usage"]["total_tokens"])
        """,
    )
    assert out == [
        dedent(f"""
            import openai
            import os
            client = openai.OpenAI(base_url="{URL}", api_key=os.getenv("QIANFAN_API_KEY"))
        """),
        dedent("""
            def get_completion(prompt, model="ernie-speed-128k"):
                messages = [{"role": "user", "content": prompt}]
                response = client.chat.completions.create(model=model, messages=messages, temperature=0)
                return response.choices[0].message.content
        """),
        dedent("""
            resp = client.chat.completions.create(model="ernie-4.5-turbo-128k", messages=[])
            print(resp.choices[0].message.content, resp.usage.total_tokens)
        """),
    ]


def test_v0_embedding_and_completion_migration() -> None:
    """Case 14/23: Embedding.create(engine=) -> embeddings.create(model=); Completion warned."""
    out, items = convert_cells("""
        import openai
        e = openai.Embedding.create(input=["a"], engine="text-embedding-ada-002")["data"][0]["embedding"]
        t = openai.Completion.create(model="text-davinci-003", prompt="Say hi")["choices"][0]["text"]
    """)
    assert out[0] == dedent(f"""
        import openai
        client = openai.OpenAI(base_url="{URL}", api_key={KEY})
        e = client.embeddings.create(input=["a"], model="embedding-v1").data[0].embedding
        t = client.completions.create(model="ernie-speed-128k", prompt="Say hi").choices[0].text
    """).replace("import openai\n", "import os\nimport openai\n")
    assert {"completions", "model"} <= set(kinds(items))


def test_v0_streaming_and_errors() -> None:
    """Case 28/38: stream chunks' .get('content') -> attribute; openai.error names renamed."""
    out = convert_one("""
        import openai
        from openai.error import InvalidRequestError
        try:
            for chunk in openai.ChatCompletion.create(model="gpt-4", messages=[], stream=True):
                print(chunk["choices"][0]["delta"].get("content", ""), end="")
        except openai.error.RateLimitError:
            pass
        except InvalidRequestError:
            pass
    """)
    assert 'print((chunk.choices[0].delta.content or ""), end="")' in out
    assert "except openai.RateLimitError:" in out
    assert "from openai import BadRequestError as InvalidRequestError" in out


def test_v0_module_config_moves_into_the_client() -> None:
    """Case 15/20: api_base/api_type/api_version lines go, comments stay; Azure flagged."""
    out, items = convert_cells("""
        import openai
        # Azure settings
        openai.api_type = "azure"
        openai.api_base = "https://me.openai.azure.com/"
        openai.api_version = "2023-05-15"
        # the key
        openai.api_key = "placeholder"
        r = openai.ChatCompletion.create(deployment_id="gpt-35-turbo", messages=[])
    """)
    assert out[0] == dedent(f"""
        import os
        import openai
        # Azure settings
        # the key
        client = openai.OpenAI(base_url="{URL}", api_key={KEY})
        r = client.chat.completions.create(model="ernie-speed-128k", messages=[])
    """)
    assert "azure" in kinds(items)


def test_v0_async_gets_an_async_client() -> None:
    """Case 15/21: acreate -> an AsyncOpenAI client created next to the sync one."""
    out = convert_one("""
        import openai
        r = await openai.ChatCompletion.acreate(model="gpt-4o", messages=[])
    """)
    assert "aclient = openai.AsyncOpenAI(" in out
    assert 'r = await aclient.chat.completions.create(model="ernie-4.5-turbo-128k", messages=[])' in out


def test_keep_v0_retargets_without_migrating() -> None:
    """--keep-v0: code stays v0, api_base and key point at the provider, models still mapped."""
    out = convert_one("""
        import openai
        openai.api_key = "placeholder"
        r = openai.ChatCompletion.create(model="gpt-4", messages=[])
        print(r["choices"][0]["message"]["content"])
    """, keep_v0=True)
    assert out == dedent(f"""
        import os
        import openai
        openai.api_key = {KEY}
        openai.api_base = "{URL}"
        r = openai.ChatCompletion.create(model="ernie-4.5-turbo-128k", messages=[])
        print(r["choices"][0]["message"]["content"])
    """)


def test_module_level_v1_client() -> None:
    """Case 27: openai.chat.completions.create gets openai.base_url/api_key set after the import."""
    out = convert_one("""
        import openai
        r = openai.chat.completions.create(model="gpt-4o", messages=[])
    """)
    assert out == dedent(f"""
        import os
        import openai
        openai.base_url = "{URL}/"
        openai.api_key = {KEY}
        r = openai.chat.completions.create(model="ernie-4.5-turbo-128k", messages=[])
    """)


def test_azure_client_becomes_plain_client() -> None:
    """Case 20: AzureOpenAI(...) -> OpenAI(base_url, api_key); the AD token provider is flagged."""
    out, items = convert_cells("""
        from openai import AzureOpenAI
        client = AzureOpenAI(azure_endpoint="https://x.openai.azure.com", api_version="2024-02-01",
                             azure_ad_token_provider=provider)
    """)
    assert out[0] == dedent(f"""
        import os
        from openai import OpenAI
        client = OpenAI(base_url="{URL}", api_key={KEY})
    """)
    assert "azure-ad" in kinds(items)


def test_azure_import_next_to_plain_client_import() -> None:
    """An Azure import beside OpenAI collapses into the plain import; the Azure key stays behind."""
    out = convert_one("""
        from openai import AzureOpenAI, OpenAI
        a = AzureOpenAI(azure_endpoint="https://x.openai.azure.com", api_key=K)
    """)
    assert out.splitlines() == ["import os", "from openai import OpenAI",
                                f'a = OpenAI(api_key={KEY}, base_url="https://qianfan.baidubce.com/v2")']


def test_keyless_local_targets() -> None:
    """vLLM's key is optional: the converted code reads it with a harmless default."""
    out = convert_one("""
        from openai import OpenAI
        client = OpenAI()
    """, to="vllm")
    assert 'OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=os.environ.get("VLLM_API_KEY", "EMPTY"))' in out


def test_foreign_client_and_second_run_are_untouched() -> None:
    """Case 34: a client already on another endpoint is left alone; converting twice is a no-op."""
    code = """
        from openai import OpenAI
        client = OpenAI(base_url="http://localhost:8000/v1", api_key="EMPTY")
        client.chat.completions.create(model="gpt-3.5-turbo", messages=[])
    """
    out, items = convert_cells(code)
    assert out[0] == dedent(code) and "foreign-client" in kinds(items)
    first = convert_one("import openai\nopenai.api_key = 'x'\nr = openai.ChatCompletion.create(model='gpt-4', messages=[])\n")
    assert convert_one(first) == first


def test_feature_warnings_leave_code_alone() -> None:
    """Case 19/22/26/32/33: responses, images, files, response_format, functions=, embeddings_utils."""
    code = """
        from openai import OpenAI
        from openai.embeddings_utils import cosine_similarity
        client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=K)
        client.responses.create(model="m", input="hi")
        client.images.generate(prompt="cat")
        client.files.create(file=f, purpose="fine-tune")
        client.chat.completions.create(model="m", messages=[], response_format={"type": "json_object"},
                                       functions=[], function_call="auto", tools=[])
    """
    out, items = convert_cells(code)
    assert out[0] == dedent(code)
    assert kinds(items) == ["embeddings-utils", "functions", "no-equivalent", "responses-api", "structured-output"]
    assert sum(i.kind == "no-equivalent" for i in items) == 2


def test_magics_survive_next_to_rewritten_code() -> None:
    """Case 16/31/3: %pip pins updated when migrating, %env retargeted, other magics byte for byte."""
    out, _ = convert_cells(dedent("""
        %pip install -q openai==0.28 tiktoken
        !pip install -qU \\
            langchain
        %env OPENAI_API_KEY=placeholder
        import openai
        files = !ls
        openai.ChatCompletion.create?
        r = openai.ChatCompletion.create(model="gpt-4", messages=[])
    """))
    assert out[0] == dedent(f"""
        %pip install -q "openai>=1" tiktoken
        !pip install -qU \\
            langchain
        %env OPENAI_API_KEY=placeholder
        import openai
        files = !ls
        openai.ChatCompletion.create?
        client = openai.OpenAI(base_url="{URL}", api_key={KEY})
        r = client.chat.completions.create(model="ernie-4.5-turbo-128k", messages=[])
    """).replace("import openai\n", "import os\nimport openai\n", 1)


def test_capture_cell_magic_body_is_converted() -> None:
    """Case 16: %%capture/%%time bodies are Python; the magic line stays first."""
    out = convert_one("%%time\nfrom openai import OpenAI\nclient = OpenAI()\n")
    assert out == f'%%time\nimport os\nfrom openai import OpenAI\nclient = OpenAI(base_url="{URL}", api_key={KEY})\n'


def test_code_without_openai_use_is_unchanged() -> None:
    """Case 1: code that mentions no SDK is returned as is, even with magics."""
    code = "%matplotlib inline\nimport pandas as pd\ndf = pd.DataFrame({'model': ['gpt-4']})\n"
    out, items = convert_cells(code)
    assert out == [code] and items == []
