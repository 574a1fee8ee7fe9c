"""The production store: the Convex functions in convex/functions, called over the deployment's HTTP API.

Every call carries the service secret; the functions check it and the actor's role themselves.
HTTP mutations are not deduplicated by Convex, so every mutation that may be retried is made
idempotent: by its arguments (claimant tokens, idempotency keys, sequence numbers) or by a request id
that Convex records with the first result (see `_mutation` and serviceMutation).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from core.messages import Actor, MessageRole, PlatformFacts, ReplyStatus, Source, StoredMessage, Usage, WorkspaceRef
from core.policy import REFUSED
from core.roles import Membership, Role
from core.stores.base import (
    SETTING_FIELDS,
    AuditEntry,
    ChannelMode,
    ChannelRule,
    Delta,
    DocumentRecord,
    Page,
    PermissionDenied,
    StaleReply,
    StoreError,
    StoreUnavailable,
    WorkspaceSettings,
)
from core.stores.convex_version import source_hash
from core.stores.usage import BudgetState, Charge

log = structlog.get_logger(__name__)

PERMISSION_CODES = {"forbidden", "self_change", "escalation", "peer_or_higher", "last_owner", "blocked", "no_effect"}
# Python settings field -> the Convex document's field.
_SETTING_NAMES = {
    "system_prompt": "systemPrompt",
    "default_role": "defaultRole",
    "guests_may_ask": "guestsMayAsk",
    "answer_without_mention": "answerWithoutMention",
    "model": "model",
    "quotas": "quotas",
    "threads": "threads",
}


class _Retryable(Exception):
    """A transport failure or a 5xx: worth another try (mutations are idempotent by their arguments)."""


def _actor(actor: Actor) -> dict[str, Any]:
    """An id only: the functions take no platform facts from a caller, only those Convex verified."""
    return {"userId": actor.user_id}


def _settings(data: dict[str, Any]) -> WorkspaceSettings:
    values = {py: data[cx] for py, cx in _SETTING_NAMES.items() if cx in data}
    values["default_role"] = Role(int(values.get("default_role", Role.MEMBER)))
    values["quotas"] = {k: int(v) for k, v in dict(values.get("quotas", {})).items()}
    return WorkspaceSettings(**values)


def _message(data: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=data["id"],
        thread_id=data["thread"],
        role=MessageRole(data["role"]),
        text=data["text"],
        status=ReplyStatus(data["status"]),
        author_id=data["authorId"],
        created_at=float(data["createdAt"]),
        sources=tuple(
            Source(int(s["index"]), s["title"], s["uri"], s["text"], float(s["score"])) for s in data["sources"]
        ),
        usage=Usage(
            int(data["usage"]["inputTokens"]),
            int(data["usage"]["outputTokens"]),
            int(data["usage"].get("cacheReadTokens", 0)),
            int(data["usage"].get("cacheWriteTokens", 0)),
        ),
        platform_message_id=data["platformMessageId"],
        workspace=data.get("workspace", ""),
    )


def _budget_state(data: dict[str, Any]) -> BudgetState:
    scope: Literal["month", "day"] = "day" if data["scope"] == "day" else "month"
    return BudgetState(
        scope, int(data["used"]), int(data["limit"]), float(data["resetsAt"]), float(data["level"]), str(data["user"])
    )


def _membership(data: dict[str, Any] | None) -> Membership | None:
    if data is None:
        return None
    role = data.get("role")
    return Membership(data["user"], Role(int(role)) if role is not None else None, bool(data["blocked"]))


def _document(data: dict[str, Any]) -> DocumentRecord:
    return DocumentRecord(
        data["sourceUri"],
        data["title"],
        data["contentHash"],
        int(data["chunkCount"]),
        data["status"],
        data["updatedAt"],
    )


class ConvexStore:
    def __init__(self, url: str, secret: str, *, timeout: float = 10.0, attempts: int = 4) -> None:
        self.url = url.rstrip("/")
        self._secret = secret
        self._not_verifying: dict[str, float] = {}  # workspace -> until when Convex said it holds no token for it
        self._attempts = attempts
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            headers={"content-type": "application/json"},
        )

    async def close(self) -> None:
        await self._client.aclose()

    # -- the HTTP API ---------------------------------------------------------------------------
    async def _call(self, kind: str, path: str, args: dict[str, Any]) -> Any:
        if isinstance(args.get("actor"), dict) and "workspace" in args:
            await self._verify_facts(args)
        payload = {"path": path, "args": {"secret": self._secret, **args}, "format": "json"}
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.2, max=3.0),
                retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
                reraise=True,
            ):
                with attempt:
                    return await self._post(kind, path, payload)
        except _Retryable as exc:
            raise StoreUnavailable(f"Convex at {self.url} is unavailable ({exc})") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _verify_facts(self, args: dict[str, Any]) -> None:
        """Before a call judged by roles: Convex asks the platform about the actor and the target itself
        (facts:refresh) and trusts only what it verified; without a verified fact the stored role counts."""
        workspace = str(args["workspace"])
        if time.monotonic() < self._not_verifying.get(workspace, 0.0):
            return
        users = [args["actor"]["userId"], *([args["user"]] if isinstance(args.get("user"), str) else [])]
        try:
            verified = await self._call("action", "facts:refresh", {"workspace": workspace, "users": users})
        except StoreError as exc:  # the call itself still runs, judging by stored roles
            log.warning("convex.facts_refresh_failed", code=exc.code)
            return
        if verified is None:  # Convex holds no token for this workspace: ask again in a minute
            self._not_verifying[workspace] = time.monotonic() + 60.0

    async def _post(self, kind: str, path: str, payload: dict[str, Any]) -> Any:
        try:
            response = await self._client.post(f"/api/{kind}", json=payload)
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}") from exc
        if response.status_code >= 500 and "errorData" not in response.text:
            raise _Retryable(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise _Retryable(f"HTTP {response.status_code} without a JSON body") from None
        if body.get("status") == "success":
            return body.get("value")
        data = body.get("errorData") or {}
        if isinstance(data, dict) and data.get("code") == "replayed":
            return data.get("result")  # a retry of a call that landed: its first answer
        code = data.get("code", "error") if isinstance(data, dict) else "error"
        message = data.get("message", body.get("errorMessage", "")) if isinstance(data, dict) else str(data)
        log.info("convex.refused", path=path, code=code)
        if code == "unauthorized":
            raise StoreError(code, "Convex refused the service secret (check CONVEX_SERVICE_SECRET)")
        if code in PERMISSION_CODES:
            raise PermissionDenied(code, message)
        raise StoreError(code if isinstance(code, str) else "error", message or body.get("errorMessage", "error"))

    async def _query(self, path: str, **args: Any) -> Any:
        return await self._call("query", path, args)

    async def _mutation(self, path: str, *, once: bool = True, **args: Any) -> Any:
        """Run a mutation. With `once`, the call carries a request id that its retries share, so
        Convex applies it once and answers a retry of a landed call with the first result; calls
        already idempotent by their arguments (claimants, idempotency keys, sequence numbers) skip
        the extra record."""
        if once:
            args["requestId"] = uuid.uuid4().hex
        result = await self._call("mutation", path, args)
        # An acting mutation's refusal commits its audit row, so it comes back as a value, not an error.
        if isinstance(result, dict) and set(result) == {"refused"}:
            refused = result["refused"]
            raise PermissionDenied(str(refused.get("code", "forbidden")), str(refused.get("message", "")))
        return result

    async def diagnose(self) -> str:
        """`chatbot doctor`: does the deployment run this checkout's functions (version:version)?"""
        deployed = str((await self._query("version:version"))["sourceHash"])
        local = source_hash()
        if local is None:
            return f"deployed functions {deployed[:12]} (no checkout here to compare with)"
        if deployed != local:
            raise StoreError(
                "stale",
                f"the deployed functions ({deployed[:12]}) are not this checkout's ({local[:12]});"
                " deploy them with `npx convex deploy`",
            )
        return f"deployed functions match this checkout ({local[:12]})"

    # -- EventClaims ----------------------------------------------------------------------------
    async def claim_event(self, key: str) -> bool:
        # A fresh claimant per call: a retried request that did land still reads as our own win.
        return bool(await self._mutation("claims:claim", once=False, key=key, claimant=uuid.uuid4().hex))

    # -- RoleStore ------------------------------------------------------------------------------
    async def settings(self, ws: WorkspaceRef) -> WorkspaceSettings:
        return _settings(await self._query("workspaces:settings", workspace=ws.key))

    async def update_settings(self, ws: WorkspaceRef, actor: Actor, changes: dict[str, object]) -> WorkspaceSettings:
        unknown = set(changes) - SETTING_FIELDS
        if unknown:
            raise StoreError("invalid", f"unknown settings: {', '.join(sorted(unknown))}")
        patch: dict[str, Any] = {}
        for key, value in changes.items():
            expected = type(getattr(WorkspaceSettings(), key))
            if key == "default_role":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise StoreError("invalid", "default_role must be a role")
                value = int(value)
            elif not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise StoreError("invalid", f"{key} must be {expected.__name__}")
            patch[_SETTING_NAMES[key]] = value
        data = await self._mutation("workspaces:updateSettings", workspace=ws.key, actor=_actor(actor), changes=patch)
        return _settings(data)

    async def membership(self, ws: WorkspaceRef, user_id: str) -> Membership | None:
        return _membership(await self._query("workspaces:membership", workspace=ws.key, user=user_id))

    async def members(self, ws: WorkspaceRef) -> Sequence[Membership]:
        rows = await self._query("workspaces:members", workspace=ws.key)
        return sorted((m for m in map(_membership, rows) if m is not None), key=lambda m: m.user_id)

    async def role_mappings(self, ws: WorkspaceRef) -> dict[str, Role]:
        data = await self._query("workspaces:roleMappings", workspace=ws.key)
        return {key: Role(int(value)) for key, value in data.items()}

    async def set_role(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        user_id: str,
        role: Role | None,
        *,
        target_facts: PlatformFacts | None = None,
    ) -> None:
        del target_facts  # Convex asks the platform about the target itself (facts:refresh)
        await self._mutation(
            "workspaces:setRole",
            workspace=ws.key,
            actor=_actor(actor),
            user=user_id,
            role=int(role) if role is not None else None,
        )

    async def set_blocked(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        user_id: str,
        blocked: bool,
        *,
        target_facts: PlatformFacts | None = None,
    ) -> None:
        del target_facts  # Convex asks the platform about the target itself (facts:refresh)
        await self._mutation(
            "workspaces:setBlocked",
            workspace=ws.key,
            actor=_actor(actor),
            user=user_id,
            blocked=blocked,
        )

    async def set_role_mapping(self, ws: WorkspaceRef, actor: Actor, platform_role: str, role: Role | None) -> None:
        await self._mutation(
            "workspaces:setRoleMapping",
            workspace=ws.key,
            actor=_actor(actor),
            platformRole=platform_role,
            role=int(role) if role is not None else None,
        )

    async def channel_rule(self, ws: WorkspaceRef, channel_id: str) -> ChannelRule | None:
        data = await self._query("workspaces:channelRule", workspace=ws.key, channel=channel_id)
        return ChannelRule(data["channel"], ChannelMode(data["mode"]), bool(data["withoutMention"])) if data else None

    async def channel_rules(self, ws: WorkspaceRef) -> Sequence[ChannelRule]:
        rows = await self._query("workspaces:channelRules", workspace=ws.key)
        rules = [ChannelRule(r["channel"], ChannelMode(r["mode"]), bool(r["withoutMention"])) for r in rows]
        return sorted(rules, key=lambda r: r.channel_id)

    async def set_channel_rule(self, ws: WorkspaceRef, actor: Actor, rule: ChannelRule) -> None:
        await self._mutation(
            "workspaces:setChannelRule",
            workspace=ws.key,
            actor=_actor(actor),
            channel=rule.channel_id,
            mode=ChannelMode(rule.mode).value,
            withoutMention=rule.answer_without_mention,
        )

    async def consume_quota(self, ws: WorkspaceRef, user_id: str, window: str, limit: int) -> bool:
        return bool(
            await self._mutation(
                "workspaces:consumeQuota",
                workspace=ws.key,
                user=user_id,
                window=window,
                limit=limit,
            )
        )

    # -- ThreadStore ----------------------------------------------------------------------------
    async def find_thread(self, ws: WorkspaceRef, channel_id: str, external_thread: str) -> str | None:
        result = await self._query(
            "threads:findThread", workspace=ws.key, channel=channel_id, externalThread=external_thread
        )
        return str(result) if result is not None else None

    async def thread_for(self, ws: WorkspaceRef, channel_id: str, external_thread: str) -> str:
        result = await self._mutation(
            "threads:threadFor", once=False, workspace=ws.key, channel=channel_id, externalThread=external_thread
        )
        return str(result)

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
        # Without a caller's key, one of our own: the retries of this one call must not duplicate it.
        key = idempotency_key or f"auto:{uuid.uuid4().hex}"
        result = await self._mutation(
            "threads:addMessage",
            once=False,
            workspace=ws.key,
            thread=thread_id,
            role=MessageRole(role).value,
            text=text,
            authorId=author_id,
            status=ReplyStatus(status).value,
            idempotencyKey=key,
        )
        return str(result)

    async def messages(
        self, ws: WorkspaceRef, thread_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredMessage]:
        if not 1 <= limit <= 200:
            raise StoreError("invalid", "limit must be between 1 and 200")
        data = await self._query(
            "threads:messages", workspace=ws.key, thread=thread_id, paginationOpts={"numItems": limit, "cursor": cursor}
        )
        items = [_message(m) for m in data["page"]]
        return Page(items, None if data["isDone"] else data["continueCursor"])

    async def message(self, ws: WorkspaceRef, message_id: str) -> StoredMessage | None:
        data = await self._query("threads:message", workspace=ws.key, id=message_id)
        return _message(data) if data else None

    async def append_deltas(self, deltas: Sequence[Delta]) -> None:
        if deltas:
            await self._mutation(
                "threads:appendDeltas",
                once=False,
                deltas=[
                    {"workspace": d.workspace, "message": d.message_id, "seq": d.seq, "text": d.text} for d in deltas
                ],
            )

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
        usage = usage or Usage()
        extra: dict[str, Any] = {}
        if charge is not None:
            extra["charge"] = {"user": charge.user_id, "role": charge.role, "model": charge.model}
        crossed = await self._mutation(
            "threads:completeMessage",
            workspace=ws.key,
            id=message_id,
            text=text,
            status=ReplyStatus(status).value,
            sources=[asdict(s) for s in sources],
            usage={
                "inputTokens": usage.input_tokens,
                "outputTokens": usage.output_tokens,
                "cacheReadTokens": usage.cache_read_tokens,
                "cacheWriteTokens": usage.cache_write_tokens,
            },
            platformMessageId=platform_message_id,
            **extra,
        )
        return [_budget_state(b) for b in crossed or ()]

    async def stale_streaming(self, older_than_s: float) -> Sequence[StaleReply]:
        rows = await self._query("threads:staleStreaming", olderThanS=older_than_s)
        return [StaleReply(str(r["id"]), str(r["workspace"])) for r in rows]

    # -- DocumentStore --------------------------------------------------------------------------
    async def document(self, ws: WorkspaceRef, source_uri: str) -> DocumentRecord | None:
        data = await self._query("documents:document", workspace=ws.key, sourceUri=source_uri)
        return _document(data) if data else None

    async def documents(self, ws: WorkspaceRef) -> Sequence[DocumentRecord]:
        rows = await self._query("documents:documents", workspace=ws.key)
        return sorted((_document(r) for r in rows), key=lambda d: d.source_uri)

    async def put_document(self, ws: WorkspaceRef, actor: Actor, record: DocumentRecord) -> None:
        await self._mutation(
            "documents:putDocument",
            workspace=ws.key,
            actor=_actor(actor),
            sourceUri=record.source_uri,
            title=record.title,
            contentHash=record.content_hash,
            chunkCount=record.chunk_count,
            status=record.status,
        )

    async def delete_document(self, ws: WorkspaceRef, actor: Actor, source_uri: str) -> bool:
        deleted = await self._mutation(
            "documents:deleteDocument", workspace=ws.key, actor=_actor(actor), sourceUri=source_uri
        )
        return bool(deleted)

    # -- AuditLog -------------------------------------------------------------------------------
    async def audit(self, ws: WorkspaceRef, actor_id: str, action: str, detail: str = "") -> None:
        if action != REFUSED:
            raise StoreError("invalid", f"only {REFUSED!r} rows are recorded directly; changes audit themselves")
        await self._mutation("audit:refusal", workspace=ws.key, actor=actor_id, detail=detail)

    async def audit_entries(self, ws: WorkspaceRef, actor: Actor, *, limit: int = 50) -> Sequence[AuditEntry]:
        rows = await self._query("audit:entries", workspace=ws.key, actor=_actor(actor), limit=limit)
        return [AuditEntry(float(r["at"]), r["actor"], r["action"], r["detail"]) for r in rows]
