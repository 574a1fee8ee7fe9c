"""Who goes first when replies share a budget: the stalest text, with a head start for a reply's last
text and none for what a full message leaves to the next one; a Stop before everything.

When many replies finish together on one shared budget (Discord's global 50/s), finals ahead of
everything froze the replies still streaming for seconds; and a continuation part that kept the
age of text its previous part had already shown jumped the queue the same way.
"""

from __future__ import annotations

import asyncio

from core.messages import ReplyStatus
from core.pacing import EditScheduler
from core.streaming import FINAL_BOOST_S, ReplyStreamer
from core.surface import RateScope
from tests.unit.test_streaming import FakeSurface
from tests.unit.test_streaming_clock import VirtualClock


async def _order(scheduler: EditScheduler, clock: VirtualClock, waits: dict[str, dict[str, object]]) -> list[str]:
    scope = [RateScope("ws", 1.0, 1.0)]
    await scheduler.acquire(scope)  # spend the only token: everyone below waits
    order: list[str] = []

    async def wait(name: str, options: dict[str, object]) -> None:
        await scheduler.acquire(scope, **options)  # type: ignore[arg-type]
        order.append(name)

    tasks = [asyncio.create_task(wait(name, options)) for name, options in waits.items()]
    await clock.advance(len(waits) + 1.5)
    await asyncio.gather(*tasks)
    return order


async def test_a_non_urgent_final_waits_behind_a_much_staler_interim_but_beats_a_fresh_one() -> None:
    clock = VirtualClock()
    t0 = clock.now()
    order = await _order(
        EditScheduler(clock),
        clock,
        {
            "interim-fresh": {"since": t0 - 0.5},
            "final-done": {"final": True, "urgent": False, "since": t0 - 1.0 - FINAL_BOOST_S},
            "interim-stale": {"since": t0 - 5.0},
            "stop": {"final": True, "since": t0},  # urgent by default
        },
    )
    assert order == ["stop", "interim-stale", "final-done", "interim-fresh"]


async def test_a_replys_first_words_go_before_another_replys_last_text_but_a_stop_goes_first() -> None:
    for status, first in ((ReplyStatus.COMPLETE, "waiting"), (ReplyStatus.CANCELLED, "finishing")):
        clock = VirtualClock()
        scheduler = EditScheduler(clock)
        ws = RateScope("ws", 0.5, 1.0)
        finishing = FakeSurface(clock, [RateScope("a", 10.0), ws], latency=0.01)
        waiting = FakeSurface(clock, [RateScope("b", 10.0), ws], latency=0.01)
        done = ReplyStreamer(finishing, scheduler)
        await done.start()
        done.feed("the answer so far")
        await clock.advance(5)  # shown; the shared budget is full again
        await scheduler.acquire([ws])  # and now spent: the next token comes in 2 s
        done.feed(" and its end")
        live = ReplyStreamer(waiting, scheduler)
        await live.start()
        live.feed("first words")  # nothing shown of this reply yet
        finish = asyncio.create_task(done.finish(status))
        await clock.advance(5)
        await finish
        calls = sorted([(c.at, "finishing") for c in finishing.calls[1:]] + [(c.at, "waiting") for c in waiting.calls])
        assert calls[0][1] == first, (status, calls)
        await clock.run_until(lambda shown=waiting.shown: shown.get("m1") == "first words")


async def test_what_a_full_message_leaves_for_the_next_lags_from_its_own_arrival() -> None:
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    ws = RateScope("ws", 0.5, 1.0)
    long_surface = FakeSurface(clock, [RateScope("a", 10.0), ws], latency=0.01, max_chars=40)
    other_surface = FakeSurface(clock, [RateScope("b", 10.0), ws], latency=0.01)
    long, other = ReplyStreamer(long_surface, scheduler), ReplyStreamer(other_surface, scheduler)
    for streamer, text in ((long, "aaa "), (other, "zzz ")):
        await streamer.start()
        streamer.feed(text)
    await clock.advance(20)  # both shown, the budget full again
    t0 = clock.now()
    long.feed("aaaa " * 3)  # shown at once: the shared token is there
    await clock.advance(0.5)
    long.feed("bbbb " * 4)  # fills the first message (40 characters)
    await clock.advance(0.5)
    other.feed("yyy ")  # lags from t0 + 1.0
    await clock.advance(0.5)
    long.feed("cccc " * 4)  # the next message's text, from t0 + 1.5
    # t0 + 2: the long reply's text from t0 + 0.5 goes first and fills its first message; at t0 + 4
    # what is left for its second message is younger than the other reply's text, which goes first.
    await clock.advance(6)
    edits = sorted(
        [(c.at, "long " + c.op) for c in long_surface.calls if c.at > t0 + 0.1]
        + [(c.at, "other " + c.op) for c in other_surface.calls if c.at > t0]
    )
    assert [name for _, name in edits][:3] == ["long edit", "other edit", "long post"], edits
    assert long_surface.shown["m1"].endswith("bbbb ") and long_surface.shown["m2"].startswith("cccc")
    for streamer in (long, other):
        task = asyncio.create_task(streamer.finish(ReplyStatus.COMPLETE))
        await clock.run_until(task.done)
