"""The LLM port: a prompt in, a stream of text out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.attachments import FileBlock
from core.errors import ChatbotError, Invalid, Refused, Unavailable
from core.messages import Source, Usage


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str
    files: tuple[FileBlock, ...] = ()  # documents and images, on the question's turn


@dataclass(frozen=True, slots=True)
class Prompt:
    system: str
    turns: Sequence[Turn]  # history then the question, alternating, ending with the user
    sources: Sequence[Source] = ()
    model: str = ""  # empty: the LLM's configured default
    max_tokens: int = 1024
    # `system` in parts that stay the same from one question to the next (the instructions; the
    # retrieved context within a thread), so an LLM with prompt caching can cache each prefix.
    system_parts: tuple[str, ...] = ()


class LLMError(ChatbotError):
    """The answer could not be (fully) produced; the message is safe to show the user (no operator
    hints in it: the cause for operators goes to the log where the error is raised)."""


class LLMUnavailable(LLMError, Unavailable):
    """Overloaded, rate limited, down, unreachable, or silent for too long: a later try may work."""


class LLMTimeout(LLMUnavailable):
    """No answer (or no further token) within the set time."""


class LLMRefused(LLMError, Refused):
    """The model service refused this deployment (key, permission, model name): operators must act."""


class LLMInvalid(LLMError, Invalid):
    """The model service rejected the request itself (too long, malformed)."""


class LLM(Protocol):
    name: str  # shown in logs and `chatbot doctor`

    def stream(self, prompt: Prompt) -> AsyncIterator[str | Usage]:
        """Yield text deltas, then one Usage. Raises LLMError on any failure, mid-stream included."""
        ...
