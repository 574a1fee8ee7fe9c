"""The role model of DESIGN.md section 3, as pure functions over the rule book (core/policy/rules.json).

Every store implementation (SQLite here, the Convex mutations in TypeScript, convex/functions/lib/roles.ts)
applies these same decisions inside its own write, so the Python check is never the only one. Both
languages run the shared case file tests/policy/cases.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from core.messages import PlatformFacts
from core.policy import RULES


class Role(IntEnum):
    """Ordered so that comparison means rank: OWNER > ADMIN > ... > GUEST."""

    GUEST = 1
    MEMBER = 2
    CURATOR = 3
    ADMIN = 4
    OWNER = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def with_article(self) -> str:
        """The label with its article (an admin, a curator), for messages shown to users."""
        return f"{'an' if self.label[0] in 'aeiou' else 'a'} {self.label}"

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(r.label for r in sorted(cls, reverse=True))
            raise ValueError(f"unknown role {value!r}; expected one of: {names}") from None


class Permission(StrEnum):
    ASK_IN_CHANNELS = "ask_in_channels"
    ASK_IN_DMS = "ask_in_dms"
    MANAGE_KNOWLEDGE = "manage_knowledge"
    MANAGE_SETTINGS = "manage_settings"
    MANAGE_ROLES = "manage_roles"
    VIEW_AUDIT = "view_audit"
    CONTROL_OTHERS_REPLIES = "control_others_replies"  # Stop or Regenerate a reply to another's question


# The enum gives Python names and types; the rule book gives the order. They must agree.
if [r.label for r in sorted(Role)] != RULES["roles"] or [int(r) for r in sorted(Role)] != list(
    range(1, len(RULES["roles"]) + 1)
):
    raise RuntimeError("core.roles.Role does not match the role order in core/policy/rules.json")

LOWEST_ROLE: Mapping[Permission, Role] = {Permission(k): Role.parse(v) for k, v in RULES["permissions"].items()}
if set(LOWEST_ROLE) != set(Permission):
    raise RuntimeError("core/policy/rules.json must name the lowest role of every permission")

GUESTS_MAY_ASK = Permission(RULES["guests_may_ask"]["permission"]), Role.parse(RULES["guests_may_ask"]["lowest"])
PLATFORM_OWNER = Role.parse(RULES["platform"]["is_owner"])
PLATFORM_ADMIN = Role.parse(RULES["platform"]["is_admin"])
GUEST_DEFAULT_CAP = Role.parse(RULES["platform"]["guest_default_cap"])
INITIAL_DEFAULT_ROLE = Role.parse(RULES["default_role"]["initial"])
HIGHEST_DEFAULT_ROLE = Role.parse(RULES["default_role"]["highest"])


@dataclass(frozen=True, slots=True)
class Membership:
    """What the store knows about one user in one workspace."""

    user_id: str
    role: Role | None = None  # explicit role set by an admin
    blocked: bool = False


def platform_role(facts: PlatformFacts, mappings: Mapping[str, Role]) -> Role | None:
    """The highest role the platform facts and admin-defined role mappings give."""
    candidates: list[Role] = []
    if facts.is_owner:
        candidates.append(PLATFORM_OWNER)
    if facts.is_admin:
        candidates.append(PLATFORM_ADMIN)
    candidates.extend(mappings[r] for r in facts.role_ids if r in mappings)
    return max(candidates, default=None)


def rank(explicit: Role | None, facts: PlatformFacts, mappings: Mapping[str, Role], default_role: Role) -> Role:
    """max(explicit role, role from platform facts and mappings, default role), the blocked flag aside."""
    # A platform guest (Slack's restricted accounts) gets the workspace default only up to guest;
    # an admin can still grant more explicitly.
    candidates = [min(default_role, GUEST_DEFAULT_CAP) if facts.is_guest else default_role]
    if explicit is not None:
        candidates.append(explicit)
    mapped = platform_role(facts, mappings)
    if mapped is not None:
        candidates.append(mapped)
    return max(candidates)


def effective_role(
    membership: Membership | None,
    facts: PlatformFacts,
    mappings: Mapping[str, Role],
    default_role: Role,
) -> Role | None:
    """blocked ? none : rank(...)."""
    if membership is not None and membership.blocked:
        return None
    return rank(membership.role if membership else None, facts, mappings, default_role)


def allows(role: Role | None, permission: Permission, *, guests_may_ask: bool = False) -> bool:
    if role is None:
        return False
    if guests_may_ask and permission is GUESTS_MAY_ASK[0]:
        return role >= min(GUESTS_MAY_ASK[1], LOWEST_ROLE[permission])
    return role >= LOWEST_ROLE[permission]


class RoleChangeDenied(Exception):
    """A refused change; `code` is stable and shared with the Convex functions (lib/roles.ts)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    """Everything that gives the target of a role change its rank: judged exactly like an actor."""

    user_id: str
    membership: Membership | None
    facts: PlatformFacts
    mappings: Mapping[str, Role]
    default_role: Role

    @property
    def explicit(self) -> Role | None:
        return self.membership.role if self.membership else None

    @property
    def blocked(self) -> bool:
        return bool(self.membership and self.membership.blocked)

    def rank_with(self, explicit: Role | None) -> Role:
        return rank(explicit, self.facts, self.mappings, self.default_role)

    def source_of(self, role: Role) -> str:
        """Where a rank that is not the explicit role comes from, for the 'changes nothing' message."""
        if (self.facts.is_owner and role == PLATFORM_OWNER) or (self.facts.is_admin and role == PLATFORM_ADMIN):
            return "their platform role (change it on the platform, or block them)"
        if any(self.mappings.get(r) == role for r in self.facts.role_ids):
            return "a role mapping (change the mapping with `rolemap`, or block them)"
        return "the workspace default role (lower it with `settings set default_role`, or block them)"


def _require_admin(actor_id: str, actor_role: Role | None, target_id: str, what: str) -> Role:
    if actor_role is None:
        raise RoleChangeDenied("blocked", "you are blocked in this workspace")
    if not allows(actor_role, Permission.MANAGE_ROLES):
        raise RoleChangeDenied("forbidden", f"you need the {LOWEST_ROLE[Permission.MANAGE_ROLES].label} role to {what}")
    if actor_id == target_id:
        raise RoleChangeDenied("self_change", f"nobody can {what} for themselves")
    return actor_role


def _peer_exempt(actor_role: Role) -> bool:
    return actor_role is Role.OWNER and bool(RULES["owner_may_change_peers"])


def check_role_change(
    *, actor_id: str, actor_role: Role | None, target: Target, new_role: Role | None, owner_rows: int
) -> None:
    """Raise RoleChangeDenied unless `actor` may set the target's explicit role to `new_role` (None clears it).

    The target is judged by its effective rank (blocked flag aside), never by its stored row alone.
    `owner_rows` counts the workspace's unblocked explicit owners (the last one stays).
    """
    actor_role = _require_admin(actor_id, actor_role, target.user_id, "change roles")
    current = target.rank_with(target.explicit)
    if new_role is not None and new_role >= actor_role and not _peer_exempt(actor_role):
        raise RoleChangeDenied("escalation", f"{actor_role.with_article} can only grant roles below {actor_role.label}")
    if current >= actor_role and not _peer_exempt(actor_role):
        raise RoleChangeDenied(
            "peer_or_higher", f"{actor_role.with_article} cannot change the role of {current.with_article}"
        )
    if target.explicit is Role.OWNER and not target.blocked and new_role is not Role.OWNER and owner_rows <= 1:
        raise RoleChangeDenied("last_owner", "the last owner cannot be removed")
    after = target.rank_with(new_role)
    if new_role is not None and after > new_role:
        raise RoleChangeDenied(
            "no_effect",
            f"that changes nothing: they stay {after.with_article} through {target.source_of(after)}",
        )


def check_block(*, actor_id: str, actor_role: Role | None, target: Target, blocked: bool, owner_rows: int) -> None:
    """Raise RoleChangeDenied unless `actor` may block (or unblock) the target, judged by its rank."""
    actor_role = _require_admin(actor_id, actor_role, target.user_id, "block or unblock")
    current = target.rank_with(target.explicit)
    if current >= actor_role and not _peer_exempt(actor_role):
        raise RoleChangeDenied("peer_or_higher", f"{actor_role.with_article} cannot block {current.with_article}")
    if blocked and target.explicit is Role.OWNER and not target.blocked and owner_rows <= 1:
        raise RoleChangeDenied("last_owner", "the last owner cannot be blocked")


def check_default_change(*, actor_role: Role, old: Role, new: Role) -> None:
    """The default is a grant to everyone: both the old and the new default stay below the actor's rank."""
    if new > HIGHEST_DEFAULT_ROLE:
        raise RoleChangeDenied(
            "invalid", f"the default role can be at most {HIGHEST_DEFAULT_ROLE.label}; grant more person by person"
        )
    if old >= actor_role:
        raise RoleChangeDenied(
            "peer_or_higher", f"{actor_role.with_article} cannot change a default role of {old.label}"
        )
    if new >= actor_role:
        raise RoleChangeDenied(
            "escalation", f"{actor_role.with_article} can only set a default role below {actor_role.label}"
        )


def check_mapping_change(*, actor_role: Role | None, existing: Role | None, new: Role | None) -> None:
    """A mapping grants its role to everyone holding the platform role: the same bounds as a grant."""
    if actor_role is None:
        raise RoleChangeDenied("blocked", "you are blocked in this workspace")
    if not allows(actor_role, Permission.MANAGE_ROLES):
        raise RoleChangeDenied("forbidden", "you need the admin role to map roles")
    if new is not None and new >= actor_role and not _peer_exempt(actor_role):
        raise RoleChangeDenied("escalation", f"{actor_role.with_article} can only map roles below {actor_role.label}")
    if existing is not None and existing >= actor_role and not _peer_exempt(actor_role):
        raise RoleChangeDenied(
            "peer_or_higher", f"{actor_role.with_article} cannot change the mapping to {existing.label}"
        )
