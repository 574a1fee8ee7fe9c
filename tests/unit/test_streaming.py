"""ReplyStreamer and EditScheduler on a virtual clock: pacing, coalescing, priorities, 429s, the final edit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from core.messages import ReplyStatus, Source
from core.pacing import EditScheduler
from core.streaming import CANCELLED_MARKER, ReplyStreamer
from core.surface import PLACEHOLDER, Operation, RateLimited, RateScope
from tests.unit.test_streaming_clock import VirtualClock


@dataclass
class Call:
    at: float  # when the request reached the "platform"
    op: str
    message_id: str
    text: str
    sources: tuple[Source, ...] = ()


@dataclass
class FakeSurface:
    """Records what the platform would show; can be told to fail or rate-limit the next calls."""

    clock: VirtualClock
    scope_list: Sequence[RateScope] = ()
    post_scopes: Sequence[RateScope] | None = None
    max_chars: int = 2000
    latency: float = 0.05
    failures: list[Exception] = field(default_factory=list)  # raised by the next calls, in order
    calls: list[Call] = field(default_factory=list)
    shown: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        if operation == "post" and self.post_scopes is not None:
            return self.post_scopes
        return self.scope_list

    async def _call(self, op: str, message_id: str, text: str, sources: Sequence[Source]) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.clock.sleep(self.latency)
            if self.failures:
                raise self.failures.pop(0)
            assert len(text) <= self.max_chars
            self.calls.append(Call(self.clock.now(), op, message_id, text, tuple(sources)))
            self.shown[message_id] = text
        finally:
            self.in_flight -= 1

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        message_id = f"m{len(self.shown) + 1}"
        await self._call("post", message_id, text, sources)
        return message_id

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        await self._call("edit", message_id, text, sources)

    async def thinking(self) -> None:
        return None

    async def notice(self, text: str) -> None:
        return None

    def visible(self) -> str:
        return "".join(self.shown[k] for k in sorted(self.shown, key=lambda k: int(k[1:])))


def channel(rate: float = 1.0, burst: float = 1.0, key: str = "chan") -> RateScope:
    return RateScope(key, rate, burst)


async def stream_tokens(clock: VirtualClock, streamer: ReplyStreamer, tokens: list[str], every: float) -> None:
    for token in tokens:
        streamer.feed(token)
        await clock.advance(every)


async def finish_on_clock(clock: VirtualClock, streamer: ReplyStreamer, status: ReplyStatus, **kw: object) -> str:
    task = asyncio.create_task(streamer.finish(status, **kw))  # type: ignore[arg-type]
    await clock.run_until(task.done)
    return task.result()


async def test_edits_are_paced_by_the_scope_and_carry_all_text_so_far() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=1.0)])
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    tokens = [f"w{i} " for i in range(50)]
    await stream_tokens(clock, streamer, tokens, every=0.1)  # 5 seconds of text
    final = await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)

    assert final == "".join(tokens)
    times = [c.at for c in surface.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1.0 - 1e-9  # never faster than the scope allows
    assert 5 <= len(surface.calls) <= 8  # ...and not much slower either (coalesced, not one per token)
    for call in surface.calls[1:]:
        assert final.startswith(call.text)  # every edit carries the whole text so far
    assert surface.calls[-1].text == final.strip()
    assert surface.max_in_flight == 1


async def test_deltas_arriving_while_waiting_are_coalesced_into_one_edit() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=0.5)])
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    await clock.advance(0.1)  # the placeholder went out and spent the budget
    assert [c.text for c in surface.calls] == [PLACEHOLDER]
    for i in range(100):
        streamer.feed(f"{i},")
    await clock.advance(1.0)
    assert len(surface.calls) == 1  # still waiting for budget
    await clock.advance(1.5)
    assert len(surface.calls) == 2
    assert surface.calls[1].text == "".join(f"{i}," for i in range(100))


async def test_one_request_in_flight_per_reply_even_with_slow_platform_and_ample_budget() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=100, burst=10)], latency=0.7)
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    await stream_tokens(clock, streamer, ["tok "] * 40, every=0.05)
    await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)
    assert surface.max_in_flight == 1
    assert len(surface.calls) <= 6  # 2 s of tokens, 0.7 s per request: coalesced


async def test_stalest_request_is_granted_first_regardless_of_arrival() -> None:
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    scope = [RateScope("ws", 1.0, 1.0)]
    await scheduler.acquire(scope)  # spend the only token
    order: list[str] = []

    async def wait(name: str, since: float, final: bool = False) -> None:
        await scheduler.acquire(scope, since=since, final=final)
        order.append(name)

    t0 = clock.now()
    tasks = [
        asyncio.create_task(wait("fresh", t0 - 0.1)),
        asyncio.create_task(wait("stalest", t0 - 5.0)),
        asyncio.create_task(wait("stale", t0 - 2.0)),
    ]
    await clock.advance(3.5)
    assert order == ["stalest", "stale", "fresh"]
    await asyncio.gather(*tasks)


async def test_final_edits_beat_interim_edits() -> None:
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    scope = [RateScope("ws", 1.0, 1.0)]
    await scheduler.acquire(scope)
    order: list[str] = []

    async def wait(name: str, since: float, final: bool) -> None:
        await scheduler.acquire(scope, since=since, final=final)
        order.append(name)

    t0 = clock.now()
    tasks = [
        asyncio.create_task(wait("interim-very-stale", t0 - 60, False)),
        asyncio.create_task(wait("final", t0, True)),
    ]
    await clock.advance(2.5)
    assert order == ["final", "interim-very-stale"]
    await asyncio.gather(*tasks)


async def test_the_stalest_reply_keeps_its_claim_on_a_shared_scope() -> None:
    """A reply blocked only by its own channel for a moment is not overtaken on the shared
    workspace budget by a less stale reply from another channel."""
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    ws = RateScope("ws", 1.0, 1.0)
    chan_a, chan_b = RateScope("a", 2.0, 1.0), RateScope("b", 10.0, 1.0)
    await scheduler.acquire([chan_a, ws])  # both scopes empty now; chan_a refills at +0.5, ws at +1.0
    await clock.advance(0.9)  # ws refills at t0+1.0
    order: list[str] = []

    async def wait(name: str, scopes: list[RateScope], since: float) -> None:
        await scheduler.acquire(scopes, since=since)
        order.append(name)

    t0 = clock.now()
    tasks = [
        asyncio.create_task(wait("a-stalest", [chan_a, ws], t0 - 10)),
        asyncio.create_task(wait("b-fresh", [chan_b, ws], t0)),
    ]
    await clock.advance(3)
    assert order == ["a-stalest", "b-fresh"]
    await asyncio.gather(*tasks)


async def test_every_workspace_gets_served_under_a_shared_global_budget() -> None:
    """One workspace with 20 replies and another with one share a global 10/s budget: the lone
    reply is edited about as often as each of the 20 (fair per reply, no starvation)."""
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    glob = RateScope("global", 10.0, 1.0)
    surfaces = [FakeSurface(clock, [RateScope(f"busy:{i}", 1.0), glob], latency=0.01) for i in range(20)]
    lone = FakeSurface(clock, [RateScope("quiet:0", 1.0), glob], latency=0.01)
    streamers = [ReplyStreamer(s, scheduler) for s in [*surfaces, lone]]
    for streamer in streamers:
        await streamer.start()
    for _ in range(100):  # 10 s of tokens
        for streamer in streamers:
            streamer.feed("x")
        await clock.advance(0.1)
    counts = [len(s.calls) for s in surfaces]
    assert len(lone.calls) >= min(counts)
    assert min(counts) >= 0.6 * max(counts)
    total = sum(counts) + len(lone.calls)
    assert total <= 10 * 10.1 + 1  # the global budget held
    for streamer in streamers:
        await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)


async def test_429_is_honored_and_the_rate_halves_then_recovers_gradually() -> None:
    clock = VirtualClock()
    scope = RateScope("ws", 2.0, 1.0)
    surface = FakeSurface(clock, [scope])
    scheduler = EditScheduler(clock, recovery_s=20.0)
    streamer = ReplyStreamer(surface, scheduler)
    t0 = clock.now()
    await streamer.start()
    await clock.advance(0.1)
    surface.failures.append(RateLimited(3.0, "ws"))
    streamer.feed("hello")
    await clock.advance(0.6)  # the edit goes out at t0+0.5 and is answered 429 at t0+0.55
    limited_at = t0 + 0.55
    assert scheduler.rate_limited == 1
    streamer.feed(" world")
    await clock.advance(2.8)
    assert len(surface.calls) == 1  # nothing during Retry-After
    await clock.advance(0.3)
    assert len(surface.calls) == 2 and surface.calls[1].at >= limited_at + 3.0
    assert surface.calls[1].text == "hello world"
    assert scheduler.rate("ws") == pytest.approx(1.0, rel=0.05)  # halved
    await clock.advance(10)
    assert 1.2 < (scheduler.rate("ws") or 0) < 1.8  # climbing back...
    await clock.advance(15)
    assert scheduler.rate("ws") == pytest.approx(2.0)  # ...to the full rate
    await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)


async def test_a_429_without_scope_slows_every_scope_of_the_call() -> None:
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    scopes = [RateScope("c", 4.0), RateScope("g", 8.0)]
    await scheduler.acquire(scopes)
    scheduler.rate_limited_by(scopes, RateLimited(1.0))
    assert scheduler.rate("c") == pytest.approx(2.0) and scheduler.rate("g") == pytest.approx(4.0)


async def test_final_edit_is_retried_with_backoff_until_it_lands() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=5)])
    streamer = ReplyStreamer(surface, EditScheduler(clock), error_backoff_s=0.5)
    await streamer.start()
    streamer.feed("almost done")
    await clock.advance(1)
    surface.failures.extend([ConnectionError("reset"), RuntimeError("500"), RateLimited(1.0, "chan")])
    source = Source(1, "Doc", "https://example.invalid/doc", "text")
    started = clock.now()
    final = await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE, sources=[source])
    assert final == "almost done"
    last = surface.calls[-1]
    assert last.text == "almost done" and last.sources == (source,)
    assert last.at - started >= 0.5 + 1.0 + 1.0  # two backoffs (0.5, 1.0) and Retry-After 1.0


async def test_final_edit_gives_up_after_the_retry_budget() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=5)])
    streamer = ReplyStreamer(surface, EditScheduler(clock), retries=3, error_backoff_s=0.1)
    await streamer.start()
    await clock.advance(0.5)
    streamer.feed("text")
    surface.failures.extend([RuntimeError("down")] * 10)
    task = asyncio.create_task(streamer.finish(ReplyStatus.COMPLETE))
    await clock.run_until(task.done)
    with pytest.raises(RuntimeError):
        task.result()


async def test_a_long_429_storm_does_not_use_up_the_final_edits_retries() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=5)])
    streamer = ReplyStreamer(surface, EditScheduler(clock), retries=3)
    await streamer.start()
    await clock.advance(0.5)
    streamer.feed("the whole answer")
    surface.failures.extend([RateLimited(0.5, "chan")] * 12)  # four times the error budget
    final = await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)
    assert final == "the whole answer"
    assert surface.visible() == "the whole answer"


async def test_a_final_edit_rate_limited_past_its_deadline_gives_up() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=5)])
    streamer = ReplyStreamer(surface, EditScheduler(clock), final_deadline_s=10)
    await streamer.start()
    await clock.advance(0.5)
    streamer.feed("text")
    surface.failures.extend([RateLimited(2.0, "chan")] * 100)
    task = asyncio.create_task(streamer.finish(ReplyStatus.COMPLETE))
    await clock.run_until(task.done)
    with pytest.raises(RateLimited):
        task.result()


async def test_no_edit_lands_after_the_final_one() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=10, burst=2)], latency=0.8)
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    await clock.advance(0.9)  # the placeholder is shown
    streamer.feed("part one")
    await clock.advance(0.1)  # an interim edit is in flight now
    assert surface.in_flight == 1
    task = asyncio.create_task(streamer.finish(ReplyStatus.COMPLETE))
    await clock.settle()
    streamer.feed(" ignored after finish")
    await clock.run_until(task.done)
    await clock.advance(10)
    assert surface.calls[-1].text == "part one"
    final_at = surface.calls[-1].at
    assert all(c.at <= final_at for c in surface.calls)
    assert surface.max_in_flight == 1


async def test_finish_cancels_a_waiting_interim_edit_and_returns_its_budget() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=0.2)])
    scheduler = EditScheduler(clock)
    streamer = ReplyStreamer(surface, scheduler)
    await streamer.start()
    await clock.advance(0.1)
    streamer.feed("waiting for budget")
    await clock.advance(1)
    await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)
    assert [c.text for c in surface.calls] == [PLACEHOLDER, "waiting for budget"]


async def test_failed_reply_ends_with_the_partial_text_and_a_marker() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=2)])
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    streamer.feed("The answer is")
    await clock.advance(1)
    final = await finish_on_clock(clock, streamer, ReplyStatus.FAILED, reason="connection lost")
    assert final.startswith("The answer is") and "cut off: connection lost" in final
    assert surface.calls[-1].text == final


async def test_cancelled_reply_is_marked() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=2)])
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    streamer.feed("Half")
    final = await finish_on_clock(clock, streamer, ReplyStatus.CANCELLED)
    assert final == "Half" + CANCELLED_MARKER
    assert surface.calls[-1].text == final.strip()


async def test_empty_answer_keeps_the_placeholder() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel()])
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)
    assert surface.visible() == PLACEHOLDER


async def test_long_replies_continue_in_new_messages_within_the_limit() -> None:
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=5, burst=2)], max_chars=120)
    streamer = ReplyStreamer(surface, EditScheduler(clock))
    await streamer.start()
    paragraphs = [f"Paragraph {i} " + "word " * 12 + "\n\n" for i in range(6)]
    paragraphs.insert(3, "```python\n" + "".join(f"x{i} = {i}\n" for i in range(30)) + "```\n\n")
    text = "".join(paragraphs)
    await stream_tokens(clock, streamer, [text[i : i + 7] for i in range(0, len(text), 7)], every=0.05)
    final = await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)
    shown = [surface.shown[m] for m in streamer.message_ids]
    assert len(shown) > 3
    assert all(len(c.text) <= 120 for c in surface.calls)
    assert all(m.count("```") % 2 == 0 for m in shown), "every message closes the fences it opens"
    assert words_without_fences("\n".join(shown)) == words_without_fences(final)


def words_without_fences(text: str) -> list[str]:
    return " ".join(line for line in text.split("\n") if not line.strip().startswith("```")).split()


def without_close(text: str) -> str:
    """A message's text without the closing fence line the splitter adds at its end."""
    lines = text.split("\n")
    return "\n".join(lines[:-1]) if len(lines) > 1 and lines[-1].strip().startswith("```") else text


async def test_shown_text_only_grows_and_never_moves_to_the_next_message() -> None:
    """Text near a message's limit is held back until its word is complete; the cut then falls where
    the shown text ends, so nothing a reader saw is rewritten, even where a paragraph break earlier
    in the message would have been the nicer cut."""
    clock = VirtualClock()
    surface = FakeSurface(clock, [channel(rate=20, burst=2)], max_chars=200, latency=0.01)
    streamer = ReplyStreamer(surface, EditScheduler(clock), min_interval_s=0.05)
    await streamer.start()
    text = "Intro line.\n\n" + " ".join(f"word{i}" for i in range(120)) + "\n\n```\n" + "code line\n" * 30 + "```\nEnd."
    await stream_tokens(clock, streamer, [text[i : i + 3] for i in range(0, len(text), 3)], every=0.02)
    final = await finish_on_clock(clock, streamer, ReplyStatus.COMPLETE)
    history: dict[str, list[str]] = {}
    for call in surface.calls:
        if call.text != PLACEHOLDER:
            history.setdefault(call.message_id, []).append(call.text)
    assert len(history) >= 3
    for texts in history.values():
        for before, after in itertools.pairwise(texts):
            assert without_close(after).startswith(without_close(before)), (before, after)
    shown = [surface.shown[m] for m in streamer.message_ids]
    assert all(len(m) <= 200 for m in shown)
    assert words_without_fences("\n".join(shown)) == words_without_fences(final)


async def test_replies_that_never_get_budget_still_finish() -> None:
    """Many replies on one tiny budget: every final text lands, finals first."""
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    ws = RateScope("ws", 2.0, 1.0)
    surfaces = [FakeSurface(clock, [ws], latency=0.02) for _ in range(10)]
    streamers = [ReplyStreamer(s, scheduler) for s in surfaces]
    for streamer in streamers:
        await streamer.start()
    for i in range(30):
        for streamer in streamers:
            streamer.feed(f"{i} ")
        await clock.advance(0.1)
    tasks = [asyncio.create_task(s.finish(ReplyStatus.COMPLETE)) for s in streamers]
    await clock.run_until(lambda: all(t.done() for t in tasks))
    expected = "".join(f"{i} " for i in range(30)).strip()
    assert all(s.visible() == expected for s in surfaces)
