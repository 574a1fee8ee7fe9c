"""RoleService: who may ask where, and who may administer. The store re-checks every change itself."""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.messages import Actor, IncomingMessage, WorkspaceRef
from core.roles import LOWEST_ROLE, Permission, Role, allows, effective_role
from core.stores.base import ChannelMode, PermissionDenied, RoleStore, WorkspaceSettings


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    role: Role | None
    code: str = "ok"  # stable: ok, blocked, not_permitted, channel_denied, quota, not_addressed
    reason: str = ""  # polite, shown to the author; empty for silent decisions

    @property
    def silent(self) -> bool:
        """Refusals nobody asked for (a follow-up the bot was not addressed in) get no reply."""
        return self.code == "not_addressed"


class RoleService:
    def __init__(self, store: RoleStore) -> None:
        self.store = store

    async def role_of(self, ws: WorkspaceRef, actor: Actor, settings: WorkspaceSettings | None = None) -> Role | None:
        settings = settings or await self.store.settings(ws)
        membership = await self.store.membership(ws, actor.user_id)
        mappings = await self.store.role_mappings(ws) if actor.facts.role_ids else {}
        return effective_role(membership, actor.facts, mappings, settings.default_role)

    async def require(self, ws: WorkspaceRef, actor: Actor, permission: Permission) -> Role:
        role = await self.role_of(ws, actor)
        if not allows(role, permission):
            raise PermissionDenied("blocked" if role is None else "forbidden", _needs(permission, role))
        assert role is not None
        return role

    async def authorize_question(
        self, message: IncomingMessage, settings: WorkspaceSettings, *, in_known_thread: bool
    ) -> Decision:
        ws, actor = message.workspace, message.author
        role = await self.role_of(ws, actor, settings)
        if not message.is_dm:
            rule = await self.store.channel_rule(ws, message.channel_id)
            addressed = (
                message.mentioned
                or in_known_thread
                or settings.answer_without_mention
                or (rule is not None and rule.answer_without_mention)
            )
            if not addressed:
                return Decision(False, role, "not_addressed")
            if rule is not None and rule.mode is ChannelMode.DENY:
                return Decision(False, role, "channel_denied", "I'm not answering questions in this channel.")
            if rule is None or rule.mode is not ChannelMode.ALLOW:
                allowed_channels = [r for r in await self.store.channel_rules(ws) if r.mode is ChannelMode.ALLOW]
                if allowed_channels:
                    names = ", ".join(f"<#{r.channel_id}>" for r in allowed_channels[:5])
                    return Decision(False, role, "channel_denied", f"I only answer questions in {names}.")
        if role is None:
            return Decision(False, None, "blocked", "Sorry, you can't ask me questions in this workspace.")
        permission = Permission.ASK_IN_DMS if message.is_dm else Permission.ASK_IN_CHANNELS
        if not allows(role, permission, guests_may_ask=settings.guests_may_ask):
            where = "direct messages" if message.is_dm else "this workspace's channels"
            return Decision(
                False,
                role,
                "not_permitted",
                f"Sorry, as {role.with_article} you can't ask me questions in {where}. An admin can change your role.",
            )
        return Decision(True, role)

    async def take_quota(self, message: IncomingMessage, settings: WorkspaceSettings, role: Role) -> Decision:
        """One question of the author's hourly quota, taken last: a question refused for any other
        reason (its role, the channel, the token budget) must not use up a slot."""
        limit = settings.quotas.get(role.label)
        if limit is None:
            return Decision(True, role)
        window = time.strftime("%Y%m%d%H", time.gmtime())
        if await self.store.consume_quota(message.workspace, message.author.user_id, window, limit):
            return Decision(True, role)
        return Decision(
            False, role, "quota", f"You've reached your limit of {limit} questions an hour. Please try again later."
        )


def _needs(permission: Permission, role: Role | None) -> str:
    if role is None:
        return "You are blocked in this workspace."
    return f"This needs the {LOWEST_ROLE[permission].label} role; you are {role.with_article}."
