"""Reply ownership between two processes on one store: a dead owner's reply is taken over once, and
the old owner, if it was only paused, learns that it lost it. (A Stop asked for a dead owner's reply, on
both stores: tests/contract/test_stops_contract.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef
from core.ownership import ReplyOwnership
from core.stores.base import ThreadStore
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_leases import SqliteLeases

WS = WorkspaceRef(Platform.DISCORD, "G1")


class MarkFailed:
    """Finishes in the store only (finishing on the platform is core.recovery's, tested end to end)."""

    def __init__(self, store: ThreadStore, platforms: tuple[str, ...]) -> None:
        self.store = store
        self.platforms = dict.fromkeys(platforms, object())
        self.live: dict[str, str] = {}
        self.lost: set[str] = set()
        self.finished: list[str] = []
        self.stopped: list[str] = []  # those finished as stopped

    async def finish_orphan(
        self, reply_id: str, ws: WorkspaceRef, *, streaming: bool = True, stopped: bool = False
    ) -> bool:
        assert ws is not None
        message = await self.store.message(ws, reply_id)
        if message is None or message.status is not ReplyStatus.STREAMING:
            return False
        status = ReplyStatus.CANCELLED if stopped else ReplyStatus.FAILED
        await self.store.complete_message(ws, reply_id, text=message.text + f" [{status}]", status=status)
        self.finished.append(reply_id)
        if stopped:
            self.stopped.append(reply_id)
        return True


async def test_a_live_process_takes_over_a_dead_owners_reply_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.sqlite")
    a_leases, b_leases = await SqliteLeases.open(store.path), await SqliteLeases.open(store.path)
    thread = await store.thread_for(WS, "C1", "t")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "half an answer", status=ReplyStatus.STREAMING)
    timing = {"heartbeat_s": 0.1, "stale_s": 0.5, "sweep_s": 0.1}
    here, there, slack_only = (
        MarkFailed(store, ("discord",)),
        MarkFailed(store, ("discord",)),
        MarkFailed(store, ("slack",)),
    )
    a = ReplyOwnership(a_leases, here, **timing)
    b = ReplyOwnership(b_leases, there, **timing)
    c = ReplyOwnership(b_leases, slack_only, **timing)
    here.live[reply] = WS.key
    for part in (a, b, c):
        part.start()
    await asyncio.sleep(1.0)
    assert there.finished == [] and slack_only.finished == []  # a heartbeats: nobody takes it
    await a.stop()  # a dies (or stalls)
    await asyncio.sleep(1.2)
    assert there.finished == [reply] and b.taken_over == 1 and c.taken_over == 0
    assert (await store.message(WS, reply)).status is ReplyStatus.FAILED  # type: ignore[union-attr]
    # a, if it was only paused, learns at its next heartbeat that the reply is no longer its own.
    assert await a.heartbeat() == [reply] and reply in here.lost and reply not in here.live
    for part in (b, c):
        await part.stop()
    for closer in (a_leases.close, b_leases.close, store.close):
        await closer()
