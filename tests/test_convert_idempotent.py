"""Converting a converted notebook changes nothing: convert(convert(x)) == convert(x).

Checked over every example notebook, and over notebooks drawn from a pool of cells that real
notebooks hold (v0 calls, results read as dicts, Azure settings, key reads, model tables,
magics, calls left on OpenAI), in any order and combination.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbllm.convert import convert_paths
from tests.convert_fixtures.helpers import convert_cells, dedent

ROOT = Path(__file__).parents[1]

POOL = [dedent(c) for c in (
    "import openai\nimport os\nopenai.api_key = os.getenv('OPENAI_API_KEY')\n",
    "from openai import ChatCompletion, Completion\n",
    "import openai\nopenai.api_type = 'azure'\nopenai.api_base = os.getenv('AZURE_OPENAI_ENDPOINT')\n"
    "openai.api_version = '2023-05-15'\nopenai.api_key = os.getenv('AZURE_OPENAI_KEY')\n",
    "def ask(prompt, model='gpt-3.5-turbo'):\n    r = openai.ChatCompletion.create(model=model, messages=[])\n"
    "    return r\n",
    "answer = ask('hi')\nprint(answer['choices'][0]['message']['content'], answer['usage']['total_tokens'])\n",
    "for chunk in openai.ChatCompletion.create(model='gpt-4', messages=[], stream=True):\n"
    "    print(chunk['choices'][0]['delta'].get('content', ''), end='')\n",
    "try:\n    ask('x')\nexcept (openai.error.RateLimitError, openai.InvalidRequestError) as e:\n    print(e)\n",
    "r = openai.Moderation.create(input='text')\nimg = openai.Image.create(prompt='cat', n=1)\n",
    "e = openai.Embedding.create(engine='text-embedding-ada-002', input=['a'])['data'][0]['embedding']\n",
    "from openai import OpenAI, AzureOpenAI\nclient = OpenAI()\n",
    "az = AzureOpenAI(api_key=os.getenv('AZURE_OPENAI_API_KEY'), api_version='2024-02-01',\n"
    "                 azure_endpoint=os.getenv('AZURE_OPENAI_ENDPOINT'))\n"
    "az.chat.completions.create(model=os.getenv('DEPLOYMENT'), messages=[])\n",
    "os.environ['OPENAI_API_KEY'] = 'YOUR_API_KEY'\n",
    "os.environ['OPENAI_API_KEY'] = 'sk-0123456789abcdefghijklmnop'\n",
    "%env OPENAI_API_KEY=placeholder\n%pip install -q openai==0.28\n",
    "%time client = OpenAI()\n%timeit -n 1 client.chat.completions.create(model='gpt-4o', messages=[])\n",
    "PRICES = {'gpt-4': 0.03, 'gpt-3.5-turbo': 0.002}\nfor m in ['gpt-4', 'gpt-4o-mini']:\n"
    "    client.chat.completions.create(model=m, messages=[])\n",
    "import tiktoken\nenc = tiktoken.encoding_for_model('gpt-4')\n",
    "resp = openai.chat.completions.create(model='gpt-4o', messages=[])\n",
    "import requests\nrequests.post('https://example.org', headers={'api-key': os.getenv('OPENAI_API_KEY')})\n",
    "x = [1, 2, 3]\nprint(sum(x))\n",
)]


def _twice(cells: list[str], to: str) -> tuple[list[str], list[str]]:
    once, _ = convert_cells(*cells, to=to)
    again, _ = convert_cells(*once, to=to)
    return once, again


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=7), st.sampled_from(["ernie", "qwen", "vllm"]))
def test_a_second_conversion_changes_nothing(cells: list[str], to: str) -> None:
    once, again = _twice(cells, to)
    assert again == once


@pytest.mark.parametrize("to", ["ernie", "deepseek"])
def test_example_notebooks_convert_once(tmp_path: Path, to: str) -> None:
    work = tmp_path / "nbs"
    shutil.copytree(ROOT / "notebooks", work)
    convert_paths([work], to)
    second = convert_paths([work], to, dry_run=True)
    assert [r.path for r in second.results if r.status == "changed"] == []
