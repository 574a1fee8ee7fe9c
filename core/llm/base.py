"""The LLM port: a prompt in, a stream of text out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.messages import Source, Usage


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    system: str
    turns: Sequence[Turn]  # history then the question, alternating, ending with the user
    sources: Sequence[Source] = ()
    model: str = ""  # empty: the LLM's configured default
    max_tokens: int = 1024


class LLMError(Exception):
    """The answer could not be (fully) produced; the message is safe to show the user."""


class LLM(Protocol):
    name: str  # shown in logs and `chatbot doctor`

    def stream(self, prompt: Prompt) -> AsyncIterator[str | Usage]:
        """Yield text deltas, then one Usage. Raises LLMError on any failure, mid-stream included."""
        ...
