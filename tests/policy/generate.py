"""Writes tests/policy/cases.json: the shared case file every store and the Convex functions run.

    uv run python -m tests.policy.generate      # after changing the spec or the rule book

Each row: an actor and a target (profiles below), the workspace default, one action, and the outcome
DESIGN.md section 3 gives (written out here as a plain decision table, independent of core/roles.py).
test_cases.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

ROLES = ["guest", "member", "curator", "admin", "owner"]
RANK = {name: i + 1 for i, name in enumerate(ROLES)}
MAPPINGS = {"R-cur": "curator", "R-adm": "admin", "R-own": "owner"}
NO_FACTS: dict[str, Any] = {"isOwner": False, "isAdmin": False, "roleIds": []}


def profile(explicit: str | None = None, *, blocked: bool = False, **facts: Any) -> dict[str, Any]:
    return {"explicit": explicit, "blocked": blocked, "facts": {**NO_FACTS, **facts}}


ACTORS = {
    "platform-owner": profile(isOwner=True),
    "explicit-owner": profile("owner"),
    "platform-admin": profile(isAdmin=True),
    "mapped-admin": profile(roleIds=["R-adm"]),
    "explicit-curator": profile("curator"),
    "blocked-admin": profile("admin", blocked=True),
}
TARGETS = {
    "default": profile(),
    "explicit-guest": profile("guest"),
    "explicit-curator": profile("curator"),
    "explicit-admin": profile("admin"),
    "explicit-owner": profile("owner"),
    "platform-owner": profile(isOwner=True),
    "platform-admin": profile(isAdmin=True),
    "mapped-admin": profile(roleIds=["R-adm"]),
    "mapped-curator": profile(roleIds=["R-cur"]),
    "blocked-admin": profile("admin", blocked=True),
    "self": profile(),
}
NEW_ROLES: list[str | None] = [*ROLES, None]


def rank(p: dict[str, Any], default: str, explicit: str | None = None, *, use_explicit: bool = True) -> int:
    f = p["facts"]
    ranks = [min(RANK[default], RANK["guest"]) if f.get("isGuest") else RANK[default]]
    chosen = p["explicit"] if use_explicit else explicit
    if chosen is not None:
        ranks.append(RANK[chosen])
    if f["isOwner"]:
        ranks.append(RANK["owner"])
    if f["isAdmin"]:
        ranks.append(RANK["admin"])
    ranks.extend(RANK[MAPPINGS[r]] for r in f["roleIds"] if r in MAPPINGS)
    return max(ranks)


def actor_rank(actor: dict[str, Any], default: str) -> int | None:
    return None if actor["blocked"] else rank(actor, default)


def owner_rows(*profiles: dict[str, Any], spare: bool) -> int:
    return spare + sum(1 for p in profiles if p["explicit"] == "owner" and not p["blocked"])


def admin_gate(a: int | None, self_target: bool) -> str | None:
    if a is None:
        return "blocked"
    if a < RANK["admin"]:
        return "forbidden"
    return "self_change" if self_target else None


def expect_role(
    actor: dict[str, Any], target: dict[str, Any], name: str, default: str, new: str | None, spare: bool
) -> str:
    a = actor_rank(actor, default)
    target = actor if name == "self" else target
    if (gate := admin_gate(a, name == "self")) is not None:
        return gate
    assert a is not None
    owner = a == RANK["owner"]
    if new is not None and RANK[new] >= a and not owner:
        return "escalation"
    if rank(target, default) >= a and not owner:
        return "peer_or_higher"
    rows = owner_rows(actor, target, spare=spare)
    if target["explicit"] == "owner" and not target["blocked"] and new != "owner" and rows <= 1:
        return "last_owner"
    if new is not None and rank(target, default, new, use_explicit=False) > RANK[new]:
        return "no_effect"
    return "ok"


def expect_block(
    actor: dict[str, Any], target: dict[str, Any], name: str, default: str, block: bool, spare: bool
) -> str:
    a = actor_rank(actor, default)
    target = actor if name == "self" else target
    if (gate := admin_gate(a, name == "self")) is not None:
        return gate
    assert a is not None
    if rank(target, default) >= a and a != RANK["owner"]:
        return "peer_or_higher"
    rows = owner_rows(actor, target, spare=spare)
    if block and target["explicit"] == "owner" and not target["blocked"] and rows <= 1:
        return "last_owner"
    return "ok"


def expect_default(actor: dict[str, Any], old: str, new: str) -> str:
    a = actor_rank(actor, old)
    if a is None:
        return "blocked"
    if a < RANK["admin"]:
        return "forbidden"
    if RANK[new] > RANK["curator"]:
        return "invalid"
    if RANK[old] >= a:
        return "peer_or_higher"
    if RANK[new] >= a:
        return "escalation"
    return "ok"


def expect_mapping(actor: dict[str, Any], existing: str | None, new: str | None) -> str:
    # The row's mapping under test is R-x; the actor's own R-adm mapping stays as it is.
    a = actor_rank(actor, "member")
    if a is None:
        return "blocked"
    if a < RANK["admin"]:
        return "forbidden"
    owner = a == RANK["owner"]
    if new is not None and RANK[new] >= a and not owner:
        return "escalation"
    if existing is not None and RANK[existing] >= a and not owner:
        return "peer_or_higher"
    return "ok"


def cases() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for (an, actor), (tn, target), new in itertools.product(ACTORS.items(), TARGETS.items(), NEW_ROLES):
        for default, spare in [("member", False), *([("member", True)] if tn == "explicit-owner" else [])]:
            rows.append(
                {"action": "set_role", "actor": an, "target": tn, "default": default, "value": new,
                 "spare_owner": spare, "expect": expect_role(actor, target, tn, default, new, spare)}
            )  # fmt: skip
    for (an, actor), tn, new in itertools.product(
        [(n, ACTORS[n]) for n in ("platform-owner", "platform-admin")], ("default", "mapped-curator"), NEW_ROLES
    ):
        rows.append(
            {"action": "set_role", "actor": an, "target": tn, "default": "curator", "value": new,
             "spare_owner": False, "expect": expect_role(actor, TARGETS[tn], tn, "curator", new, False)}
        )  # fmt: skip
    for (an, actor), (tn, target), block in itertools.product(ACTORS.items(), TARGETS.items(), [True, False]):
        for spare in [False, *([True] if tn == "explicit-owner" else [])]:
            rows.append(
                {"action": "set_blocked", "actor": an, "target": tn, "default": "member", "value": block,
                 "spare_owner": spare, "expect": expect_block(actor, target, tn, "member", block, spare)}
            )  # fmt: skip
    for (an, actor), old, new in itertools.product(ACTORS.items(), ROLES[:3], ROLES):
        rows.append(
            {"action": "set_default", "actor": an, "target": None, "default": old, "value": new,
             "spare_owner": False, "expect": expect_default(actor, old, new)}
        )  # fmt: skip
    for (an, actor), existing, new in itertools.product(
        ACTORS.items(), [None, "curator", "admin", "owner"], [None, "guest", "curator", "admin", "owner"]
    ):
        rows.append(
            {"action": "set_mapping", "actor": an, "target": existing, "default": "member", "value": new,
             "spare_owner": False, "expect": expect_mapping(actor, existing, new)}
        )  # fmt: skip
    for i, row in enumerate(rows):
        row["id"] = (
            f"{i:04d} {row['action']} {row['actor']} -> {row['target']} = {row['value']} (default {row['default']})"
        )
    return rows


def document() -> dict[str, Any]:
    return {
        "$comment": "Generated by tests/policy/generate.py; run by tests/policy/test_cases.py (SQLite, Convex over "
        "HTTP) and convex/tests/cases.test.ts. Setup per row, in a workspace of its own, by U-root (a platform "
        "owner without a row): default guest; the mappings; each profile's explicit role; a spare explicit owner "
        "if spare_owner; blocks; then the row's default (set_mapping rows: the mapping R-x = target). Then U-actor "
        "acts on U-target (on itself, for self) with the target profile's facts.",
        "mappings": MAPPINGS,
        "actors": ACTORS,
        "targets": TARGETS,
        "cases": cases(),
    }


PATH = Path(__file__).with_name("cases.json")


def render() -> str:
    return json.dumps(document(), indent=1) + "\n"


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    print(f"{len(document()['cases'])} cases -> {PATH.name}")
