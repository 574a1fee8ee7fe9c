"""The role model of DESIGN.md section 3, as pure functions.

Every store implementation (SQLite here, the Convex mutations in TypeScript) applies
these same rules inside its own write, so the Python check is never the only one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from core.messages import PlatformFacts


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


LOWEST_ROLE: Mapping[Permission, Role] = {
    Permission.ASK_IN_CHANNELS: Role.MEMBER,
    Permission.ASK_IN_DMS: Role.MEMBER,
    Permission.MANAGE_KNOWLEDGE: Role.CURATOR,
    Permission.MANAGE_SETTINGS: Role.ADMIN,
    Permission.MANAGE_ROLES: Role.ADMIN,
    Permission.VIEW_AUDIT: Role.ADMIN,
}


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
        candidates.append(Role.OWNER)
    if facts.is_admin:
        candidates.append(Role.ADMIN)
    candidates.extend(mappings[r] for r in facts.role_ids if r in mappings)
    return max(candidates, default=None)


def effective_role(
    membership: Membership | None,
    facts: PlatformFacts,
    mappings: Mapping[str, Role],
    default_role: Role,
) -> Role | None:
    """blocked ? none : max(explicit role, role mapped from platform facts, default role)."""
    if membership is not None and membership.blocked:
        return None
    # A platform guest (Slack's restricted accounts) gets the workspace default only up to guest;
    # an admin can still grant more explicitly.
    candidates = [min(default_role, Role.GUEST) if facts.is_guest else default_role]
    if membership is not None and membership.role is not None:
        candidates.append(membership.role)
    mapped = platform_role(facts, mappings)
    if mapped is not None:
        candidates.append(mapped)
    return max(candidates)


def allows(role: Role | None, permission: Permission, *, guests_may_ask: bool = False) -> bool:
    if role is None:
        return False
    if permission is Permission.ASK_IN_CHANNELS and guests_may_ask:
        return role >= Role.GUEST
    return role >= LOWEST_ROLE[permission]


class RoleChangeDenied(Exception):
    """A refused role change; `code` is stable and shared with the Convex functions."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_role_change(
    *,
    actor_id: str,
    actor_role: Role | None,
    target_id: str,
    target_current: Role | None,
    new_role: Role | None,
    owner_count: int,
) -> None:
    """Raise RoleChangeDenied unless `actor` may move `target` from current to new role.

    `new_role=None` removes the explicit role (or blocks, for the caller's purposes).
    `target_current` is the target's effective role, so nobody can demote a peer.
    """
    if not allows(actor_role, Permission.MANAGE_ROLES):
        raise RoleChangeDenied("forbidden", "you need the admin role to change roles")
    assert actor_role is not None
    if actor_id == target_id:
        raise RoleChangeDenied("self_change", "nobody can change their own role")
    is_owner = actor_role is Role.OWNER
    if new_role is not None and new_role >= actor_role and not is_owner:
        raise RoleChangeDenied("escalation", f"{actor_role.with_article} can only grant roles below {actor_role.label}")
    if target_current is not None and target_current >= actor_role and not is_owner:
        raise RoleChangeDenied(
            "peer_or_higher", f"{actor_role.with_article} cannot change the role of {target_current.with_article}"
        )
    if target_current is Role.OWNER and new_role is not Role.OWNER and owner_count <= 1:
        raise RoleChangeDenied("last_owner", "the last owner cannot be removed")
