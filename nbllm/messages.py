"""Wire-neutral values passed between front ends and providers: messages, requests, deltas.

(Named for what it holds; ``nbllm.chat`` is the function that asks once.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Role = Literal["system", "user", "assistant", "tool"]


class Message(TypedDict):
    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    """One chat call. ``params`` holds sampling options (temperature, max_tokens, top_p, ...)."""

    messages: list[Message]
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None


@dataclass(frozen=True)
class Delta:
    """One piece of a streamed answer; reasoning text is kept apart from the answer."""

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


def as_messages(prompt: str | list[Message], system: str | None = None) -> list[Message]:
    """Accept a bare prompt or a message list, and put the system prompt first."""
    messages: list[Message] = (
        [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    )
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    return messages
