"""Admin commands: one grammar for Slack's /chatbot, Discord's app commands and `chatbot roles`.

Changes are judged by the store inside its own write (which also audits a refusal, in the same
transaction); reads and ingestion are checked here first, and their refusals audited here. So every
refusal is audited exactly once, the same way from every front end, and `run` always answers with
text meant for the user: never a raw exception.

The target of a role change is judged by its effective rank, platform facts included: the front end
passes a `UserFacts` that looks the target up on the platform.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import structlog

from core.access import RoleService
from core.config import DEFAULT_PRICES, ModelPrice
from core.messages import Actor, PlatformFacts, WorkspaceRef
from core.policy import REFUSED, SETTING_CHOICES, choice_error
from core.roles import Permission, Role
from core.stores.base import (
    SETTING_FIELDS,
    ChannelMode,
    ChannelRule,
    PermissionDenied,
    Store,
    StoreError,
    StoreUnavailable,
)
from core.stores.feedback import FeedbackStore
from core.stores.personas import ChannelPersonas
from core.stores.usage import MONTH, UsageLedger, periods, tokens_of
from core.usage_report import budgets_report, usage_report

MAX_USAGE_DAYS = 366

log = structlog.get_logger(__name__)

_USER = re.compile(r"^<@!?([A-Za-z0-9_.-]+)(?:\|[^>]*)?>$")
_CHANNEL = re.compile(r"^<#([A-Za-z0-9_.-]+)(?:\|[^>]*)?>$")
_ROLE_REF = re.compile(r"^<@&([0-9]+)>$")
_TOKENS = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([km]?)$")

HELP = """\
**Commands**
• `role set <user> <guest|member|curator|admin|owner>` · `role remove <user>` · `role block|unblock <user>`
• `role list` · `rolemap <platform-role> <role|none>`
• `channel allow|deny|default <channel> [mention|nomention]`
• `channel prompt <channel> <text|none>` · `channel model <channel> <model|none>` (threads inherit them)
• `settings` · `settings set <key> <value>`
• `usage [days]` (tokens and estimated cost by user, channel and day; default 30 days)
• `budget` · `budget month <tokens|none>` · `budget day <role> <tokens|none>` (per user per UTC day)
• `ingest <url>` · `audit [n]` · `feedback [n] [before]` (recent 👎) · `help`"""


class UrlIngestor(Protocol):
    async def ingest_url(self, ws: WorkspaceRef, actor: Actor, url: str) -> str:
        """Ingest one URL for the workspace; returns a one-line summary."""
        ...


class UserFacts(Protocol):
    async def facts(self, ws: WorkspaceRef, user_id: str) -> PlatformFacts:
        """What the platform says about a user (owner, admin, role ids), to judge a role change's target."""
        ...


# The target lookup of the command being run (per task, so concurrent commands never share one).
_USERS: ContextVar[UserFacts | None] = ContextVar("admin_users", default=None)


class CommandError(Exception):
    """A malformed command; the message says how to write it."""


def parse_user(token: str) -> str:
    match = _USER.match(token)
    return match.group(1) if match else token.lstrip("@")


def parse_channel(token: str) -> str:
    match = _CHANNEL.match(token)
    return match.group(1) if match else token.lstrip("#")


def parse_platform_role(token: str) -> str:
    match = _ROLE_REF.match(token)
    return match.group(1) if match else token


@dataclass(frozen=True)
class AdminOutcome:
    text: str
    ok: bool = True  # False: refused, malformed or failed (a command line exits non-zero)


class AdminCommands:
    def __init__(
        self,
        store: Store,
        ingestor: UrlIngestor | None = None,
        personas: ChannelPersonas | None = None,
        usage: UsageLedger | None = None,
        prices: Mapping[str, ModelPrice] = DEFAULT_PRICES,
        feedback: FeedbackStore | None = None,
    ) -> None:
        self.feedback = feedback
        self.store = store
        self.usage = usage
        self.prices = prices
        self.roles = RoleService(store)
        self.ingestor = ingestor
        self.personas = personas

    async def run(self, ws: WorkspaceRef, actor: Actor, command: str, *, users: UserFacts | None = None) -> str:
        """Run one command line; always returns Markdown to show the actor (ephemerally)."""
        return (await self.execute(ws, actor, command, users=users)).text

    async def execute(
        self, ws: WorkspaceRef, actor: Actor, command: str, *, users: UserFacts | None = None
    ) -> AdminOutcome:
        """Run one command line: the Markdown to show, and whether the command did what it was asked."""
        try:
            words = shlex.split(command.strip())
        except ValueError as exc:
            return AdminOutcome(f"I couldn't read that command: {exc}.", ok=False)
        if not words or words[0] in {"help", "-h", "--help"}:
            return AdminOutcome(HELP)
        handler = self._dispatch(words)
        if handler is None:
            return AdminOutcome(f"Unknown command `{command.strip()[:80]}`.\n\n{HELP}", ok=False)
        token = _USERS.set(users)
        try:
            return AdminOutcome(await handler(ws, actor, words))
        except CommandError as exc:
            return AdminOutcome(f"{exc}\n\n{HELP}", ok=False)
        except PermissionDenied as exc:
            # A demotion below a rank the target has anyway is refused: say so, and where the rank comes from.
            # Store messages may end with their own full stop; the refusal has exactly one.
            reason = str(exc).rstrip(".")
            if exc.code == "no_effect":
                return AdminOutcome(f"No change: {reason}.")
            return AdminOutcome(f"Not allowed: {reason}.", ok=False)
        except StoreUnavailable:
            log.warning("admin.store_unavailable", command=words[0])
            text = "I can't reach my store right now, so nothing was changed. Please try again in a moment."
            return AdminOutcome(text, ok=False)
        except (StoreError, ValueError) as exc:
            return AdminOutcome(f"That didn't work: {exc}", ok=False)
        except Exception as exc:
            log.error("admin.failed", command=words[0], error=repr(exc))
            return AdminOutcome("Sorry, that command failed on my side. Please try again.", ok=False)
        finally:
            _USERS.reset(token)

    async def _require(self, ws: WorkspaceRef, actor: Actor, permission: Permission, what: str) -> None:
        """The check for reads and ingestion (a store write checks and audits itself): audited here."""
        try:
            await self.roles.require(ws, actor, permission)
        except PermissionDenied as exc:
            await self.store.audit(ws, actor.user_id, REFUSED, f"{exc.code}: {what}"[:200])
            raise

    async def _target_facts(self, ws: WorkspaceRef, user_id: str) -> PlatformFacts:
        users = _USERS.get()
        return await users.facts(ws, user_id) if users is not None else PlatformFacts()

    def _dispatch(self, words: list[str]) -> Callable[[WorkspaceRef, Actor, list[str]], Awaitable[str]] | None:
        head = words[0].lower()
        sub = words[1].lower() if len(words) > 1 else ""
        table: dict[tuple[str, str], Callable[[WorkspaceRef, Actor, list[str]], Awaitable[str]]] = {
            ("role", "set"): self._cmd_role_set,
            ("role", "remove"): self._cmd_role_remove,
            ("role", "block"): self._cmd_block,
            ("role", "unblock"): self._cmd_block,
            ("role", "list"): self._cmd_role_list,
            ("rolemap", ""): self._cmd_rolemap,
            ("channel", "prompt"): self._cmd_persona,
            ("channel", "model"): self._cmd_persona,
            ("channel", ""): self._cmd_channel,
            ("settings", ""): self._cmd_settings,
            ("ingest", ""): self._cmd_ingest,
            ("audit", ""): self._cmd_audit,
            ("usage", ""): self._cmd_usage,
            ("budget", ""): self._cmd_budget,
            ("feedback", ""): self._cmd_feedback,
        }
        return table.get((head, sub)) or table.get((head, ""))

    # -- typed operations (Discord's app commands call these directly) --------------------------
    async def set_role(self, ws: WorkspaceRef, actor: Actor, user_id: str, role: Role | None) -> str:
        facts = await self._target_facts(ws, user_id)
        await self.store.set_role(ws, actor, user_id, role, target_facts=facts)
        return f"<@{user_id}> is now {role.label if role else 'back to the default role'}."

    async def set_blocked(self, ws: WorkspaceRef, actor: Actor, user_id: str, blocked: bool) -> str:
        facts = await self._target_facts(ws, user_id)
        await self.store.set_blocked(ws, actor, user_id, blocked, target_facts=facts)
        return f"<@{user_id}> is {'blocked' if blocked else 'no longer blocked'}."

    async def list_roles(self, ws: WorkspaceRef, actor: Actor) -> str:
        await self._require(ws, actor, Permission.MANAGE_ROLES, "role list")
        members = await self.store.members(ws)
        mappings = await self.store.role_mappings(ws)
        settings = await self.store.settings(ws)
        lines = [f"**Roles** (default: {settings.default_role.label})"]
        for m in sorted(members, key=lambda m: (-(m.role or 0), m.user_id)):
            state = " (blocked)" if m.blocked else ""
            lines.append(f"• <@{m.user_id}>: {m.role.label if m.role else 'default'}{state}")
        lines.extend(f"• role `{key}` → {role.label}" for key, role in sorted(mappings.items()))
        if len(lines) == 1:
            lines.append("No explicit roles yet; platform owners and admins map to owner and admin.")
        return "\n".join(lines)

    async def set_role_mapping(self, ws: WorkspaceRef, actor: Actor, platform_role: str, role: Role | None) -> str:
        await self.store.set_role_mapping(ws, actor, platform_role, role)
        target = role.label if role else "nothing (mapping removed)"
        return f"Platform role `{platform_role}` now maps to {target}."

    async def set_channel(
        self, ws: WorkspaceRef, actor: Actor, channel_id: str, mode: ChannelMode, without_mention: bool = False
    ) -> str:
        await self.store.set_channel_rule(ws, actor, ChannelRule(channel_id, mode, without_mention))
        extra = " I'll answer there without a mention." if without_mention else ""
        return f"<#{channel_id}> is now `{mode.value}`.{extra}"

    async def update_settings(self, ws: WorkspaceRef, actor: Actor, key: str, value: str) -> str:
        changes = _setting_change(key, value, await self.store.settings(ws))
        await self.store.update_settings(ws, actor, changes)
        return f"Setting `{key}` updated."

    async def show_settings(self, ws: WorkspaceRef, actor: Actor) -> str:
        await self._require(ws, actor, Permission.MANAGE_SETTINGS, "settings")
        s = await self.store.settings(ws)
        quotas = ", ".join(f"{k}: {v}/h" for k, v in sorted(s.quotas.items())) or "none"
        rules = await self.store.channel_rules(ws)
        channels = ", ".join(f"<#{r.channel_id}> {r.mode.value}" for r in rules) or "no channel rules"
        personas = await self.personas.channel_personas(ws) if self.personas is not None else []
        return "\n".join(
            [
                *(
                    f"• <#{p.channel_id}>: prompt: {p.system_prompt[:200] or '(workspace)'} · "
                    f"model: {p.model or '(workspace)'}"
                    for p in personas
                ),
                "**Settings**",
                f"• system_prompt: {s.system_prompt[:200] or '(none)'}",
                f"• default_role: {s.default_role.label} · guests_may_ask: {s.guests_may_ask}",
                f"• answer_without_mention: {s.answer_without_mention} · threads: {s.threads}",
                f"• model: {s.model or '(default)'} · quotas: {quotas}",
                f"• channels: {channels}",
            ]
        )

    async def set_persona(
        self, ws: WorkspaceRef, actor: Actor, channel_id: str, *, prompt: str | None = None, model: str | None = None
    ) -> str:
        """A channel's own system prompt or model ('' clears it: the workspace's applies again)."""
        await self.roles.require(ws, actor, Permission.MANAGE_SETTINGS)
        if self.personas is None:
            return "Channel personas are not available in this process."
        await self.personas.set_channel_persona(ws, actor, channel_id, system_prompt=prompt, model=model)
        what = "prompt" if prompt is not None else "model"
        value = prompt if prompt is not None else model
        return f"<#{channel_id}> now uses {'the workspace ' + what if not value else 'its own ' + what}."

    async def ingest_url(self, ws: WorkspaceRef, actor: Actor, url: str) -> str:
        await self._require(ws, actor, Permission.MANAGE_KNOWLEDGE, f"ingest {url}")
        if self.ingestor is None:
            return "Ingestion is not available in this process."
        if not re.match(r"^https?://", url):
            raise CommandError("`ingest` takes an http(s) URL.")
        return await self.ingestor.ingest_url(ws, actor, url)

    async def audit(self, ws: WorkspaceRef, actor: Actor, limit: int = 20) -> str:
        await self._require(ws, actor, Permission.VIEW_AUDIT, "audit")
        entries = await self.store.audit_entries(ws, actor, limit=max(1, min(limit, 100)))
        if not entries:
            return "The audit log is empty."
        lines = ["**Audit log** (newest first)"]
        for e in entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.at))
            lines.append(f"• {when} <@{e.actor_id}> `{e.action}` {e.detail[:200]}")
        return "\n".join(lines)

    def _ledger(self) -> UsageLedger:
        if self.usage is None:
            raise CommandError("Usage and budgets are not available in this process.")
        return self.usage

    async def show_usage(self, ws: WorkspaceRef, actor: Actor, days: int = 30) -> str:
        ledger = self._ledger()
        await self._require(ws, actor, Permission.VIEW_AUDIT, "usage")
        days = max(1, min(days, MAX_USAGE_DAYS))
        since = periods(time.time() - (days - 1) * 86400)[1]
        return usage_report(await ledger.usage_rows(ws, actor, since), self.prices, since)

    async def show_budgets(self, ws: WorkspaceRef, actor: Actor) -> str:
        ledger = self._ledger()
        await self._require(ws, actor, Permission.VIEW_AUDIT, "budget")
        budgets = await ledger.token_budgets(ws)
        month_rows = await ledger.usage_rows(ws, actor, periods()[0] + "-01")
        return budgets_report(budgets, sum(tokens_of(r.usage) for r in month_rows))

    async def set_budget(self, ws: WorkspaceRef, actor: Actor, scope: str, tokens: int | None) -> str:
        """`scope` is "month" (the workspace's) or a role label (each such user's daily budget)."""
        await self._ledger().set_token_budget(ws, actor, scope, tokens)
        what = "The workspace's monthly token budget" if scope == MONTH else f"The daily token budget of each {scope}"
        return f"{what} is now {f'{tokens:,} tokens' if tokens else 'unlimited'}."

    # -- text command handlers -----------------------------------------------------------------
    async def _cmd_role_set(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) != 4:
            raise CommandError("Usage: `role set <user> <role>`")
        return await self.set_role(ws, actor, parse_user(words[2]), Role.parse(words[3]))

    async def _cmd_role_remove(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) != 3:
            raise CommandError("Usage: `role remove <user>`")
        return await self.set_role(ws, actor, parse_user(words[2]), None)

    async def _cmd_block(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) != 3:
            raise CommandError(f"Usage: `role {words[1]} <user>`")
        return await self.set_blocked(ws, actor, parse_user(words[2]), words[1].lower() == "block")

    async def _cmd_role_list(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        return await self.list_roles(ws, actor)

    async def _cmd_rolemap(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) != 3:
            raise CommandError("Usage: `rolemap <platform-role> <role|none>`")
        role = None if words[2].lower() == "none" else Role.parse(words[2])
        return await self.set_role_mapping(ws, actor, parse_platform_role(words[1]), role)

    async def _cmd_persona(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        kind = words[1].lower()
        if len(words) < 4:
            raise CommandError(f"Usage: `channel {kind} <channel> <{'text' if kind == 'prompt' else 'model'}|none>`")
        value = " ".join(words[3:]).strip()
        value = "" if value.lower() in {"none", "default", "off"} else value
        channel = parse_channel(words[2])
        if kind == "prompt":
            return await self.set_persona(ws, actor, channel, prompt=value)
        return await self.set_persona(ws, actor, channel, model=value)

    async def _cmd_channel(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) not in (3, 4) or words[1].lower() not in {"allow", "deny", "default"}:
            raise CommandError("Usage: `channel allow|deny|default <channel> [mention|nomention]`")
        without_mention = len(words) == 4 and words[3].lower() in {"nomention", "no-mention", "--no-mention"}
        return await self.set_channel(
            ws, actor, parse_channel(words[2]), ChannelMode(words[1].lower()), without_mention
        )

    async def _cmd_settings(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) == 1:
            return await self.show_settings(ws, actor)
        if len(words) >= 4 and words[1].lower() == "set":
            return await self.update_settings(ws, actor, words[2], " ".join(words[3:]))
        raise CommandError("Usage: `settings` or `settings set <key> <value>`")

    async def _cmd_ingest(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) != 2:
            raise CommandError("Usage: `ingest <url>`")
        return await self.ingest_url(ws, actor, words[1].strip("<>"))

    async def _cmd_feedback(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        limit = int(words[1]) if len(words) > 1 and words[1].isdigit() else 5
        before = float(words[2]) if len(words) > 2 and words[2].replace(".", "", 1).isdigit() else None
        return await self.recent_feedback(ws, actor, max(1, min(limit, 20)), before)

    async def recent_feedback(self, ws: WorkspaceRef, actor: Actor, limit: int = 5, before: float | None = None) -> str:
        """The newest 👎 with their context, a page at a time (curators and above)."""
        await self.roles.require(ws, actor, Permission.MANAGE_KNOWLEDGE)
        if self.feedback is None:
            return "Feedback is not available in this process."
        items = await self.feedback.recent_feedback(ws, actor, rating="down", limit=limit, before=before)
        if not items:
            return "No 👎 feedback yet." if before is None else "No older 👎 feedback."
        lines = ["**Recent 👎** (newest first)"]
        for f in items:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(f.at))
            lines.append(f"• {when} <@{f.user_id}>{' — ' + f.reason[:200] if f.reason else ''}")
            lines.append(f"  Q: {f.question[:200]}")
            lines.append(f"  A: {f.answer[:300]}")
            if f.sources or f.model:
                lines.append(f"  sources: {', '.join(f.sources[:5]) or 'none'} · model: {f.model or 'default'}")
        lines.append(f"More: `feedback {limit} {items[-1].at:.6f}`")
        return "\n".join(lines)

    async def _cmd_audit(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        limit = int(words[1]) if len(words) > 1 and words[1].isdigit() else 20
        return await self.audit(ws, actor, limit)

    async def _cmd_usage(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
            raise CommandError("Usage: `usage [days]`")
        return await self.show_usage(ws, actor, int(words[1]) if len(words) == 2 else 30)

    async def _cmd_budget(self, ws: WorkspaceRef, actor: Actor, words: list[str]) -> str:
        if len(words) == 1:
            return await self.show_budgets(ws, actor)
        kind = words[1].lower()
        if kind == MONTH and len(words) == 3:
            return await self.set_budget(ws, actor, MONTH, _tokens(words[2]))
        if kind == "day" and len(words) == 4:
            return await self.set_budget(ws, actor, Role.parse(words[2]).label, _tokens(words[3]))
        raise CommandError("Usage: `budget`, `budget month <tokens|none>` or `budget day <role> <tokens|none>`")


def _tokens(value: str) -> int | None:
    """A token count as people write it: 2000000, 2,000,000, 500k, 2m; `none` removes the budget."""
    text = value.strip().lower().replace(",", "").replace("_", "")
    if text in {"none", "unlimited", "off"}:
        return None
    match = _TOKENS.match(text)
    if match is None:
        raise CommandError(f"`{value}` is not a number of tokens (for example 2000000, 500k or 2m), or `none`.")
    return round(float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)])


def _setting_change(key: str, value: str, current: object) -> dict[str, object]:
    key = key.strip().lower()
    if key.startswith("quota."):
        role = Role.parse(key.removeprefix("quota.")).label
        quotas = dict(getattr(current, "quotas", {}))
        if value.lower() in {"none", "unlimited", "off"}:
            quotas.pop(role, None)
        elif value.isdigit():
            quotas[role] = int(value)
        else:
            raise CommandError("A quota is a whole number of questions an hour, or `none`.")
        return {"quotas": quotas}
    if key not in SETTING_FIELDS or key == "quotas":
        keys = ", ".join(sorted((SETTING_FIELDS - {"quotas"}) | {"quota.<role>"}))
        raise CommandError(f"Unknown setting `{key}`. Settings: {keys}.")
    if key == "default_role":
        return {key: Role.parse(value)}
    if key in SETTING_CHOICES:
        if error := choice_error(key, value.strip().lower()):
            raise CommandError(f"{error}.")
        return {key: value.strip().lower()}
    if key in {"guests_may_ask", "answer_without_mention"}:
        if value.lower() not in {"true", "false", "on", "off", "yes", "no"}:
            raise CommandError(f"`{key}` is on or off.")
        return {key: value.lower() in {"true", "on", "yes"}}
    return {key: value}
