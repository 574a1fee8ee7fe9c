"""Issue #11's attack classes 3-7, tried against every store through its public calls.

Each test names its class; each fails if the store's check for it is removed.
"""

from __future__ import annotations

import math

import pytest

from core.messages import Actor, MessageRole, Platform, PlatformFacts, ReplyStatus, Source, Usage, WorkspaceRef
from core.roles import Role
from core.stores.base import ChannelMode, ChannelRule, Delta, DocumentRecord, Store, StoreError
from tests.contract.test_store_contract import OWNER, WS, actions, invalid

B = WorkspaceRef(Platform.SLACK, "T-victim")
B_OWNER = Actor("U-b-owner", PlatformFacts(is_owner=True))


async def refused(call: object, code: str) -> None:
    with pytest.raises(StoreError) as info:
        await call  # type: ignore[misc]
    assert info.value.code == code, info.value


async def rejected(call: object) -> None:
    """Refused as invalid; a number JSON cannot carry (NaN, infinity) never leaves the Convex client at all,
    and the function's own check is tested in convex/tests/attacks.test.ts."""
    with pytest.raises((StoreError, ValueError)) as info:
        await call  # type: ignore[misc]
    assert not isinstance(info.value, StoreError) or info.value.code == "invalid", info.value


async def streaming(store: Store, ws: WorkspaceRef = WS, name: str = "t") -> tuple[str, str]:
    thread = await store.thread_for(ws, "C1", name)
    return thread, await store.add_message(ws, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)


# -- class 3: replies move only forward, are bounded, and only the bot's are completed ---------------


async def test_class3_a_finished_reply_is_not_reopened_or_rewritten(store: Store) -> None:
    _, reply = await streaming(store)
    await store.complete_message(WS, reply, text="the answer", status=ReplyStatus.COMPLETE)
    await store.complete_message(WS, reply, text="the answer", status=ReplyStatus.COMPLETE)  # a retry: no-op
    await refused(store.complete_message(WS, reply, text="rewritten", status=ReplyStatus.COMPLETE), "conflict")
    await refused(store.complete_message(WS, reply, text="the answer", status=ReplyStatus.FAILED), "conflict")
    with pytest.raises((StoreError, ValueError)):
        await store.complete_message(WS, reply, text="reopened", status=ReplyStatus.STREAMING)
    final = await store.message(WS, reply)
    assert final is not None and (final.text, final.status) == ("the answer", ReplyStatus.COMPLETE)


async def test_class3_a_users_message_is_never_completed(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "u")
    question = await store.add_message(WS, thread, MessageRole.USER, "my question")
    await invalid(store.complete_message(WS, question, text="someone else's words", status=ReplyStatus.COMPLETE))
    await invalid(store.add_message(WS, thread, MessageRole.USER, "half", status=ReplyStatus.STREAMING))
    stored = await store.message(WS, question)
    assert stored is not None and stored.text == "my question"


@pytest.mark.parametrize("tokens", [-1, 1.5, math.nan, math.inf, 10_000_001])
async def test_class3_usage_is_a_bounded_whole_number(store: Store, tokens: float) -> None:
    _, reply = await streaming(store)
    for usage in (Usage(tokens, 0), Usage(0, tokens)):  # type: ignore[arg-type]
        await rejected(store.complete_message(WS, reply, text="x", status=ReplyStatus.COMPLETE, usage=usage))
    live = await store.message(WS, reply)
    assert live is not None and live.status is ReplyStatus.STREAMING


@pytest.mark.parametrize(
    "source",
    [
        Source(1, "t" * 501, "https://x", "text"),
        Source(1, "title", "u" * 2_001, "text"),
        Source(1, "title", "https://x", "x" * 10_001),
        Source(1, "title", "https://x", "text", math.nan),
        Source(1, "title", "https://x", "text", math.inf),
        Source(-1, "title", "https://x", "text"),
    ],
)
async def test_class3_sources_are_bounded(store: Store, source: Source) -> None:
    _, reply = await streaming(store)
    await rejected(store.complete_message(WS, reply, text="x", status=ReplyStatus.COMPLETE, sources=[source]))
    live = await store.message(WS, reply)
    assert live is not None and live.status is ReplyStatus.STREAMING


async def test_class3_deltas_have_the_total_bound_of_a_completed_text(store: Store) -> None:
    _, reply = await streaming(store)
    await store.append_deltas([Delta(reply, 0, "x" * 30_000, WS.key)])
    await invalid(store.append_deltas([Delta(reply, 1, "y" * 30_000, WS.key)]))
    await invalid(store.append_deltas([Delta(reply, 1, "y" * 5_000, WS.key), Delta(reply, 2, "z" * 5_001, WS.key)]))
    await store.append_deltas([Delta(reply, 0, "x" * 30_000, WS.key)])  # a retry of the landed one still lands
    await store.append_deltas([Delta(reply, 1, "y" * 10_000, WS.key)])  # exactly the bound
    live = await store.message(WS, reply)
    assert live is not None and len(live.text) == 40_000


# -- class 4: idempotency keys are scoped to their thread, checked after the thread ------------------


async def test_class4_another_threads_key_is_a_new_message(store: Store) -> None:
    one = await store.thread_for(WS, "C1", "one")
    two = await store.thread_for(WS, "C1", "two")
    first = await store.add_message(WS, one, MessageRole.USER, "in one", idempotency_key="k")
    second = await store.add_message(WS, two, MessageRole.USER, "in two", idempotency_key="k")
    assert first != second
    assert [m.text for m in (await store.messages(WS, two)).items] == ["in two"]


async def test_class4_a_known_key_does_not_make_a_missing_thread_exist(store: Store) -> None:
    thread = await store.thread_for(WS, "C1", "real")
    await store.add_message(WS, thread, MessageRole.USER, "q", idempotency_key="known")
    other = await store.thread_for(B, "C1", "elsewhere")
    with pytest.raises(StoreError) as info:
        await store.add_message(WS, other, MessageRole.USER, "q", idempotency_key="known")
    assert info.value.code in {"not_found", "invalid"}


# -- class 5: one validator bounds every workspace key, id and URI ---------------------------------


async def test_class5_huge_workspace_keys_and_uris_write_nothing(store: Store) -> None:
    huge = WorkspaceRef(Platform.SLACK, "T" * 100_000)
    owner = Actor("U-o", PlatformFacts(is_owner=True))
    await invalid(store.set_role(huge, owner, "U-x", Role.CURATOR))
    await invalid(store.set_blocked(huge, owner, "U-x", True))
    await invalid(store.set_role_mapping(huge, owner, "R-1", Role.CURATOR))
    await invalid(store.set_channel_rule(huge, owner, ChannelRule("C1", ChannelMode.DENY)))
    await invalid(store.consume_quota(huge, "U-x", "w", 5))
    await invalid(store.put_document(huge, owner, DocumentRecord("file:///a", "A", "h", 1, "ready")))
    await invalid(store.delete_document(huge, owner, "file:///a"))
    await invalid(store.delete_document(WS, OWNER, "u" * 1_000_000))
    await invalid(store.thread_for(huge, "C1", "t"))
    await invalid(store.update_settings(WS, OWNER, {"model": "m" * 201}))  # the one bound of `model`, both stores
    assert await actions(store) == []


# -- class 6: every call names its workspace; another workspace's ids are not found -----------------


async def test_class6_another_workspaces_threads_and_replies_are_out_of_reach(store: Store) -> None:
    thread, reply = await streaming(store, B, "victim")
    question = await store.add_message(B, thread, MessageRole.USER, "B's secret question")
    await refused(store.messages(WS, thread), "not_found")
    assert await store.message(WS, question) is None
    await refused(store.add_message(WS, thread, MessageRole.USER, "injected"), "not_found")
    await refused(store.complete_message(WS, reply, text="hijacked", status=ReplyStatus.COMPLETE), "not_found")
    await store.append_deltas([Delta(reply, 0, "injected", WS.key)])  # names the wrong workspace: lands nowhere
    live = await store.message(B, reply)
    assert live is not None and (live.text, live.status) == ("", ReplyStatus.STREAMING)
    assert [m.text for m in (await store.messages(B, thread)).items] == ["B's secret question", ""]


async def test_class6_documents_are_per_workspace(store: Store) -> None:
    await store.put_document(B, B_OWNER, DocumentRecord("file:///b.md", "B", "h", 1, "ready"))
    assert await store.document(WS, "file:///b.md") is None
    assert await store.delete_document(WS, OWNER, "file:///b.md") is False
    assert await store.document(B, "file:///b.md") is not None
