"""DeltaWriter on a virtual clock: one batched store write per tick, one in flight, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.stores.base import Delta, StoreUnavailable
from core.stores.deltas import DeltaWriter
from tests.unit.test_streaming_clock import VirtualClock


@dataclass
class FakeDeltaStore:
    clock: VirtualClock
    latency: float = 0.01
    fail_next: int = 0
    calls: list[tuple[float, list[Delta]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def append_deltas(self, deltas: Sequence[Delta]) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.clock.sleep(self.latency)
            if self.fail_next:
                self.fail_next -= 1
                raise StoreUnavailable("down")
            self.calls.append((self.clock.now(), list(deltas)))
        finally:
            self.in_flight -= 1

    def text_of(self, message_id: str) -> str:
        seen: dict[int, str] = {}
        for _, batch in self.calls:
            for d in batch:
                if d.message_id == message_id:
                    seen.setdefault(d.seq, d.text)
        assert sorted(seen) == list(range(len(seen)))  # gap-free numbering
        return "".join(seen[i] for i in sorted(seen))


async def test_all_live_replies_are_flushed_together_once_per_tick() -> None:
    clock = VirtualClock()
    store = FakeDeltaStore(clock)
    writer = DeltaWriter(store, tick_s=0.25, clock=clock)
    for step in range(40):  # 2 s of tokens for 300 replies, every 50 ms
        for reply in range(300):
            writer.add(f"r{reply}", f"{step},", workspace="slack:T1")
        await clock.advance(0.05)
    await clock.advance(0.5)
    assert 7 <= len(store.calls) <= 9  # ~2.25 s / 0.25 s, not 12,000 writes
    assert all(len({d.message_id for d in batch}) == len(batch) for _, batch in store.calls)  # one delta per reply
    expected = "".join(f"{s}," for s in range(40))
    assert all(store.text_of(f"r{r}") == expected for r in range(300))
    assert store.max_in_flight == 1


async def test_a_slow_store_never_gets_two_writes_at_once() -> None:
    clock = VirtualClock()
    store = FakeDeltaStore(clock, latency=0.8)
    writer = DeltaWriter(store, tick_s=0.25, clock=clock)
    for step in range(30):
        writer.add("a", f"{step} ", workspace="slack:T1")
        await clock.advance(0.1)
    await clock.advance(3)
    assert store.max_in_flight == 1
    assert store.text_of("a") == "".join(f"{s} " for s in range(30))


async def test_a_failed_write_is_retried_with_the_same_numbers_and_nothing_is_lost() -> None:
    clock = VirtualClock()
    store = FakeDeltaStore(clock, fail_next=3)
    writer = DeltaWriter(store, tick_s=0.25, clock=clock)
    writer.add("a", "one ", workspace="slack:T1")
    await clock.advance(0.3)  # first write fails
    writer.add("a", "two ", workspace="slack:T1")
    writer.add("b", "bee", workspace="slack:T1")
    await clock.advance(1.0)
    assert writer.failures == 3
    first = store.calls[0][1]
    assert first[0] == Delta("a", 0, "one ", "slack:T1")  # the failed delta, unchanged, goes first
    assert store.text_of("a") == "one two " and store.text_of("b") == "bee"


async def test_flush_message_waits_for_its_deltas_then_forgets_the_message() -> None:
    clock = VirtualClock()
    store = FakeDeltaStore(clock)
    writer = DeltaWriter(store, tick_s=0.25, clock=clock)
    writer.add("a", "text", workspace="slack:T1")
    task = asyncio.create_task(writer.flush_message("a"))
    await clock.advance(0.1)
    assert not task.done()
    await clock.advance(0.3)
    assert task.done() and store.text_of("a") == "text"
    assert not writer.pending("a")


async def test_flush_message_gives_up_after_its_timeout_when_the_store_is_down() -> None:
    clock = VirtualClock()
    store = FakeDeltaStore(clock, fail_next=10_000)
    writer = DeltaWriter(store, tick_s=0.25, clock=clock)
    writer.add("a", "text", workspace="slack:T1")
    task = asyncio.create_task(writer.flush_message("a", timeout_s=2.0))
    await clock.run_until(task.done, limit=3)
    assert not writer.pending("a")
    closing = asyncio.create_task(writer.close(timeout_s=1.0))
    await clock.run_until(closing.done, limit=2)


async def test_idle_writer_has_no_task_and_close_writes_what_is_pending() -> None:
    clock = VirtualClock()
    store = FakeDeltaStore(clock, latency=0.0)
    writer = DeltaWriter(store, tick_s=0.25, clock=clock)
    writer.add("a", "x", workspace="slack:T1")
    await clock.advance(1)
    assert writer._task is not None and writer._task.done()  # stopped by itself once idle
    writer.add("a", "y", workspace="slack:T1")
    task = asyncio.create_task(writer.close())
    await clock.run_until(task.done)
    assert store.text_of("a") == "xy"
