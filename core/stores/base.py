"""The store ports. One implementation (SQLite or Convex) serves them all; each port stays small.

Every mutation that changes roles, settings, knowledge or reads the audit takes the acting
`Actor` and re-checks the actor's effective role *inside its own write*, so a bug or a forged
command on the Python side can never grant a power the actor does not hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from core.errors import ChatbotError, Invalid, Refused, Unavailable
from core.messages import (
    Actor,
    MessageRole,
    PlatformFacts,
    ReplyStatus,
    Source,
    StoredMessage,
    Usage,
    WorkspaceRef,
)
from core.roles import INITIAL_DEFAULT_ROLE, Membership, Role
from core.stores.usage import BudgetState, Charge


class StoreError(ChatbotError):
    """A store call failed; `code` is stable across implementations (and Convex's ConvexError).

    `StoreError("invalid", ...)` is built as a StoreInvalid, so bound checks of every backend sort
    into core.errors' Invalid without each call site naming the subclass.
    """

    def __new__(cls, code: str = "error", message: str = "") -> StoreError:
        if cls is StoreError and code == "invalid":
            return super().__new__(StoreInvalid)
        return super().__new__(cls)

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PermissionDenied(StoreError, Refused):
    """The actor's effective role does not allow this; message is safe to show the user."""


class StoreInvalid(StoreError, Invalid):
    """The input breaks a bound or a shape the store enforces."""


class StoreUnavailable(StoreError, Unavailable):
    """The store could not be reached; the caller may retry or degrade."""

    def __new__(cls, message: str = "") -> StoreUnavailable:
        return Exception.__new__(cls)

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


class ChannelMode(StrEnum):
    DEFAULT = "default"  # answer when mentioned
    ALLOW = "allow"  # listed as allowed (when any channel is allowed, only allowed ones are served)
    DENY = "deny"  # never answer here


@dataclass(frozen=True, slots=True)
class ChannelRule:
    channel_id: str
    mode: ChannelMode = ChannelMode.DEFAULT
    answer_without_mention: bool = False


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    system_prompt: str = ""
    default_role: Role = INITIAL_DEFAULT_ROLE
    guests_may_ask: bool = False
    answer_without_mention: bool = False
    model: str = ""  # empty: the configured default
    # questions per user per hour, by role label; a missing role means unlimited
    quotas: dict[str, int] = field(default_factory=lambda: {"guest": 20, "member": 100})
    threads: str = "auto"  # Discord: a thread per question: always, never, or while busy (auto)


SETTING_FIELDS = frozenset(WorkspaceSettings.__dataclass_fields__)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    cursor: str | None  # pass back to get the next page; None at the end


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    actor_id: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """Metadata and pointers only; chunks and vectors live in the retriever."""

    source_uri: str
    title: str
    content_hash: str
    chunk_count: int
    status: str  # "ingesting" | "ready" | "failed"
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Delta:
    message_id: str
    seq: int
    text: str  # the text appended since the previous delta
    workspace: str  # the key of the reply's workspace: a delta lands only in a reply of that workspace


@dataclass(frozen=True, slots=True)
class StaleReply:
    """A reply left streaming, found by the sweep across workspaces: which reply of which workspace
    (its text and everything else are read within that workspace)."""

    reply_id: str
    workspace: str  # the workspace key


class EventClaims(Protocol):
    async def claim_event(self, key: str) -> bool:
        """Atomically claim `key`; True for the first caller only, across processes."""
        ...


class RoleStore(Protocol):
    async def settings(self, ws: WorkspaceRef) -> WorkspaceSettings: ...

    async def update_settings(
        self, ws: WorkspaceRef, actor: Actor, changes: dict[str, object]
    ) -> WorkspaceSettings: ...

    async def membership(self, ws: WorkspaceRef, user_id: str) -> Membership | None: ...

    async def members(self, ws: WorkspaceRef) -> Sequence[Membership]: ...

    async def role_mappings(self, ws: WorkspaceRef) -> dict[str, Role]: ...

    async def set_role(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        user_id: str,
        role: Role | None,
        *,
        target_facts: PlatformFacts | None = None,
    ) -> None:
        """Set (or with None, clear) a user's explicit role; audited; PermissionDenied on refusal.

        The target is judged by its effective rank: its row, `target_facts` (what the platform says
        about it; they can only raise its rank, so only make a change harder), mappings and default.
        A refusal is audited by the store itself, in the transaction that refuses."""
        ...

    async def set_blocked(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        user_id: str,
        blocked: bool,
        *,
        target_facts: PlatformFacts | None = None,
    ) -> None: ...

    async def set_role_mapping(self, ws: WorkspaceRef, actor: Actor, platform_role: str, role: Role | None) -> None: ...

    async def channel_rule(self, ws: WorkspaceRef, channel_id: str) -> ChannelRule | None: ...

    async def channel_rules(self, ws: WorkspaceRef) -> Sequence[ChannelRule]: ...

    async def set_channel_rule(self, ws: WorkspaceRef, actor: Actor, rule: ChannelRule) -> None: ...

    async def consume_quota(self, ws: WorkspaceRef, user_id: str, window: str, limit: int) -> bool:
        """Count one question in `window`; False (and nothing counted) once `limit` is reached."""
        ...


class ThreadStore(Protocol):
    """Every call names the workspace; a thread or message of another workspace is not found."""

    async def find_thread(self, ws: WorkspaceRef, channel_id: str, external_thread: str) -> str | None:
        """The thread's store id if the bot has a conversation there, without creating one."""
        ...

    async def thread_for(self, ws: WorkspaceRef, channel_id: str, external_thread: str) -> str:
        """Find or create the thread; returns its store id."""
        ...

    async def add_message(
        self,
        ws: WorkspaceRef,
        thread_id: str,
        role: MessageRole,
        text: str,
        *,
        author_id: str = "",
        status: ReplyStatus = ReplyStatus.COMPLETE,
        idempotency_key: str = "",
    ) -> str:
        """Append a message; the same idempotency key in the same thread returns the same id."""
        ...

    async def messages(
        self, ws: WorkspaceRef, thread_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredMessage]:
        """Newest first."""
        ...

    async def message(self, ws: WorkspaceRef, message_id: str) -> StoredMessage | None:
        """A message with its text so far (the deltas joined while it is still streaming)."""
        ...

    async def append_deltas(self, deltas: Sequence[Delta]) -> None:
        """Append the deltas of many live replies (of any workspaces, each delta names its own) in one write."""
        ...

    async def complete_message(
        self,
        ws: WorkspaceRef,
        message_id: str,
        *,
        text: str,
        status: ReplyStatus,
        sources: Sequence[Source] = (),
        usage: Usage | None = None,
        platform_message_id: str = "",
        charge: Charge | None = None,
    ) -> Sequence[BudgetState]:
        """Finish a streaming reply (complete, failed or cancelled); a finished one is never reopened.

        With a `charge`, the usage is added to the token ledger and budgets in the same write, which
        returns the budget thresholds it crossed first (core/stores/usage.py)."""
        ...

    async def stale_streaming(self, older_than_s: float) -> Sequence[StaleReply]:
        """Replies still `streaming` with no delta for `older_than_s` (crashed mid-stream), in every
        workspace: the one-process recovery sweep, the only thread call across workspaces. It says only
        which reply of which workspace; the reply is then read and finished within its workspace."""
        ...


class DocumentStore(Protocol):
    async def document(self, ws: WorkspaceRef, source_uri: str) -> DocumentRecord | None: ...

    async def documents(self, ws: WorkspaceRef) -> Sequence[DocumentRecord]: ...

    async def put_document(self, ws: WorkspaceRef, actor: Actor, record: DocumentRecord) -> None:
        """Create or replace the record; needs manage_knowledge."""
        ...

    async def delete_document(self, ws: WorkspaceRef, actor: Actor, source_uri: str) -> bool:
        """True if it existed (and its deletion is audited); False changes and audits nothing."""
        ...


class AuditLog(Protocol):
    async def audit(self, ws: WorkspaceRef, actor_id: str, action: str, detail: str = "") -> None:
        """Record a refusal decided outside a store write; `action` must be core.policy.REFUSED.
        Every other row is written by the function that acts, in the same transaction."""
        ...

    async def audit_entries(self, ws: WorkspaceRef, actor: Actor, *, limit: int = 50) -> Sequence[AuditEntry]:
        """Newest first; needs view_audit."""
        ...


class Store(EventClaims, RoleStore, ThreadStore, DocumentStore, AuditLog, Protocol):
    """Everything the bot remembers; SQLite by default, Convex when CONVEX_URL is set."""

    async def close(self) -> None: ...
