"""A generated corpus of notebooks shaped like real ones, for the converter benchmark.

Proportions follow the scan in CONVERTER.md: most notebooks never mention OpenAI (data
analysis with small outputs); some are large, with plots and long logs saved in them; a few
hundred call OpenAI, split ~45/55 between the old ``openai<1`` style and the ``OpenAI()``
client, with the client built in one cell and used later, helper functions with model
defaults, module constants, ``%pip`` lines and saved outputs. Deterministic for a given seed.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from pathlib import Path
from typing import Any

PLAIN, LARGE, OLD, NEW = "plain", "large", "openai-old", "openai-new"

_ANALYSIS = [
    "import pandas as pd\nimport numpy as np\nimport matplotlib.pyplot as plt\n%matplotlib inline",
    "df = pd.read_csv('data/sales_{n}.csv', parse_dates=['date'])\ndf.head()",
    "df.describe()",
    "monthly = df.groupby(df['date'].dt.to_period('M'))['amount'].sum()\nmonthly.plot(kind='bar', figsize=(10, 4))",
    "def clean(frame):\n    frame = frame.dropna(subset=['amount'])\n    frame['amount'] = frame['amount'].clip(lower=0)\n"
    "    return frame\n\ndf = clean(df)\nlen(df)",
    "from sklearn.linear_model import LinearRegression\nmodel = LinearRegression().fit(X_train, y_train)\n"
    "model.score(X_test, y_test)",
    "!pip install -q seaborn\nimport seaborn as sns\nsns.heatmap(df.corr(numeric_only=True), annot=True)",
    "for col in ['region', 'product']:\n    print(col, df[col].nunique())",
]
_MARKDOWN = ["# Sales analysis {n}", "## Load the data\nThe CSV comes from the monthly export.",
             "## 数据清洗\n去掉缺失值。", "Observations:\n- revenue peaks in Q4\n- region **north** lags"]

_OLD_CELLS = [
    "%pip install openai==0.28.1 python-dotenv",
    "import os\nimport openai\nfrom dotenv import load_dotenv\n\nload_dotenv()\nopenai.api_key = os.getenv('OPENAI_API_KEY')",
    "def get_completion(prompt, model=\"gpt-3.5-turbo\"):\n    messages = [{{\"role\": \"user\", \"content\": prompt}}]\n"
    "    response = openai.ChatCompletion.create(\n        model=model,\n        messages=messages,\n"
    "        temperature=0,\n    )\n    return response.choices[0].message[\"content\"]",
    "text = \"\"\"Notebook {n}: summarise the quarterly report in three bullet points.\"\"\"\n"
    "print(get_completion(text))",
    "response = openai.ChatCompletion.create(model=\"gpt-4\", messages=[{{\"role\": \"user\", \"content\": \"Hi {n}\"}}])\n"
    "response['choices'][0]['message']['content']",
]
_NEW_CELLS = [
    "%pip install -qU openai",
    "import os\nfrom openai import OpenAI\n\nclient = OpenAI(api_key=os.environ[\"OPENAI_API_KEY\"])",
    "GPT_MODEL = \"gpt-4o-mini\"\n\ndef ask(prompt, model=GPT_MODEL, temperature=0.2):\n"
    "    completion = client.chat.completions.create(\n        model=model,\n"
    "        messages=[{{\"role\": \"system\", \"content\": \"You are a helpful analyst.\"}},\n"
    "                  {{\"role\": \"user\", \"content\": prompt}}],\n        temperature=temperature,\n    )\n"
    "    return completion.choices[0].message.content",
    "answer = ask(\"Explain notebook {n}'s churn numbers to a manager.\")\nprint(answer)",
    "stream = client.chat.completions.create(model=\"gpt-4o\", messages=[{{\"role\": \"user\", \"content\": \"Count to 5\"}}],"
    " stream=True)\nfor chunk in stream:\n    print(chunk.choices[0].delta.content or \"\", end=\"\")",
]


def _source(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    return lines


def _stream(text: str) -> dict[str, Any]:
    return {"name": "stdout", "output_type": "stream", "text": _source(text)}


def _result(text: str, count: int) -> dict[str, Any]:
    return {"data": {"text/plain": _source(text)}, "execution_count": count, "metadata": {},
            "output_type": "execute_result"}


def _image(rng: random.Random, kib: int) -> dict[str, Any]:
    png = base64.b64encode(rng.randbytes(kib * 1024)).decode()
    lines = [png[i : i + 76] + "\n" for i in range(0, len(png), 76)]
    return {"data": {"image/png": "".join(lines), "text/plain": ["<Figure size 1000x400 with 1 Axes>"]},
            "metadata": {"needs_background": "light"}, "output_type": "display_data"}


def _cell(kind: str, text: str, rng: random.Random, count: int | None = None,
          outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "id": uuid.UUID(int=rng.getrandbits(128)).hex[:8], "metadata": {}}
    if kind == "code":
        cell |= {"execution_count": count, "outputs": outputs or []}
    cell["source"] = _source(text)
    return cell


def _notebook(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cells": cells, "metadata": {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                          "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                          "pygments_lexer": "ipython3", "version": "3.11.7"}},
        "nbformat": 4, "nbformat_minor": 5}


def _plain(n: int, rng: random.Random, large: bool) -> dict[str, Any]:
    cells = [_cell("markdown", _MARKDOWN[0].format(n=n), rng)]
    for i in range(rng.randint(12, 40) if large else rng.randint(6, 24)):
        if rng.random() < 0.3:
            cells.append(_cell("markdown", rng.choice(_MARKDOWN[1:]), rng))
            continue
        code = rng.choice(_ANALYSIS).format(n=n)
        outputs: list[dict[str, Any]] = []
        if rng.random() < 0.5:
            outputs.append(_result("\n".join(f"{j}  {rng.random():.4f}  {rng.randint(0, 999)}" for j in range(8)), i))
        if large and rng.random() < 0.4:
            outputs.append(_image(rng, rng.randint(30, 120)))
        if large and rng.random() < 0.2:
            outputs.append(_stream("".join(f"epoch {e}: loss={rng.random():.5f}\n" for e in range(rng.randint(200, 800)))))
        cells.append(_cell("code", code, rng, i + 1, outputs))
    return _notebook(cells)


def _openai(n: int, rng: random.Random, old: bool) -> dict[str, Any]:
    cells = [_cell("markdown", f"# Prompting experiments {n}", rng)]
    for i, code in enumerate(_OLD_CELLS if old else _NEW_CELLS):
        outputs = [_stream("".join(f"- point {k} about notebook {n}\n" for k in range(3)))] if i >= 3 and rng.random() < 0.7 else []
        cells.append(_cell("code", code.format(n=n), rng, i + 1, outputs))
        if rng.random() < 0.4:
            cells.append(_cell("code", rng.choice(_ANALYSIS).format(n=n), rng, None))
    return _notebook(cells)


def generate(folder: Path, count: int = 1000, seed: int = 8) -> dict[str, list[Path]]:
    """Write ``count`` notebooks into ``folder``: 60% plain, 10% large, 30% OpenAI (45% old, 55% new)."""
    rng = random.Random(seed)
    n_large, n_openai = count // 10, count * 3 // 10
    n_old = n_openai * 45 // 100
    kinds = [LARGE] * n_large + [OLD] * n_old + [NEW] * (n_openai - n_old)
    kinds += [PLAIN] * (count - len(kinds))
    rng.shuffle(kinds)
    paths: dict[str, list[Path]] = {PLAIN: [], LARGE: [], OLD: [], NEW: []}
    for n, kind in enumerate(kinds):
        nb = _openai(n, rng, kind == OLD) if kind in (OLD, NEW) else _plain(n, rng, kind == LARGE)
        sub = folder / f"project{n % 25:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{kind}-{n:04d}.ipynb"
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        paths[kind].append(path)
    return paths
