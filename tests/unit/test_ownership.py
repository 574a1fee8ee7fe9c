"""Reply ownership between two processes on one store: a dead owner's reply is taken over once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef
from core.ownership import ReplyOwnership
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_leases import SqliteLeases

WS = WorkspaceRef(Platform.DISCORD, "G1")


class MarkFailed:
    """Finishes in the store only (the platform part is the fault-handling path's, tested end to end)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.finished: list[str] = []

    async def finish_orphan(self, reply_id: str) -> bool:
        message = await self.store.message(WS, reply_id)
        if message is None or message.status is not ReplyStatus.STREAMING:
            return False
        await self.store.complete_message(WS, reply_id, text=message.text + " [interrupted]", status=ReplyStatus.FAILED)
        self.finished.append(reply_id)
        return True


async def test_a_live_process_takes_over_a_dead_owners_reply_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.sqlite")
    a_leases, b_leases = await SqliteLeases.open(store.path), await SqliteLeases.open(store.path)
    thread = await store.thread_for(WS, "C1", "t")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "half an answer", status=ReplyStatus.STREAMING)
    a = ReplyOwnership(a_leases, platforms=["discord"], heartbeat_s=0.1, stale_s=0.5, sweep_s=0.1)
    b = ReplyOwnership(b_leases, platforms=["discord"], heartbeat_s=0.1, stale_s=0.5, sweep_s=0.1)
    slack_only = ReplyOwnership(b_leases, platforms=["slack"], heartbeat_s=0.1, stale_s=0.5, sweep_s=0.1)
    finisher = MarkFailed(store)
    a.started(reply)
    a.start(finisher)
    b.start(finisher)
    slack_only.start(finisher)
    await asyncio.sleep(1.0)
    assert finisher.finished == []  # a heartbeats: nobody takes it
    await a.stop()  # a dies
    await asyncio.sleep(1.2)
    assert finisher.finished == [reply] and b.taken_over == 1 and slack_only.taken_over == 0
    assert (await store.message(WS, reply)).status is ReplyStatus.FAILED  # type: ignore[union-attr]
    assert await a.heartbeat() == [reply] and not a.owns(reply)  # a, if only paused, must leave it alone
    for part in (b, slack_only):
        await part.stop()
    for closer in (a_leases.close, b_leases.close, store.close):
        await closer()
