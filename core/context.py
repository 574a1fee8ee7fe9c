"""The thread-context port: what was said in the platform's thread before the bot was asked.

Adapters implement `ThreadHistory` for one question (Slack reads the thread with
conversations.replies, Discord the reply chain or the thread's recent messages); the pipeline
puts the messages into the prompt, newest kept first, and falls back to its own stored history
when the platform refuses (`HistoryUnavailable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.messages import Attachment

__all__ = ["Attachment", "HistoryUnavailable", "ThreadHistory", "ThreadMessage"]


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """One message of the platform thread, normalized."""

    message_id: str
    author: str  # display name (resolved and cached by the adapter)
    at: float  # seconds since the epoch
    text: str
    from_bot: bool = False  # the bot's own earlier reply: an assistant turn
    permalink: str = ""
    attachments: tuple[Attachment, ...] = ()


class HistoryUnavailable(Exception):
    """The platform refused or could not serve the thread (no scope, rate limited, down)."""


class ThreadHistory(Protocol):
    async def read(self) -> Sequence[ThreadMessage]:
        """The thread's messages before the question, oldest first; raises HistoryUnavailable."""
        ...
