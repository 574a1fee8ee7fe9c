"""The Store contract: every implementation (SQLite, Convex) must pass all of it.

Each role rule is its own test, so removing the check from an implementation fails a test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace

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


async def denied(call: Awaitable[object], code: str) -> None:
    with pytest.raises(PermissionDenied) as info:
        await call
    assert info.value.code == code, info.value


async def invalid(call: Awaitable[object]) -> None:
    with pytest.raises(StoreError) as info:
        await call
    assert info.value.code == "invalid", info.value
    assert not isinstance(info.value, PermissionDenied)


async def actions(store: Store, ws: WorkspaceRef = WS) -> list[str]:
    """The audit trail, oldest first, read as the platform owner."""
    return [e.action for e in reversed(await store.audit_entries(ws, OWNER, limit=500))]


# -- event claims ---------------------------------------------------------------------------------


async def test_only_the_first_claim_wins(store: Store) -> None:
    assert await store.claim_event("slack:T1:C1:1.0") is True
    assert await store.claim_event("slack:T1:C1:1.0") is False
    assert await store.claim_event("slack:T1:C1:2.0") is True


async def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_event("race") for _ in range(50)))
    assert results.count(True) == 1


async def test_concurrent_claims_of_many_keys_each_have_one_winner(store: Store) -> None:
    keys = [f"k{i % 10}" for i in range(50)]
    results = await asyncio.gather(*(store.claim_event(k) for k in keys))
    winners = [k for k, won in zip(keys, results, strict=True) if won]
    assert sorted(winners) == sorted(set(keys))


# -- threads and messages -------------------------------------------------------------------------


async def test_thread_find_or_create(store: Store) -> None:
    assert await store.find_thread(WS, "C1", "100.1") is None
    thread = await store.thread_for(WS, "C1", "100.1")
    assert await store.thread_for(WS, "C1", "100.1") == thread
    assert await store.find_thread(WS, "C1", "100.1") == thread
    assert await store.thread_for(WS, "C2", "100.1") != thread
    assert await store.thread_for(OTHER, "C1", "100.1") != thread


async def test_concurrent_thread_for_creates_one_thread(store: Store) -> None:
    ids = await asyncio.gather(*(store.thread_for(WS, "C1", "busy") for _ in range(20)))
    assert len(set(ids)) == 1


async def test_idempotent_add_message(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "t")
    first = await store.add_message(WS, thread, MessageRole.USER, "hi", author_id="U1", idempotency_key="k1")
    again = await store.add_message(WS, thread, MessageRole.USER, "hi", author_id="U1", idempotency_key="k1")
    assert first == again
    page = await store.messages(WS, thread)
    assert [m.id for m in page.items] == [first]


async def test_concurrent_retries_of_one_message_store_it_once(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "retry")
    ids = await asyncio.gather(
        *(store.add_message(WS, thread, MessageRole.USER, "q", idempotency_key="retry-1") for _ in range(20))
    )
    assert len(set(ids)) == 1
    assert [m.id for m in (await store.messages(WS, thread)).items] == [ids[0]]


async def test_messages_are_kept_per_thread(store: Store) -> None:
    one = await store.thread_for(WS, "C1", "one")
    two = await store.thread_for(WS, "C1", "two")
    first = await store.add_message(WS, one, MessageRole.USER, "in one", author_id="U1")
    await store.add_message(WS, two, MessageRole.USER, "in two")
    page = await store.messages(WS, one)
    assert [(m.id, m.text, m.author_id, m.role) for m in page.items] == [(first, "in one", "U1", MessageRole.USER)]
    assert page.cursor is None
    stored = await store.message(WS, first)
    assert stored is not None and stored.thread_id == one and stored.status is ReplyStatus.COMPLETE


async def test_pagination_newest_first_without_gaps(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "long")
    ids = [await store.add_message(WS, thread, MessageRole.USER, f"m{i}") for i in range(120)]
    seen: list[str] = []
    texts: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.messages(WS, thread, limit=25, cursor=cursor)
        seen.extend(m.id for m in page.items)
        texts.extend(m.text for m in page.items)
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert texts[0] == "m119" and texts[-1] == "m0"


async def test_pages_that_end_exactly_on_the_last_message(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "even")
    ids = [await store.add_message(WS, thread, MessageRole.USER, f"m{i}") for i in range(6)]
    first = await store.messages(WS, thread, limit=3)
    assert [m.id for m in first.items] == ids[:2:-1] and first.cursor is not None
    second = await store.messages(WS, thread, limit=3, cursor=first.cursor)
    assert [m.id for m in second.items] == ids[2::-1]
    if second.cursor is not None:  # an implementation may not know it is at the end: then the next page is empty
        assert (await store.messages(WS, thread, limit=3, cursor=second.cursor)).items == []


async def test_deltas_show_the_reply_growing_then_completion(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "stream")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await store.append_deltas([Delta(reply, 0, "Hello", WS.key)])
    await store.append_deltas([Delta(reply, 1, ", wor", WS.key), Delta(reply, 2, "ld", WS.key)])
    live = await store.message(WS, reply)
    assert live is not None and live.text == "Hello, world" and live.status is ReplyStatus.STREAMING
    # a retried batch (same seq) is not appended twice
    await store.append_deltas([Delta(reply, 2, "ld", WS.key)])
    live = await store.message(WS, reply)
    assert live is not None and live.text == "Hello, world"
    source = Source(1, "Deploys", "file:deploy.md", "text", 1.5)
    await store.complete_message(
        WS,
        reply,
        text="Hello, world [1]",
        status=ReplyStatus.COMPLETE,
        sources=[source],
        usage=Usage(10, 4),
        platform_message_id="1700.2",
    )
    done = await store.message(WS, reply)
    assert done is not None
    assert (done.text, done.status, done.platform_message_id) == ("Hello, world [1]", ReplyStatus.COMPLETE, "1700.2")
    assert done.sources == (source,) and done.usage == Usage(10, 4)


async def test_a_delta_flushed_after_completion_changes_nothing(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "late")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await store.append_deltas([Delta(reply, 0, "Hel", WS.key)])
    await store.complete_message(WS, reply, text="Hello.", status=ReplyStatus.COMPLETE)
    await store.append_deltas([Delta(reply, 1, "lo", WS.key)])
    done = await store.message(WS, reply)
    assert done is not None and (done.text, done.status) == ("Hello.", ReplyStatus.COMPLETE)


async def test_failed_reply_keeps_its_partial_text(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "cut")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await store.append_deltas([Delta(reply, 0, "half an answer", WS.key)])
    await store.complete_message(WS, reply, text="half an answer [cut off]", status=ReplyStatus.FAILED)
    done = await store.message(WS, reply)
    assert done is not None and (done.text, done.status) == ("half an answer [cut off]", ReplyStatus.FAILED)


async def test_stale_streaming_replies_are_found(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "crash")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await store.append_deltas([Delta(reply, 0, "partial", WS.key)])
    assert [m.reply_id for m in await store.stale_streaming(3600)] == []
    await asyncio.sleep(0.05)
    stale = await store.stale_streaming(0.01)
    # The sweep across workspaces says which reply of which workspace, not what it says.
    assert [(m.reply_id, m.workspace) for m in stale] == [(reply, WS.key)] and not hasattr(stale[0], "text")
    found = await store.message(WS, reply)  # read within its workspace
    assert found is not None and found.text == "partial"
    await store.complete_message(WS, reply, text="partial", status=ReplyStatus.FAILED)
    assert list(await store.stale_streaming(0.0)) == []


async def test_oversized_text_is_rejected_not_truncated(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "big")
    await store.add_message(WS, thread, MessageRole.USER, "x" * 40_000)  # the limit itself is fine
    await invalid(store.add_message(WS, thread, MessageRole.USER, "x" * 40_001))
    assert [len(m.text) for m in (await store.messages(WS, thread)).items] == [40_000]


async def test_oversized_reply_parts_are_rejected(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "big-reply")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await invalid(store.append_deltas([Delta(reply, 0, "x" * 40_001, WS.key)]))
    await invalid(store.complete_message(WS, reply, text="x" * 40_001, status=ReplyStatus.COMPLETE))
    live = await store.message(WS, reply)
    assert live is not None and (live.text, live.status) == ("", ReplyStatus.STREAMING)


async def test_oversized_ids_are_rejected(store: Store) -> None:
    long_id = "u" * 201
    await invalid(store.set_role(WS, ADMIN, long_id, Role.GUEST))
    await invalid(store.thread_for(WS, long_id, "t"))
    await invalid(store.claim_event("k" * 601))
    await invalid(store.set_channel_rule(WS, ADMIN, ChannelRule(long_id, ChannelMode.DENY)))
    await invalid(store.set_role_mapping(WS, ADMIN, long_id, Role.GUEST))
    await invalid(store.put_document(WS, ADMIN, DocumentRecord("u" * 2_001, "T", "h", 1, "ready")))
    assert await store.members(WS) == [] and await store.channel_rules(WS) == []


# -- settings, channels, quotas -------------------------------------------------------------------


async def test_settings_round_trip_and_unknown_keys(store: Store) -> None:
    updated = await store.update_settings(
        WS, ADMIN, {"system_prompt": "Be brief.", "guests_may_ask": True, "quotas": {"member": 5}}
    )
    assert updated.system_prompt == "Be brief." and updated.guests_may_ask is True
    current = await store.settings(WS)
    assert current.quotas == {"member": 5} and current.system_prompt == "Be brief."
    assert (await store.settings(OTHER)).system_prompt == ""
    await invalid(store.update_settings(WS, ADMIN, {"make_me_king": True}))
    await invalid(store.update_settings(WS, ADMIN, {"guests_may_ask": "yes please"}))
    await invalid(store.update_settings(WS, ADMIN, {"system_prompt": "x" * 8_001}))
    await invalid(store.update_settings(WS, ADMIN, {"quotas": {"member": -1}}))
    await invalid(store.update_settings(WS, ADMIN, {"default_role": 99}))
    assert (await store.update_settings(WS, ADMIN, {"threads": "never"})).threads == "never"
    await invalid(store.update_settings(WS, ADMIN, {"threads": "sometimes"}))
    assert (await store.settings(WS)).threads == "never"
    # a refused change leaves every field as it was (no partial update)
    await invalid(store.update_settings(WS, ADMIN, {"system_prompt": "half", "model": 7}))
    assert (await store.settings(WS)).system_prompt == "Be brief."


async def test_default_role_applies_to_users_without_a_row(store: Store) -> None:
    record = DocumentRecord("file:///d.md", "D", "h", 1, "ready")
    await denied(store.put_document(WS, Actor("U-anyone"), record), "forbidden")
    await store.update_settings(WS, OWNER, {"default_role": Role.CURATOR})
    assert (await store.settings(WS)).default_role is Role.CURATOR
    await store.put_document(WS, Actor("U-anyone"), record)


async def test_member_cannot_change_settings(store: Store) -> None:
    await denied(store.update_settings(WS, MEMBER, {"system_prompt": "pwned"}), "forbidden")
    assert (await store.settings(WS)).system_prompt == ""


async def test_curator_cannot_change_settings_channels_or_roles(store: Store) -> None:
    await store.set_role(WS, ADMIN, "U-cur", Role.CURATOR)
    curator = Actor("U-cur")
    await denied(store.update_settings(WS, curator, {"system_prompt": "pwned"}), "forbidden")
    await denied(store.set_channel_rule(WS, curator, ChannelRule("C-x", ChannelMode.DENY)), "forbidden")
    await denied(store.set_role(WS, curator, "U-x", Role.GUEST), "forbidden")
    await denied(store.set_role_mapping(WS, curator, "R-x", Role.GUEST), "forbidden")
    await denied(store.audit_entries(WS, curator), "forbidden")
    assert (await store.settings(WS)).system_prompt == "" and await store.channel_rules(WS) == []


async def test_channel_rules(store: Store) -> None:
    await store.set_channel_rule(WS, ADMIN, ChannelRule("C-deny", ChannelMode.DENY))
    await store.set_channel_rule(WS, ADMIN, ChannelRule("C-open", ChannelMode.ALLOW, answer_without_mention=True))
    assert await store.channel_rule(WS, "C-deny") == ChannelRule("C-deny", ChannelMode.DENY, False)
    assert await store.channel_rule(WS, "C-none") is None
    assert await store.channel_rule(WS, "C-open") == ChannelRule("C-open", ChannelMode.ALLOW, True)
    assert {r.channel_id for r in await store.channel_rules(WS)} == {"C-deny", "C-open"}
    assert await store.channel_rules(OTHER) == []
    await store.set_channel_rule(WS, ADMIN, ChannelRule("C-deny", ChannelMode.ALLOW))
    assert await store.channel_rule(WS, "C-deny") == ChannelRule("C-deny", ChannelMode.ALLOW, False)


async def test_member_cannot_set_channel_rules(store: Store) -> None:
    await denied(store.set_channel_rule(WS, MEMBER, ChannelRule("C-x", ChannelMode.DENY)), "forbidden")
    assert await store.channel_rule(WS, "C-x") is None


async def test_quota_counts_per_window(store: Store) -> None:
    assert [await store.consume_quota(WS, "U1", "2026112504", 2) for _ in range(3)] == [True, True, False]
    assert await store.consume_quota(WS, "U1", "2026112505", 2) is True
    assert await store.consume_quota(WS, "U2", "2026112504", 2) is True
    assert await store.consume_quota(OTHER, "U1", "2026112504", 2) is True
    assert await store.consume_quota(WS, "U3", "2026112504", 0) is False


async def test_concurrent_quota_use_never_exceeds_the_limit(store: Store) -> None:
    results = await asyncio.gather(*(store.consume_quota(WS, "U1", "w", 5) for _ in range(20)))
    assert results.count(True) == 5


# -- roles ----------------------------------------------------------------------------------------


async def test_member_cannot_set_roles(store: Store) -> None:
    await denied(store.set_role(WS, MEMBER, "U-x", Role.GUEST), "forbidden")
    assert await store.membership(WS, "U-x") is None


async def test_platform_admin_is_admin_without_a_row(store: Store) -> None:
    await denied(store.set_role(WS, Actor("U-plat"), "U-x", Role.CURATOR), "forbidden")
    await store.set_role(WS, Actor("U-plat", PlatformFacts(is_admin=True)), "U-x", Role.CURATOR)
    assert await store.membership(WS, "U-plat") is None
    membership = await store.membership(WS, "U-x")
    assert membership is not None and membership.role is Role.CURATOR


async def test_admin_grants_roles_below_its_own(store: Store) -> None:
    await store.update_settings(WS, ADMIN, {"default_role": Role.GUEST})
    for role in (Role.CURATOR, Role.MEMBER, Role.GUEST):
        await store.set_role(WS, ADMIN, "U-x", role)
        membership = await store.membership(WS, "U-x")
        assert membership is not None and membership.role is role


async def test_a_demotion_below_the_default_is_refused_as_changing_nothing(store: Store) -> None:
    await denied(store.set_role(WS, ADMIN, "U-x", Role.GUEST), "no_effect")  # the default member still counts
    assert await store.membership(WS, "U-x") is None
    with pytest.raises(PermissionDenied, match="workspace default role"):
        await store.set_role(WS, ADMIN, "U-x", Role.GUEST)
    platform_admin = PlatformFacts(is_admin=True)
    await denied(store.set_role(WS, OWNER, "U-pa", Role.CURATOR, target_facts=platform_admin), "no_effect")
    assert (await actions(store))[-1] == "refused"


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
    await denied(store.set_role(WS, OWNER, "U-o1", Role.ADMIN), "last_owner")
    await denied(store.set_role(WS, OWNER, "U-o1", None), "last_owner")
    membership = await store.membership(WS, "U-o1")
    assert membership is not None and membership.role is Role.OWNER


async def test_an_owner_makes_another_owner_then_demotes_the_first(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-o1", Role.OWNER)
    await store.set_role(WS, Actor("U-o1"), "U-o2", Role.OWNER)
    await store.set_role(WS, Actor("U-o2"), "U-o1", Role.ADMIN)  # two owners: one may go
    demoted, kept = await store.membership(WS, "U-o1"), await store.membership(WS, "U-o2")
    assert demoted is not None and demoted.role is Role.ADMIN
    assert kept is not None and kept.role is Role.OWNER
    await denied(store.set_role(WS, OWNER, "U-o2", Role.ADMIN), "last_owner")


async def test_admin_blocks_and_unblocks_a_member(store: Store) -> None:
    await store.set_role(WS, ADMIN, "U-m", Role.MEMBER)
    await store.set_blocked(WS, ADMIN, "U-m", True)
    blocked = await store.membership(WS, "U-m")
    assert blocked is not None and blocked.blocked is True and blocked.role is Role.MEMBER
    await store.set_blocked(WS, ADMIN, "U-m", False)
    unblocked = await store.membership(WS, "U-m")
    assert unblocked is not None and unblocked.blocked is False and unblocked.role is Role.MEMBER
    await store.set_blocked(WS, ADMIN, "U-new", True)  # a user the store has not seen yet
    new = await store.membership(WS, "U-new")
    assert new is not None and new.blocked is True


async def test_member_cannot_block(store: Store) -> None:
    await denied(store.set_blocked(WS, MEMBER, "U-x", True), "forbidden")
    assert await store.membership(WS, "U-x") is None


async def test_admin_cannot_block_a_peer_or_an_owner(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-admin2", Role.ADMIN)
    await store.set_role(WS, OWNER, "U-owner2", Role.OWNER)
    await denied(store.set_blocked(WS, ADMIN, "U-admin2", True), "peer_or_higher")
    await denied(store.set_blocked(WS, ADMIN, "U-owner2", True), "peer_or_higher")
    assert {m.user_id: m.blocked for m in await store.members(WS)} == {"U-admin2": False, "U-owner2": False}


async def test_nobody_blocks_themselves(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-a2", Role.ADMIN)
    await denied(store.set_blocked(WS, Actor("U-a2"), "U-a2", True), "self_change")
    await denied(store.set_blocked(WS, OWNER, OWNER.user_id, True), "self_change")


async def test_the_last_owner_cannot_be_blocked(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-o1", Role.OWNER)
    await denied(store.set_blocked(WS, OWNER, "U-o1", True), "last_owner")
    await store.set_role(WS, OWNER, "U-o2", Role.OWNER)
    await store.set_blocked(WS, OWNER, "U-o1", True)  # another owner remains


async def test_blocking_beats_platform_facts(store: Store) -> None:
    await store.set_blocked(WS, OWNER, "U-padmin", True)
    await denied(store.set_role(WS, Actor("U-padmin", PlatformFacts(is_admin=True)), "U-x", Role.GUEST), "blocked")


async def test_blocked_admin_can_do_nothing(store: Store) -> None:
    await store.set_role(WS, OWNER, "U-a2", Role.ADMIN)
    await store.set_blocked(WS, OWNER, "U-a2", True)
    blocked = Actor("U-a2")
    await denied(store.set_role(WS, blocked, "U-x", Role.GUEST), "blocked")
    await denied(store.set_blocked(WS, blocked, "U-x", True), "blocked")
    await denied(store.set_role_mapping(WS, blocked, "R-x", Role.GUEST), "blocked")
    await denied(store.update_settings(WS, blocked, {"system_prompt": "x"}), "blocked")
    await denied(store.set_channel_rule(WS, blocked, ChannelRule("C-x", ChannelMode.DENY)), "blocked")
    record = DocumentRecord("file:///b.md", "B", "h", 1, "ready")
    await denied(store.put_document(WS, blocked, record), "blocked")
    await denied(store.delete_document(WS, blocked, "file:///b.md"), "blocked")
    await denied(store.audit_entries(WS, blocked), "blocked")
    assert await store.membership(WS, "U-x") is None and (await store.settings(WS)).system_prompt == ""


async def test_role_mapping_grants_curator(store: Store) -> None:
    curator_by_role = Actor("U-mapped", PlatformFacts(role_ids=("R-docs",)))
    record = DocumentRecord("https://x/doc", "Doc", "h", 1, "ready")
    await denied(store.put_document(WS, curator_by_role, record), "forbidden")
    await store.set_role_mapping(WS, ADMIN, "R-docs", Role.CURATOR)
    assert await store.role_mappings(WS) == {"R-docs": Role.CURATOR}
    await store.put_document(WS, curator_by_role, record)
    assert await store.document(WS, "https://x/doc") is not None
    await store.set_role_mapping(WS, ADMIN, "R-docs", None)  # removing the mapping takes the power away
    assert await store.role_mappings(WS) == {}
    await denied(store.delete_document(WS, curator_by_role, "https://x/doc"), "forbidden")


async def test_admin_cannot_map_a_role_to_admin(store: Store) -> None:
    await denied(store.set_role_mapping(WS, ADMIN, "R-x", Role.ADMIN), "escalation")
    await denied(store.set_role_mapping(WS, ADMIN, "R-x", Role.OWNER), "escalation")
    assert await store.role_mappings(WS) == {}


async def test_member_cannot_map_roles(store: Store) -> None:
    await denied(store.set_role_mapping(WS, MEMBER, "R-x", Role.GUEST), "forbidden")
    assert await store.role_mappings(WS) == {}


async def test_admin_cannot_change_an_admin_mapping(store: Store) -> None:
    await store.set_role_mapping(WS, OWNER, "R-mods", Role.ADMIN)
    await denied(store.set_role_mapping(WS, ADMIN, "R-mods", Role.GUEST), "peer_or_higher")
    await denied(store.set_role_mapping(WS, ADMIN, "R-mods", None), "peer_or_higher")
    assert await store.role_mappings(WS) == {"R-mods": Role.ADMIN}


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


async def test_audit_limit_keeps_the_newest(store: Store) -> None:
    for i in range(5):
        await store.audit(WS, "U-9", "refused", f"a{i}")
    assert [e.detail for e in await store.audit_entries(WS, ADMIN, limit=2)] == ["a4", "a3"]


async def test_only_refusals_are_recorded_directly(store: Store) -> None:
    await invalid(store.audit(WS, OWNER.user_id, "role.set", "U-x: owner"))
    await invalid(store.audit(WS, "U-9", "settings.update"))
    assert await actions(store) == []


async def test_every_change_is_audited(store: Store) -> None:
    record = DocumentRecord("file:///a.md", "A", "abc", 3, "ready")
    await store.set_role(WS, ADMIN, "U-1", Role.CURATOR)
    await store.set_blocked(WS, ADMIN, "U-2", True)
    await store.set_role_mapping(WS, ADMIN, "R-1", Role.CURATOR)
    await store.update_settings(WS, ADMIN, {"system_prompt": "Hi"})
    await store.set_channel_rule(WS, ADMIN, ChannelRule("C-1", ChannelMode.DENY))
    await store.put_document(WS, ADMIN, record)
    await store.put_document(WS, ADMIN, replace(record, status="ingesting"))  # over a ready one: audited too
    assert await store.delete_document(WS, ADMIN, record.source_uri) is True
    assert await store.delete_document(WS, ADMIN, "file:///never.md") is False  # nothing deleted, nothing audited
    trail = await store.audit_entries(WS, OWNER, limit=500)
    assert len(trail) == 8 and {e.actor_id for e in trail} == {ADMIN.user_id}
    assert [e.action for e in reversed(trail)][5:] == ["document.ready", "document.ingesting", "document.delete"]
    assert [e.action.split(".")[0] for e in reversed(trail)] == [
        "role", "role", "rolemap", "settings", "channel", "document", "document", "document"
    ]  # fmt: skip
    assert "U-1" in trail[-1].detail and "U-2" in trail[-2].detail


async def test_refused_changes_change_nothing_but_are_audited(store: Store) -> None:
    await denied(store.set_role(WS, ADMIN, "U-x", Role.OWNER), "escalation")
    await denied(store.update_settings(WS, MEMBER, {"system_prompt": "x"}), "forbidden")
    await denied(store.put_document(WS, MEMBER, DocumentRecord("file:///x", "X", "h", 1, "ready")), "forbidden")
    trail = list(reversed(await store.audit_entries(WS, OWNER, limit=500)))
    assert [(e.actor_id, e.action, e.detail.split(":")[0]) for e in trail] == [
        (ADMIN.user_id, "refused", "escalation"),
        (MEMBER.user_id, "refused", "forbidden"),
        (MEMBER.user_id, "refused", "forbidden"),
    ]
    assert (await store.settings(WS)).system_prompt == ""
    assert await store.documents(WS) == [] and await store.members(WS) == []
