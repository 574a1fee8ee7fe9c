"""`/chatbot summarize [message link]`: which conversation to summarize.

Slash commands carry no thread, so the thread is named by a message link (Slack's permalink,
`…/archives/<channel>/p<digits>[?thread_ts=<ts>]`) or a bare ts in the command's channel; without
one, the channel's recent messages are summarized. The summary itself is the plain "summarize
this thread" question, answered by the core with the thread as context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

COMMAND = "summarize"

_PERMALINK = re.compile(r"/archives/([A-Z0-9]+)/p(\d{7,})")
_TS = re.compile(r"\d{9,}\.\d{6}")


@dataclass(frozen=True, slots=True)
class Target:
    channel: str
    thread_ts: str | None  # None: the channel's recent messages


def parse_target(argument: str, channel: str) -> Target:
    """The conversation `/chatbot summarize <argument>` names; ValueError with a clear message if none."""
    argument = argument.strip().strip("<>").split("|")[0]  # Slack wraps links as <url|label>
    if not argument:
        return Target(channel, None)
    if _TS.fullmatch(argument):
        return Target(channel, argument)
    found = _PERMALINK.search(argument)
    if found is None:
        raise ValueError("give a message link (Copy link on a message) or nothing for this channel")
    digits = found.group(2)
    ts = f"{digits[:-6]}.{digits[-6:]}"
    thread = parse_qs(urlsplit(argument).query).get("thread_ts", [ts])[0]
    return Target(found.group(1), thread if _TS.fullmatch(thread) else ts)


def is_summarize(text: str) -> bool:
    words = text.split(maxsplit=1)
    return bool(words) and words[0].lower() == COMMAND


def argument(text: str) -> str:
    words = text.split(maxsplit=1)
    return words[1] if len(words) > 1 else ""
