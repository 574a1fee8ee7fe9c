"""The normalized model every adapter speaks: one shape for Slack, Discord and the shell."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from core.text import clean_text


class Platform(StrEnum):
    SLACK = "slack"
    DISCORD = "discord"
    SHELL = "shell"


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    """A Slack team, a Discord guild, or the local shell's single workspace."""

    platform: Platform
    external_id: str

    @property
    def key(self) -> str:
        return f"{self.platform.value}:{self.external_id}"

    @classmethod
    def from_key(cls, key: str) -> WorkspaceRef:
        platform, _, external_id = key.partition(":")
        return cls(Platform(platform), external_id)


@dataclass(frozen=True, slots=True)
class PlatformFacts:
    """What the platform itself says about the author; mapped to bot roles by `core.roles`."""

    is_owner: bool = False  # Slack primary owner / owner, Discord guild owner
    is_admin: bool = False  # Slack admin, Discord Administrator or Manage Guild
    role_ids: tuple[str, ...] = ()  # Discord role ids, for admin-defined role mappings
    is_guest: bool = False  # Slack single/multi-channel guest: never more than guest by default


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking or acting, with the facts the role model needs."""

    user_id: str
    facts: PlatformFacts = field(default_factory=PlatformFacts)
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on a message, as the platform describes it; fetched through core.attachments' `AttachmentFetcher`."""

    name: str
    media_type: str  # the platform's MIME type (may be empty or generic)
    size: int  # bytes, as the platform reports them (0: unknown)
    url: str  # where the platform serves it (the adapter knows how to authenticate)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    workspace: WorkspaceRef
    channel_id: str
    thread_id: str  # the platform's thread key; the message id itself when it starts a thread
    message_id: str
    author: Actor
    text: str  # bot mention already stripped
    is_dm: bool = False
    mentioned: bool = True  # False for follow-ups in a thread the bot is in
    parent_channel_id: str = ""  # a thread that is a channel of its own (Discord): the channel it is in
    attachments: tuple[Attachment, ...] = ()  # files on the message itself

    def __post_init__(self) -> None:
        # Every adapter's text passes here: lone surrogates and control characters cannot reach a store.
        for name in ("channel_id", "thread_id", "message_id", "text"):
            object.__setattr__(self, name, clean_text(getattr(self, name)))

    @property
    def event_key(self) -> str:
        """The dedup key: one reply per platform message, however often it is delivered."""
        return f"{self.workspace.key}:{self.channel_id}:{self.message_id}"


def encode_message(message: IncomingMessage) -> str:
    """The question as JSON, to keep it beyond this process (the outbox, reply controls)."""
    data = asdict(message)
    data["workspace"] = message.workspace.key
    return json.dumps(data, ensure_ascii=False)


def decode_message(raw: str) -> IncomingMessage:
    data = json.loads(raw)
    author = data.pop("author")
    facts = author.pop("facts")
    facts["role_ids"] = tuple(facts.get("role_ids") or ())
    data["attachments"] = tuple(Attachment(**a) for a in data.get("attachments") or ())
    return IncomingMessage(
        workspace=WorkspaceRef.from_key(str(data.pop("workspace"))),
        author=Actor(facts=PlatformFacts(**facts), **author),
        **data,
    )


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class ReplyStatus(StrEnum):
    STREAMING = "streaming"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Source:
    """A retrieved passage shown to the LLM as [index] and listed under the reply."""

    index: int
    title: str
    uri: str
    text: str
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0  # prompt tokens served from the model's prompt cache (billed far lower)
    cache_write_tokens: int = 0  # prompt tokens written to the cache


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    thread_id: str
    role: MessageRole
    text: str
    status: ReplyStatus
    author_id: str = ""
    created_at: float = 0.0
    sources: tuple[Source, ...] = ()
    usage: Usage = Usage()
    platform_message_id: str = ""
    workspace: str = ""  # the workspace key of its thread
