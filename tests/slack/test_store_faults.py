"""Store faults through the real Bolt app and core, the loopback Slack and Anthropic, the embedded store:
a locked SQLite file, a store that fails after the claim, a restart with a question kept in the outbox.
Each question is kept on disk before the user is told so, answered exactly once on a fresh reply surface,
and every stream the retry starts is stopped."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from core.app import ChatCore, build_core
from core.config import Settings
from core.pipeline import STORE_DOWN_NOTICE
from core.stores.base import StoreUnavailable
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack
from tests.slack.conftest import Harness, make_bot, serve

DM_THREAD = {"type": "message", "channel_type": "im", "user": "U1", "channel": "D1", "thread_ts": "1700001000.000100"}


def settings(data_dir: Path, anthropic: FakeAnthropic) -> Settings:
    return Settings(
        CHATBOT_DATA_DIR=data_dir,
        ANTHROPIC_API_KEY="test",
        ANTHROPIC_BASE_URL=anthropic.url,
        CHATBOT_OUTBOX_RETRY_S=0.2,
    )


@asynccontextmanager
async def running(core: ChatCore, slack: FakeSlack, *, native: bool = True) -> AsyncIterator[Harness]:
    """The bot as `chatbot slack` runs it: recovery attached and started."""
    bot = make_bot(core, slack, native_streaming=native)
    bot.attach_recovery()
    core.start_recovery()
    async for harness in serve(bot, slack):
        yield harness


async def until(condition: Callable[[], bool], limit_s: float, what: str) -> None:
    for _ in range(int(limit_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {limit_s}s")


def notices(slack: FakeSlack) -> list[str]:
    return [str(c.args.get("text")) for c in slack.calls_to("chat.postEphemeral")]


def assert_answered_once(slack: FakeSlack, anthropic: FakeAnthropic, channel: str = "D1") -> None:
    [reply] = slack.replies_in(channel)
    assert not reply.streaming
    assert "Here is what I found" in slack.shown_text(reply)
    assert len(anthropic.requests) == 1
    # Every stream started was stopped (the issue: 1 startStream, 3 appendStream, 0 stopStream).
    assert len(slack.calls_to("chat.startStream")) == len(slack.calls_to("chat.stopStream"))


async def test_a_locked_sqlite_file_keeps_the_question_and_answers_it_once(
    data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    core = await build_core(settings(data_dir, fake_anthropic))
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:  # another process's long write transaction, past the 10 s busy timeout
        db = sqlite3.connect(data_dir / "chatbot.sqlite", isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        db.execute("ROLLBACK")
        db.close()

    holder = asyncio.get_running_loop().run_in_executor(None, hold_lock)
    try:
        async with running(core, slack) as h:
            await asyncio.to_thread(locked.wait, 5)
            reply = await h.event({**DM_THREAD, "text": "where is the runbook?", "ts": "1700001001.000100"})
            assert reply.status == 200
            await until(lambda: any(STORE_DOWN_NOTICE in n for n in notices(slack)), 20, "the user was told")
            assert [q.message.text for q in await core.outbox.pending()] == ["where is the runbook?"]
            assert not slack.replies_in("D1")
            release.set()
            await holder
            await until(lambda: bool(slack.calls_to("chat.stopStream")), 20, "the kept question was answered")
            await until(lambda: not core.pipeline.recovery.live, 5, "the reply ended")  # type: ignore[union-attr]
            await h.settle()
            assert_answered_once(slack, fake_anthropic)
            assert await core.outbox.pending() == []
            assert not h.bot.errors, list(h.bot.errors)
    finally:
        release.set()
        await core.close()


async def test_a_store_failing_after_the_claim_still_answers_once(
    data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = await build_core(settings(data_dir, fake_anthropic))
    real = core.store.thread_for
    failures = 0

    async def thread_for_failing_once(*args: Any, **kwargs: Any) -> str:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise StoreUnavailable("the store went away right after the claim")
        return await real(*args, **kwargs)

    monkeypatch.setattr(core.store, "thread_for", thread_for_failing_once)
    try:
        async with running(core, slack) as h:
            assert (await h.event({**DM_THREAD, "text": "how do I deploy?", "ts": "1700001002.000100"})).status == 200
            await until(lambda: bool(slack.calls_to("chat.stopStream")), 20, "the kept question was answered")
            await until(lambda: not core.pipeline.recovery.live, 5, "the reply ended")  # type: ignore[union-attr]
            await h.settle()
            assert failures == 1
            assert any(STORE_DOWN_NOTICE in n for n in notices(slack))
            kept = await core.outbox.pending()
            assert kept == []  # the retry recognized the claim as its own, answered, and let it go
            assert_answered_once(slack, fake_anthropic)
    finally:
        await core.close()


async def test_a_question_kept_before_a_restart_is_answered_by_the_next_run(
    data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await build_core(settings(data_dir, fake_anthropic))

    async def unreachable(*args: Any, **kwargs: Any) -> bool:
        raise StoreUnavailable("the store is down for this whole run")

    monkeypatch.setattr(first.store, "claim_event", unreachable)
    try:
        async with running(first, slack) as h:
            assert (await h.event({**DM_THREAD, "text": "who is on call?", "ts": "1700001003.000100"})).status == 200
            await until(lambda: any(STORE_DOWN_NOTICE in n for n in notices(slack)), 20, "the user was told")
            await asyncio.sleep(0.5)  # a few more rounds: still down, still kept
            assert len(await first.outbox.pending()) == 1
    finally:
        await first.close()
    assert not slack.replies_in("D1") and fake_anthropic.requests == []

    started = time.monotonic()
    second = await build_core(settings(data_dir, fake_anthropic))
    try:
        async with running(second, slack) as h:
            await until(lambda: bool(slack.calls_to("chat.stopStream")), 20, "the next run answered it")
            await until(lambda: not second.pipeline.recovery.live, 5, "the reply ended")  # type: ignore[union-attr]
            await h.settle()
            assert_answered_once(slack, fake_anthropic)
            assert fake_anthropic.last_request["messages"][-1]["content"] == "who is on call?"
            assert await second.outbox.pending() == []
    finally:
        await second.close()
    assert time.monotonic() - started < 60
