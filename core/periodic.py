"""Background steps run every so often until stopped (heartbeats, take-over sweeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Step = tuple[str, float, Callable[[], Awaitable[object]]]  # (task name, interval in seconds, the step)


class Periodic:
    def __init__(self, failed_event: str) -> None:
        self._failed = failed_event  # logged when a step fails
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *steps: Step) -> None:
        """Run each step now and then every its interval (once: a second start does nothing)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._every(interval, step), name=name) for name, interval, step in steps
            ]

    async def _every(self, interval: float, step: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await step()
            except Exception as exc:  # the store is down: try again next time
                log.warning(self._failed, error=repr(exc))
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
