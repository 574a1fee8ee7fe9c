"""The shared case file (cases.json) against every store: the same rows run in convex/tests/cases.test.ts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.messages import Actor, Platform, PlatformFacts, WorkspaceRef
from core.roles import Role
from core.stores.base import PermissionDenied, Store, StoreError
from core.stores.convex import ConvexStore
from tests.contract.conftest import STORES
from tests.policy.generate import PATH, render

DOC: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8"))
ROOT = Actor("U-root", PlatformFacts(is_owner=True))


def test_the_case_file_is_current() -> None:
    assert PATH.read_text(encoding="utf-8") == render(), "run: uv run python -m tests.policy.generate"


def test_the_case_file_covers_every_outcome_and_class() -> None:
    outcomes = {c["expect"] for c in DOC["cases"]}
    assert outcomes >= {"ok", "blocked", "forbidden", "self_change", "escalation", "peer_or_higher", "last_owner"}
    assert outcomes >= {"no_effect", "invalid"} and len(DOC["cases"]) >= 500
    # Class 1: targets whose rank comes from the platform or a mapping, refused to an admin.
    judged = {(c["target"], c["expect"]) for c in DOC["cases"] if c["actor"] == "platform-admin"}
    assert {("platform-owner", "peer_or_higher"), ("mapped-admin", "peer_or_higher")} <= judged


def facts(p: dict[str, Any]) -> PlatformFacts:
    f = p["facts"]
    return PlatformFacts(is_owner=f["isOwner"], is_admin=f["isAdmin"], role_ids=tuple(f["roleIds"]))


def role(name: str | None) -> Role | None:
    return Role.parse(name) if name is not None else None


async def outcome(call: Any) -> str:
    try:
        await call
    except PermissionDenied as exc:
        return exc.code
    except StoreError as exc:
        return exc.code
    return "ok"


async def run_case(store: Store, i: int, case: dict[str, Any]) -> str:
    """Set the row up as U-root (see the file's $comment), act, and return the outcome code."""
    ws = WorkspaceRef(Platform.SLACK, f"T-case-{i}")
    await store.update_settings(ws, ROOT, {"default_role": Role.GUEST})
    for platform_role, mapped in DOC["mappings"].items():
        await store.set_role_mapping(ws, ROOT, platform_role, Role.parse(mapped))
    actor_p = DOC["actors"][case["actor"]]
    self_target = case["target"] == "self"
    target_p = DOC["targets"].get(case["target"]) if case["action"] in {"set_role", "set_blocked"} else None
    users = [("U-actor", actor_p)] + ([("U-target", target_p)] if target_p is not None and not self_target else [])
    for user, p in users:
        if p["explicit"] is not None:
            await store.set_role(ws, ROOT, user, Role.parse(p["explicit"]))
    if case["spare_owner"]:
        await store.set_role(ws, ROOT, "U-spare", Role.OWNER)
    for user, p in users:
        if p["blocked"]:
            await store.set_blocked(ws, ROOT, user, True)
    if case["default"] != "guest":
        await store.update_settings(ws, ROOT, {"default_role": Role.parse(case["default"])})
    if case["action"] == "set_mapping" and case["target"] is not None:
        await store.set_role_mapping(ws, ROOT, "R-x", Role.parse(case["target"]))

    actor = Actor("U-actor", facts(actor_p))
    target = "U-actor" if self_target else "U-target"
    target_facts = facts(actor_p if self_target else target_p) if target_p is not None else None
    before = await store.membership(ws, target)
    match case["action"]:
        case "set_role":
            code = await outcome(store.set_role(ws, actor, target, role(case["value"]), target_facts=target_facts))
            after = await store.membership(ws, target)
            expected_role = role(case["value"]) if code == "ok" else (before.role if before else None)
            assert (after.role if after else None) == expected_role, case["id"]
        case "set_blocked":
            code = await outcome(store.set_blocked(ws, actor, target, case["value"], target_facts=target_facts))
            after = await store.membership(ws, target)
            expected_block = case["value"] if code == "ok" else bool(before and before.blocked)
            assert bool(after and after.blocked) == expected_block, case["id"]
        case "set_default":
            code = await outcome(store.update_settings(ws, actor, {"default_role": Role.parse(case["value"])}))
            now = (await store.settings(ws)).default_role
            assert now is Role.parse(case["value"] if code == "ok" else case["default"]), case["id"]
        case "set_mapping":
            code = await outcome(store.set_role_mapping(ws, actor, "R-x", role(case["value"])))
            now_mapped = (await store.role_mappings(ws)).get("R-x")
            assert now_mapped == role(case["value"] if code == "ok" else case["target"]), case["id"]
        case other:
            raise AssertionError(f"unknown action {other}")
    return code


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with STORES[request.param](tmp_path, request) as implementation:
        yield implementation


async def test_every_case_on_this_store(store: Store, request: pytest.FixtureRequest) -> None:
    # convex-test's in-memory tables scan: the Convex server starts empty for each row (one at a time).
    server = request.getfixturevalue("convex_server") if isinstance(store, ConvexStore) else None
    gate = asyncio.Semaphore(1 if server else 16)

    async def one(i: int, case: dict[str, Any]) -> tuple[str, str, str] | None:
        async with gate:
            if server is not None:
                await asyncio.to_thread(server.reset)
            got = await run_case(store, i, case)
        return None if got == case["expect"] else (case["id"], case["expect"], got)

    results = await asyncio.gather(*(one(i, c) for i, c in enumerate(DOC["cases"])))
    wrong = [r for r in results if r is not None]
    assert wrong == [], f"{len(wrong)} of {len(results)} cases disagree: {wrong[:10]}"
