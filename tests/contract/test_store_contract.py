"""The Store contract: every implementation (SQLite, Convex) must pass all of it.

Each role rule is its own test, so removing the check from an implementation fails a test.
"""

from __future__ import annotations

import asyncio

import pytest

from core.messages import Actor, MessageRole, Platform, PlatformFacts, ReplyStatus, Source, Usage, WorkspaceRef
from core.roles import Role
from core.stores.base import (
    ChannelMode,
    ChannelRule,
    Delta,
    DocumentRecord,
    PermissionDenied,
    Store,
    StoreError,
)

WS = WorkspaceRef(Platform.SLACK, "T-contract")
OTHER = WorkspaceRef(Platform.DISCORD, "G-other")
OWNER = Actor("U-owner", PlatformFacts(is_owner=True))
ADMIN = Actor("U-admin", PlatformFacts(is_admin=True))
MEMBER = Actor("U-member")


async def denied(call: object, code: str) -> None:
    with pytest.raises(PermissionDenied) as info:
        await call  # type: ignore[misc]
    assert info.value.code == code, info.value


# -- event claims ---------------------------------------------------------------------------------


async def test_only_the_first_claim_wins(store: Store) -> None:
    assert await store.claim_event("slack:T1:C1:1.0") is True
    assert await store.claim_event("slack:T1:C1:1.0") is False
    assert await store.claim_event("slack:T1:C1:2.0") is True


async def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_event("race") for _ in range(50)))
    assert results.count(True) == 1


# -- threads and messages -------------------------------------------------------------------------


async def test_thread_find_or_create(store: Store) -> None:
    assert await store.find_thread(WS, "C1", "100.1") is None
    thread = await store.thread_for(WS, "C1", "100.1")
    assert await store.thread_for(WS, "C1", "100.1") == thread
    assert await store.find_thread(WS, "C1", "100.1") == thread
    assert await store.thread_for(WS, "C2", "100.1") != thread
    assert await store.thread_for(OTHER, "C1", "100.1") != thread


async def test_idempotent_add_message(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "t")
    first = await store.add_message(thread, MessageRole.USER, "hi", author_id="U1", idempotency_key="k1")
    again = await store.add_message(thread, MessageRole.USER, "hi", author_id="U1", idempotency_key="k1")
    assert first == again
    page = await store.messages(thread)
    assert [m.id for m in page.items] == [first]


async def test_pagination_newest_first_without_gaps(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "long")
    ids = [await store.add_message(thread, MessageRole.USER, f"m{i}") for i in range(120)]
    seen: list[str] = []
    texts: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.messages(thread, limit=25, cursor=cursor)
        seen.extend(m.id for m in page.items)
        texts.extend(m.text for m in page.items)
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert texts[0] == "m119" and texts[-1] == "m0"


async def test_deltas_show_the_reply_growing_then_completion(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "stream")
    reply = await store.add_message(thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await store.append_deltas([Delta(reply, 0, "Hello")])
    await store.append_deltas([Delta(reply, 1, ", wor"), Delta(reply, 2, "ld")])
    live = await store.message(reply)
    assert live is not None and live.text == "Hello, world" and live.status is ReplyStatus.STREAMING
    # a retried batch (same seq) is not appended twice
    await store.append_deltas([Delta(reply, 2, "ld")])
    live = await store.message(reply)
    assert live is not None and live.text == "Hello, world"
    source = Source(1, "Deploys", "file:deploy.md", "text", 1.5)
    await store.complete_message(
        reply,
        text="Hello, world [1]",
        status=ReplyStatus.COMPLETE,
        sources=[source],
        usage=Usage(10, 4),
        platform_message_id="1700.2",
    )
    done = await store.message(reply)
    assert done is not None
    assert (done.text, done.status, done.platform_message_id) == ("Hello, world [1]", ReplyStatus.COMPLETE, "1700.2")
    assert done.sources == (source,) and done.usage == Usage(10, 4)


async def test_stale_streaming_replies_are_found(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "crash")
    reply = await store.add_message(thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await store.append_deltas([Delta(reply, 0, "partial")])
    assert [m.id for m in await store.stale_streaming(3600)] == []
    await asyncio.sleep(0.05)
    stale = await store.stale_streaming(0.01)
    assert [m.id for m in stale] == [reply] and stale[0].text == "partial"


async def test_oversized_text_is_rejected_not_truncated(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "big")
    with pytest.raises(StoreError) as info:
        await store.add_message(thread, MessageRole.USER, "x" * 40_001)
    assert info.value.code == "invalid"
    assert (await store.messages(thread)).items == []


# -- settings, channels, quotas -------------------------------------------------------------------


async def test_settings_round_trip_and_unknown_keys(store: Store) -> None:
    updated = await store.update_settings(
        WS, ADMIN, {"system_prompt": "Be brief.", "guests_may_ask": True, "quotas": {"member": 5}}
    )
    assert updated.system_prompt == "Be brief." and updated.guests_may_ask is True
    current = await store.settings(WS)
    assert current.quotas == {"member": 5} and current.system_prompt == "Be brief."
    assert (await store.settings(OTHER)).system_prompt == ""
    with pytest.raises(StoreError):
        await store.update_settings(WS, ADMIN, {"make_me_king": True})
    with pytest.raises(StoreError):
        await store.update_settings(WS, ADMIN, {"guests_may_ask": "yes please"})


async def test_member_cannot_change_settings(store: Store) -> None:
    await denied(store.update_settings(WS, MEMBER, {"system_prompt": "pwned"}), "forbidden")
    assert (await store.settings(WS)).system_prompt == ""


async def test_channel_rules(store: Store) -> None:
    await store.set_channel_rule(WS, ADMIN, ChannelRule("C-deny", ChannelMode.DENY))
    await store.set_channel_rule(WS, ADMIN, ChannelRule("C-open", ChannelMode.ALLOW, answer_without_mention=True))
    assert await store.channel_rule(WS, "C-deny") == ChannelRule("C-deny", ChannelMode.DENY, False)
    assert await store.channel_rule(WS, "C-none") is None
    assert {r.channel_id for r in await store.channel_rules(WS)} == {"C-deny", "C-open"}
    await denied(store.set_channel_rule(WS, MEMBER, ChannelRule("C-x", ChannelMode.DENY)), "forbidden")


async def test_quota_counts_per_window(store: Store) -> None:
    assert [await store.consume_quota(WS, "U1", "2026112504", 2) for _ in range(3)] == [True, True, False]
    assert await store.consume_quota(WS, "U1", "2026112505", 2) is True
    assert await store.consume_quota(WS, "U2", "2026112504", 2) is True


# -- roles ----------------------------------------------------------------------------------------


async def test_member_cannot_set_roles(store: Store) -> None:
    await denied(store.set_role(WS, MEMBER, "U-x", Role.GUEST), "forbidden")


async def test_admin_grants_roles_below_its_own(store: Store) -> None:
    for role in (Role.CURATOR, Role.MEMBER, Role.GUEST):
        await store.set_role(WS, ADMIN, "U-x", role)
        membership = await store.membership(WS, "U-x")
        assert membership is not None and membership.role is role


async def test_admin_cannot_grant_admin_or_owner(store: Store) -> None:
    await denied(store.set_role(WS, ADMIN, "U-x", Role.ADMIN), "escalation")
    await denied(store.set_role(WS, ADMIN, "U-x", Role.OWNER), "escalation")
    assert await store.membership(WS, "U-x") is None


async def test_admin_cannot_change_a_peer_or_an_owner(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-admin2", Role.ADMIN)
    await denied(store.set_role(WS, ADMIN, "U-admin2", Role.MEMBER), "peer_or_higher")
    await store.set_role(WS, OWNER, "U-owner2", Role.OWNER)
    await denied(store.set_role(WS, ADMIN, "U-owner2", Role.MEMBER), "peer_or_higher")


async def test_nobody_changes_their_own_role(store: Store) -> None:
    await denied(store.set_role(WS, ADMIN, ADMIN.user_id, Role.CURATOR), "self_change")
    await denied(store.set_role(WS, OWNER, OWNER.user_id, Role.ADMIN), "self_change")


async def test_the_last_owner_stays(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-o1", Role.OWNER)
    o1 = Actor("U-o1")
    await store.set_role(WS, o1, "U-o2", Role.OWNER)
    o2 = Actor("U-o2")
    await store.set_role(WS, o2, "U-o1", Role.ADMIN)  # two owners: one may go
    await denied(store.set_role(WS, OWNER, "U-o2", Role.ADMIN), "last_owner")
    membership = await store.membership(WS, "U-o2")
    assert membership is not None and membership.role is Role.OWNER


async def test_blocked_admin_can_do_nothing(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-a2", Role.ADMIN)
    await store.set_blocked(WS, OWNER, "U-a2", True)
    blocked = Actor("U-a2")
    await denied(store.set_role(WS, blocked, "U-x", Role.GUEST), "blocked")
    await denied(store.update_settings(WS, blocked, {"system_prompt": "x"}), "blocked")
    await denied(store.audit_entries(WS, blocked), "blocked")


async def test_role_mapping_grants_curator(store: Store) -> None:
    curator_by_role = Actor("U-mapped", PlatformFacts(role_ids=("R-docs",)))
    record = DocumentRecord("https://x/doc", "Doc", "h", 1, "ready")
    await denied(store.put_document(WS, curator_by_role, record), "forbidden")
    await store.set_role_mapping(WS, ADMIN, "R-docs", Role.CURATOR)
    assert await store.role_mappings(WS) == {"R-docs": Role.CURATOR}
    await store.put_document(WS, curator_by_role, record)
    assert await store.document(WS, "https://x/doc") is not None


async def test_admin_cannot_map_a_role_to_admin(store: Store) -> None:
    await denied(store.set_role_mapping(WS, ADMIN, "R-x", Role.ADMIN), "escalation")
    await denied(store.set_role_mapping(WS, MEMBER, "R-x", Role.GUEST), "forbidden")


# -- documents and audit --------------------------------------------------------------------------


async def test_documents_need_curator(store: Store) -> None:
    record = DocumentRecord("file:///a.md", "A", "abc", 3, "ready")
    await denied(store.put_document(WS, MEMBER, record), "forbidden")
    await store.set_role(WS, ADMIN, "U-cur", Role.CURATOR)
    curator = Actor("U-cur")
    await store.put_document(WS, curator, record)
    stored = await store.document(WS, "file:///a.md")
    assert stored is not None and (stored.content_hash, stored.chunk_count, stored.status) == ("abc", 3, "ready")
    assert [d.source_uri for d in await store.documents(WS)] == ["file:///a.md"]
    assert await store.documents(OTHER) == []
    await denied(store.delete_document(WS, MEMBER, "file:///a.md"), "forbidden")
    await store.delete_document(WS, curator, "file:///a.md")
    assert await store.document(WS, "file:///a.md") is None


async def test_audit_needs_admin_and_is_newest_first(store: Store) -> None:
    await store.set_role(WS, ADMIN, "U-1", Role.CURATOR)
    await store.audit(WS, "U-9", "refused", "quota")
    entries = await store.audit_entries(WS, ADMIN, limit=10)
    assert [e.action for e in entries][:2] == ["refused", "role.set"]
    assert entries[1].actor_id == ADMIN.user_id
    await denied(store.audit_entries(WS, MEMBER), "forbidden")
    assert await store.audit_entries(OTHER, Actor("U-o", PlatformFacts(is_owner=True))) == []
