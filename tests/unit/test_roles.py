"""The role model as pure functions: every permission against every role, and every refusal.

The exhaustive tests compare core.roles with DESIGN.md section 3 restated as a plain decision table,
over every combination of inputs; the named tests below them pin each rule with a readable example.
"""

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
    Target,
    allows,
    check_block,
    check_default_change,
    check_role_change,
    effective_role,
    platform_role,
)

ROLES_OR_NONE: list[Role | None] = [None, *Role]

EXPECTED = {  # permission -> the roles that have it
    Permission.ASK_IN_CHANNELS: {Role.MEMBER, Role.CURATOR, Role.ADMIN, Role.OWNER},
    Permission.ASK_IN_DMS: {Role.MEMBER, Role.CURATOR, Role.ADMIN, Role.OWNER},
    Permission.MANAGE_KNOWLEDGE: {Role.CURATOR, Role.ADMIN, Role.OWNER},
    Permission.MANAGE_SETTINGS: {Role.ADMIN, Role.OWNER},
    Permission.MANAGE_ROLES: {Role.ADMIN, Role.OWNER},
    Permission.VIEW_AUDIT: {Role.ADMIN, Role.OWNER},
    Permission.CONTROL_OTHERS_REPLIES: {Role.CURATOR, Role.ADMIN, Role.OWNER},
}

MAPPINGS = {"r-cur": Role.CURATOR, "r-own": Role.OWNER, "r-guest": Role.GUEST}


# -- roles -----------------------------------------------------------------------------------------


def test_roles_are_ranked_owner_first() -> None:
    assert sorted(Role, reverse=True) == [Role.OWNER, Role.ADMIN, Role.CURATOR, Role.MEMBER, Role.GUEST]
    assert [r.with_article for r in Role] == ["a guest", "a member", "a curator", "an admin", "an owner"]


@pytest.mark.parametrize("role", list(Role))
def test_role_parse(role: Role) -> None:
    assert Role.parse(role.label) is role
    assert Role.parse(f" {role.label.title()} ") is role


@pytest.mark.parametrize("text", ["emperor", "", "admins", "5"])
def test_role_parse_rejects_unknown_names(text: str) -> None:
    with pytest.raises(ValueError, match=r"unknown role.*owner, admin, curator, member, guest"):
        Role.parse(text)


# -- permissions -----------------------------------------------------------------------------------


def test_table_covers_every_permission() -> None:
    assert set(LOWEST_ROLE) == set(Permission) == set(EXPECTED)


@pytest.mark.parametrize(("permission", "role"), list(itertools.product(Permission, Role)))
def test_every_permission_against_every_role(permission: Permission, role: Role) -> None:
    assert allows(role, permission) is (role in EXPECTED[permission])


@pytest.mark.parametrize(("permission", "role"), list(itertools.product(Permission, Role)))
def test_guests_may_ask_changes_only_guests_asking_in_channels(permission: Permission, role: Role) -> None:
    widened = permission is Permission.ASK_IN_CHANNELS and role is Role.GUEST
    assert allows(role, permission, guests_may_ask=True) is (role in EXPECTED[permission] or widened)


@pytest.mark.parametrize("permission", list(Permission))
def test_blocked_has_no_permission(permission: Permission) -> None:
    assert allows(None, permission) is False
    assert allows(None, permission, guests_may_ask=True) is False


def test_guests_ask_in_channels_only_when_allowed() -> None:
    assert allows(Role.GUEST, Permission.ASK_IN_CHANNELS) is False
    assert allows(Role.GUEST, Permission.ASK_IN_CHANNELS, guests_may_ask=True) is True
    assert allows(Role.GUEST, Permission.ASK_IN_DMS, guests_may_ask=True) is False
    assert allows(Role.GUEST, Permission.MANAGE_KNOWLEDGE, guests_may_ask=True) is False


# -- effective role --------------------------------------------------------------------------------


def test_effective_role_every_combination() -> None:
    wrong = []
    for explicit, blocked, has_row, is_owner, is_admin, is_guest, role_ids, default in itertools.product(
        ROLES_OR_NONE,
        [False, True],
        [False, True],
        [False, True],
        [False, True],
        [False, True],
        [(), ("r-cur",), ("r-guest", "r-unmapped"), ("r-own", "r-cur")],
        list(Role),
    ):
        if not has_row and (explicit is not None or blocked):
            continue  # without a row there is no explicit role and no block
        membership = Membership("u", explicit, blocked) if has_row else None
        facts = PlatformFacts(is_owner=is_owner, is_admin=is_admin, role_ids=role_ids, is_guest=is_guest)
        # DESIGN.md section 3 restated: blocked is nothing, else the highest of every source,
        # where a platform guest's default is capped at guest.
        sources = [Role.GUEST if is_guest else default]
        sources += [explicit] if explicit is not None else []
        sources += [Role.OWNER] if is_owner else []
        sources += [Role.ADMIN] if is_admin else []
        sources += [MAPPINGS[r] for r in role_ids if r in MAPPINGS]
        expected = None if blocked else max(sources)
        result = effective_role(membership, facts, MAPPINGS, default)
        if result is not expected:
            wrong.append((membership, facts, default, result, expected))
    assert wrong == []


def test_platform_facts_map_to_roles() -> None:
    assert platform_role(PlatformFacts(), {}) is None
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
    owner = PlatformFacts(is_owner=True, role_ids=("r-own",))
    assert effective_role(Membership("u", Role.OWNER, blocked=True), owner, MAPPINGS, Role.MEMBER) is None
    assert effective_role(Membership("u", None, blocked=True), PlatformFacts(), {}, Role.MEMBER) is None


def test_platform_guests_get_at_most_guest_by_default() -> None:
    guest = PlatformFacts(is_guest=True)
    assert effective_role(None, guest, {}, Role.MEMBER) is Role.GUEST
    assert effective_role(None, guest, {}, Role.CURATOR) is Role.GUEST
    assert effective_role(Membership("u", Role.CURATOR), guest, {}, Role.MEMBER) is Role.CURATOR


# -- role changes ----------------------------------------------------------------------------------


def change(actor: Role | None, current: Role | None, new: Role | None, *, owners: int = 2, same: bool = False) -> None:
    """`current` is the target's explicit role; the default is guest, so it is also its rank."""
    target_id = "a" if same else "t"
    membership = Membership(target_id, current) if current is not None else None
    check_role_change(
        actor_id="a",
        actor_role=actor,
        target=Target(target_id, membership, PlatformFacts(), {}, Role.GUEST),
        new_role=new,
        owner_rows=owners,
    )


def code(actor: Role | None, current: Role | None, new: Role | None, *, owners: int = 2, same: bool = False) -> str:
    with pytest.raises(RoleChangeDenied) as info:
        change(actor, current, new, owners=owners, same=same)
    return info.value.code


def expected_refusal(actor: Role | None, current: Role | None, new: Role | None, owners: int, same: bool) -> str | None:
    """DESIGN.md section 3 as a decision table, in the order the refusals are reported."""
    if actor is None:
        return "blocked"
    if actor < Role.ADMIN:
        return "forbidden"
    if same:
        return "self_change"
    if actor is not Role.OWNER and new is not None and new >= actor:
        return "escalation"
    if actor is not Role.OWNER and current is not None and current >= actor:
        return "peer_or_higher"
    if current is Role.OWNER and new is not Role.OWNER and owners <= 1:
        return "last_owner"
    return None


def test_check_role_change_every_combination() -> None:
    wrong = []
    for actor, current, new, owners, same in itertools.product(
        ROLES_OR_NONE, ROLES_OR_NONE, ROLES_OR_NONE, [0, 1, 2, 3], [False, True]
    ):
        expected = expected_refusal(actor, current, new, owners, same)
        try:
            change(actor, current, new, owners=owners, same=same)
            got = None
        except RoleChangeDenied as exc:
            got = exc.code
        if got != expected:
            wrong.append((actor, current, new, owners, same, got, expected))
    assert wrong == []


@pytest.mark.parametrize("actor", [Role.GUEST, Role.MEMBER, Role.CURATOR])
def test_below_admin_cannot_change_roles(actor: Role | None) -> None:
    assert code(actor, Role.GUEST, Role.MEMBER) == "forbidden"
    assert code(actor, None, None) == "forbidden"


def test_admin_grants_only_below_itself() -> None:
    for new in (Role.GUEST, Role.MEMBER, Role.CURATOR, None):
        change(Role.ADMIN, Role.MEMBER, new)
    assert code(Role.ADMIN, Role.MEMBER, Role.ADMIN) == "escalation"
    assert code(Role.ADMIN, Role.MEMBER, Role.OWNER) == "escalation"


def test_admin_cannot_touch_peers_or_owners() -> None:
    assert code(Role.ADMIN, Role.ADMIN, Role.MEMBER) == "peer_or_higher"
    assert code(Role.ADMIN, Role.OWNER, Role.CURATOR) == "peer_or_higher"
    assert code(Role.ADMIN, Role.ADMIN, None) == "peer_or_higher"


def test_nobody_changes_their_own_role() -> None:
    assert code(Role.OWNER, Role.OWNER, Role.ADMIN, same=True) == "self_change"
    assert code(Role.ADMIN, Role.ADMIN, Role.OWNER, same=True) == "self_change"
    assert code(Role.ADMIN, Role.ADMIN, Role.GUEST, same=True) == "self_change"


def test_owner_may_do_anything_but_remove_the_last_owner() -> None:
    change(Role.OWNER, Role.MEMBER, Role.OWNER)
    change(Role.OWNER, Role.OWNER, Role.ADMIN, owners=2)
    change(Role.OWNER, Role.ADMIN, Role.GUEST)
    assert code(Role.OWNER, Role.OWNER, Role.ADMIN, owners=1) == "last_owner"
    assert code(Role.OWNER, Role.OWNER, None, owners=1) == "last_owner"
    change(Role.OWNER, Role.OWNER, Role.OWNER, owners=1)  # no change is not a removal


def test_refusal_messages_read_well() -> None:
    with pytest.raises(RoleChangeDenied, match=r"^an admin cannot change the role of an owner$"):
        change(Role.ADMIN, Role.OWNER, Role.MEMBER)
    with pytest.raises(RoleChangeDenied, match=r"^an admin can only grant roles below admin$"):
        change(Role.ADMIN, Role.MEMBER, Role.ADMIN)


# -- targets judged by their effective rank (issue classes 1 and 2) --------------------------------


def target(facts: PlatformFacts | None = None, explicit: Role | None = None, default: Role = Role.MEMBER) -> Target:
    membership = Membership("t", explicit) if explicit else None
    return Target("t", membership, facts or PlatformFacts(), MAPPINGS, default)


def test_a_platform_owner_or_mapped_admin_is_judged_by_that_rank() -> None:
    for facts in (PlatformFacts(is_owner=True), PlatformFacts(is_admin=True), PlatformFacts(role_ids=("r-own",))):
        with pytest.raises(RoleChangeDenied, match="cannot block") as info:
            check_block(actor_id="a", actor_role=Role.ADMIN, target=target(facts), blocked=True, owner_rows=2)
        assert info.value.code == "peer_or_higher"
        with pytest.raises(RoleChangeDenied) as info:
            check_role_change(actor_id="a", actor_role=Role.ADMIN, target=target(facts), new_role=None, owner_rows=2)
        assert info.value.code == "peer_or_higher"


def test_a_demotion_that_changes_nothing_says_where_the_rank_comes_from() -> None:
    cases = [
        (target(PlatformFacts(is_admin=True)), "platform role"),
        (target(PlatformFacts(role_ids=("r-cur",))), "role mapping"),
        (target(default=Role.CURATOR), "workspace default"),
    ]
    for who, source in cases:
        with pytest.raises(RoleChangeDenied, match=source) as info:
            check_role_change(actor_id="a", actor_role=Role.OWNER, target=who, new_role=Role.GUEST, owner_rows=2)
        assert info.value.code == "no_effect"


def test_the_default_role_is_no_back_door() -> None:
    check_default_change(actor_role=Role.ADMIN, old=Role.MEMBER, new=Role.CURATOR)
    for old, new, expected in [
        (Role.ADMIN, Role.MEMBER, "peer_or_higher"),  # lowering a default at the actor's rank demotes its peers
        (Role.MEMBER, Role.ADMIN, "invalid"),  # never above curator, for anyone
        (Role.CURATOR, Role.OWNER, "invalid"),
    ]:
        with pytest.raises(RoleChangeDenied) as info:
            check_default_change(actor_role=Role.ADMIN, old=old, new=new)
        assert info.value.code == expected
    with pytest.raises(RoleChangeDenied) as info:
        check_default_change(actor_role=Role.CURATOR, old=Role.MEMBER, new=Role.CURATOR)
    assert info.value.code == "escalation"
