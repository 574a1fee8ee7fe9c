"""Optional requests (typing, a placeholder) take budget only when it has slack, never from a reply."""

from __future__ import annotations

import asyncio

from core.messages import ReplyStatus
from core.pacing import Budget, EditScheduler
from core.streaming import ReplyStreamer
from core.surface import PLACEHOLDER, RateScope
from tests.unit.test_streaming import FakeSurface
from tests.unit.test_streaming_clock import VirtualClock

GLOBAL = Budget(50, 1.0, 44.0, 5.0).scope("global")
CHANNEL = Budget(5, 5.0, 1 / 1.02, 1.0).scope("channel")


async def test_an_idle_budget_grants_an_optional_request_and_counts_it() -> None:
    scheduler = EditScheduler(VirtualClock())
    assert scheduler.try_acquire([CHANNEL, GLOBAL])
    assert not scheduler.try_acquire([CHANNEL, GLOBAL]), "the channel's one token is spent"


async def test_a_shared_burst_keeps_a_spare_token_for_replies() -> None:
    scheduler = EditScheduler(VirtualClock())
    granted = sum(scheduler.try_acquire([GLOBAL]) for _ in range(10))
    assert granted == 4  # burst 5: one stays for a reply
    assert scheduler.try_acquire([GLOBAL], spare=0.0)  # what a reply would get at once


async def test_an_optional_request_never_goes_before_a_waiting_reply() -> None:
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    await scheduler.acquire([CHANNEL])
    waiting = asyncio.create_task(scheduler.acquire([CHANNEL]))
    await clock.settle()
    await clock.advance(1.5)  # the channel's token is back, and the reply waiting for it takes it
    assert waiting.done()
    assert not scheduler.try_acquire([CHANNEL])
    late = asyncio.create_task(scheduler.acquire([CHANNEL]))
    await clock.advance(0.2)
    assert not scheduler.try_acquire([CHANNEL]), "a reply is waiting: the optional request is dropped"
    await clock.advance(1.0)
    assert late.done()


async def test_a_scope_never_used_before_grants_at_once_on_the_real_clock() -> None:
    scheduler = EditScheduler()  # the event loop's clock moves between creating a bucket and asking it
    assert scheduler.try_acquire([CHANNEL, GLOBAL])


async def test_no_placeholder_while_the_edit_that_would_follow_it_waits_in_a_congested_budget() -> None:
    # Slack: posts spend a per-channel budget, edits the workspace's Tier 3. With Tier 3 spent, a
    # placeholder would sit until its first words get an edit; the first words make the first post.
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    post, edit = RateScope("post", 1.0, 1.0), RateScope("tier3", 0.1, 3.0)
    for _ in range(3):
        await scheduler.acquire([edit])  # the workspace's burst is spent by other replies
    surface = FakeSurface(clock, [edit], post_scopes=[post], latency=0.01)
    streamer = ReplyStreamer(surface, scheduler)
    await streamer.start()
    await clock.advance(0.5)
    assert surface.calls == [], "no placeholder: its edit could not follow"
    streamer.feed("first words")
    await clock.advance(0.5)
    assert [(c.op, c.text) for c in surface.calls] == [("post", "first words")]
    task = asyncio.create_task(streamer.finish(ReplyStatus.COMPLETE))
    await clock.run_until(task.done)


async def test_a_placeholder_goes_while_both_budgets_have_slack() -> None:
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    post, edit = RateScope("post", 1.0, 1.0), RateScope("tier3", 0.1, 3.0)
    surface = FakeSurface(clock, [edit], post_scopes=[post], latency=0.01)
    streamer = ReplyStreamer(surface, scheduler)
    await streamer.start()
    await clock.advance(0.5)
    assert [(c.op, c.text) for c in surface.calls] == [("post", PLACEHOLDER)]
    task = asyncio.create_task(streamer.finish(ReplyStatus.COMPLETE))
    await clock.run_until(task.done)
