"""The role model as pure functions: every permission against every role, and every refusal."""

from __future__ import annotations

import itertools

import pytest

from core.messages import PlatformFacts
from core.roles import (
    LOWEST_ROLE,
    Membership,
    Permission,
    Role,
    RoleChangeDenied,
    allows,
    check_role_change,
    effective_role,
    platform_role,
)

EXPECTED = {  # permission -> the roles that have it
    Permission.ASK_IN_CHANNELS: {Role.MEMBER, Role.CURATOR, Role.ADMIN, Role.OWNER},
    Permission.ASK_IN_DMS: {Role.MEMBER, Role.CURATOR, Role.ADMIN, Role.OWNER},
    Permission.MANAGE_KNOWLEDGE: {Role.CURATOR, Role.ADMIN, Role.OWNER},
    Permission.MANAGE_SETTINGS: {Role.ADMIN, Role.OWNER},
    Permission.MANAGE_ROLES: {Role.ADMIN, Role.OWNER},
    Permission.VIEW_AUDIT: {Role.ADMIN, Role.OWNER},
}


@pytest.mark.parametrize(("permission", "role"), list(itertools.product(Permission, Role)))
def test_every_permission_against_every_role(permission: Permission, role: Role) -> None:
    assert allows(role, permission) is (role in EXPECTED[permission])


@pytest.mark.parametrize("permission", list(Permission))
def test_blocked_has_no_permission(permission: Permission) -> None:
    assert allows(None, permission) is False
    assert allows(None, permission, guests_may_ask=True) is False


def test_guests_ask_in_channels_only_when_allowed() -> None:
    assert allows(Role.GUEST, Permission.ASK_IN_CHANNELS) is False
    assert allows(Role.GUEST, Permission.ASK_IN_CHANNELS, guests_may_ask=True) is True
    assert allows(Role.GUEST, Permission.ASK_IN_DMS, guests_may_ask=True) is False
    assert allows(Role.GUEST, Permission.MANAGE_KNOWLEDGE, guests_may_ask=True) is False


def test_table_covers_every_permission() -> None:
    assert set(LOWEST_ROLE) == set(Permission)


def test_role_parse() -> None:
    assert Role.parse(" Curator ") is Role.CURATOR
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("emperor")


def test_platform_facts_map_to_roles() -> None:
    assert platform_role(PlatformFacts(is_owner=True), {}) is Role.OWNER
    assert platform_role(PlatformFacts(is_admin=True), {}) is Role.ADMIN
    assert platform_role(PlatformFacts(role_ids=("r1", "r2")), {"r2": Role.CURATOR, "r3": Role.ADMIN}) is Role.CURATOR
    assert platform_role(PlatformFacts(role_ids=("r9",)), {"r2": Role.CURATOR}) is None
    assert platform_role(PlatformFacts(is_admin=True, role_ids=("r",)), {"r": Role.OWNER}) is Role.OWNER


def test_effective_role_is_the_highest_source() -> None:
    nobody = PlatformFacts()
    assert effective_role(None, nobody, {}, Role.MEMBER) is Role.MEMBER
    assert effective_role(None, nobody, {}, Role.GUEST) is Role.GUEST
    assert effective_role(Membership("u", Role.CURATOR), nobody, {}, Role.MEMBER) is Role.CURATOR
    assert effective_role(Membership("u", Role.GUEST), nobody, {}, Role.MEMBER) is Role.MEMBER
    assert effective_role(Membership("u", Role.MEMBER), PlatformFacts(is_admin=True), {}, Role.GUEST) is Role.ADMIN
    assert effective_role(None, PlatformFacts(role_ids=("r",)), {"r": Role.CURATOR}, Role.GUEST) is Role.CURATOR


def test_blocked_beats_everything() -> None:
    owner = PlatformFacts(is_owner=True)
    assert effective_role(Membership("u", Role.OWNER, blocked=True), owner, {}, Role.MEMBER) is None


def change(actor: Role | None, current: Role | None, new: Role | None, *, owners: int = 2, same: bool = False) -> None:
    check_role_change(
        actor_id="a",
        actor_role=actor,
        target_id="a" if same else "t",
        target_current=current,
        new_role=new,
        owner_count=owners,
    )


def code(actor: Role | None, current: Role | None, new: Role | None, **kw: object) -> str:
    with pytest.raises(RoleChangeDenied) as info:
        change(actor, current, new, **kw)  # type: ignore[arg-type]
    return info.value.code


@pytest.mark.parametrize("actor", [None, Role.GUEST, Role.MEMBER, Role.CURATOR])
def test_below_admin_cannot_change_roles(actor: Role | None) -> None:
    assert code(actor, Role.GUEST, Role.MEMBER) == "forbidden"


def test_admin_grants_only_below_itself() -> None:
    for new in (Role.GUEST, Role.MEMBER, Role.CURATOR, None):
        change(Role.ADMIN, Role.MEMBER, new)
    assert code(Role.ADMIN, Role.MEMBER, Role.ADMIN) == "escalation"
    assert code(Role.ADMIN, Role.MEMBER, Role.OWNER) == "escalation"


def test_admin_cannot_touch_peers_or_owners() -> None:
    assert code(Role.ADMIN, Role.ADMIN, Role.MEMBER) == "peer_or_higher"
    assert code(Role.ADMIN, Role.OWNER, Role.CURATOR) == "peer_or_higher"


def test_nobody_changes_their_own_role() -> None:
    assert code(Role.OWNER, Role.OWNER, Role.ADMIN, same=True) == "self_change"
    assert code(Role.ADMIN, Role.ADMIN, Role.OWNER, same=True) == "self_change"


def test_owner_may_do_anything_but_remove_the_last_owner() -> None:
    change(Role.OWNER, Role.MEMBER, Role.OWNER)
    change(Role.OWNER, Role.OWNER, Role.ADMIN, owners=2)
    change(Role.OWNER, Role.ADMIN, Role.GUEST)
    assert code(Role.OWNER, Role.OWNER, Role.ADMIN, owners=1) == "last_owner"
    assert code(Role.OWNER, Role.OWNER, None, owners=1) == "last_owner"
    change(Role.OWNER, Role.OWNER, Role.OWNER, owners=1)  # no change is not a removal


def test_platform_guests_get_at_most_guest_by_default() -> None:
    guest = PlatformFacts(is_guest=True)
    assert effective_role(None, guest, {}, Role.MEMBER) is Role.GUEST
    assert effective_role(Membership("u", Role.CURATOR), guest, {}, Role.MEMBER) is Role.CURATOR
