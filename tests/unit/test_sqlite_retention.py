"""Rows that only serve a reply (reply controls, Stops) are pruned in the embedded store once older
than the rule book's retention, a few at a time by the writes that add such rows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef
from core.policy import RETENTION
from core.stores import sqlite_controls, sqlite_stops
from core.stores.controls import ReplyControl
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_controls import SqliteControls
from core.stores.sqlite_stops import SqliteStops

WS = WorkspaceRef(Platform.SLACK, "T1")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


async def test_reply_controls_and_stops_are_pruned_after_their_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(sqlite_controls, "time", clock)
    monkeypatch.setattr(sqlite_stops, "time", clock)
    store = await SqliteStore.open(tmp_path / "s.sqlite")
    controls, stops = SqliteControls(store), SqliteStops(store)

    async def streaming(ref: str) -> None:
        thread = await store.thread_for(WS, "C1", ref)
        reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
        await stops.streaming(WS, ref, reply, "U1")

    def kept(ref: str) -> ReplyControl:
        return ReplyControl(ref, "U1", "q", "{}", "complete", "a")

    async def stop_refs() -> list[str]:
        return await store._read(lambda db: [r[0] for r in db.execute("SELECT ref FROM reply_stops ORDER BY ref")])

    await controls.put_control(WS, kept("old"))
    await streaming("old")
    clock.now += RETENTION["reply_stops_s"] + 1  # a day on: the Stop row goes, the controls stay
    await streaming("new")
    await controls.put_control(WS, kept("new"))
    assert await stop_refs() == ["new"]
    assert await controls.control(WS, "old") is not None
    clock.now += RETENTION["reply_controls_s"] - RETENTION["reply_stops_s"]  # past the controls' retention
    await controls.put_control(WS, kept("newest"))
    assert await controls.control(WS, "old") is None
    assert await controls.control(WS, "new") is not None and await controls.control(WS, "newest") is not None
    await store.close()
