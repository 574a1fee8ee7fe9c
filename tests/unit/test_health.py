"""core.health.Readiness: probes in parallel with a bound, one probe per cache period, shared by concurrent askers."""

from __future__ import annotations

import asyncio

from core.health import Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_fresh_report_is_served_from_the_cache_and_probed_again_after_it() -> None:
    calls: list[str] = []

    async def store() -> str:
        calls.append("store")
        return "SqliteStore"

    clock = Clock()
    readiness = Readiness({"store": store}, ttl_s=5, clock=clock)
    first = await readiness.report()
    assert first.ok and [(c.name, c.ok, c.detail) for c in first.checks] == [("store", True, "SqliteStore")]
    clock.now += 4.9
    assert await readiness.report() is first
    clock.now += 0.2
    await readiness.report()
    assert calls == ["store", "store"]


async def test_concurrent_askers_share_one_probe() -> None:
    started = 0
    gate = asyncio.Event()

    async def slow() -> str:
        nonlocal started
        started += 1
        await gate.wait()
        return "ok"

    readiness = Readiness({"store": slow}, ttl_s=5)
    askers = [asyncio.create_task(readiness.report()) for _ in range(20)]
    await asyncio.sleep(0.01)
    gate.set()
    reports = await asyncio.gather(*askers)
    assert started == 1 and readiness.probe_count == 1
    assert all(r is reports[0] for r in reports)


async def test_a_failing_or_silent_part_makes_the_process_not_ready_and_says_which() -> None:
    async def fine() -> str:
        return "fine"

    async def down() -> str:
        raise ConnectionError("connection refused")

    async def silent() -> str:
        await asyncio.sleep(10)
        return "never"

    readiness = Readiness({"store": fine, "retriever": down, "llm": silent}, timeout_s=0.2)
    report = await asyncio.wait_for(readiness.report(), 2)
    assert not report.ok
    assert [(c.name, c.ok, c.detail) for c in report.checks] == [
        ("store", True, "fine"),
        ("retriever", False, "ConnectionError: connection refused"),
        ("llm", False, "no answer within 0.2s"),
    ]
