"""A helper module next to a notebook, as course repositories ship them."""

import os

from openai import OpenAI

client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])


def ask(prompt: str, model: str = "gpt-4o") -> str:
    response = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    return response.choices[0].message.content
