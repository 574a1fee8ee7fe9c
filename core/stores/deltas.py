"""Store writes of streaming text: one throttled batch per tick for every live reply in the process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import structlog

from core.pacing import Clock, SystemClock
from core.stores.base import Delta

log = structlog.get_logger(__name__)


class DeltaStore(Protocol):
    async def append_deltas(self, deltas: Sequence[Delta]) -> None: ...


class DeltaWriter:
    """Throttled store writes of streaming text, shared by every live reply in the process.

    `add` only buffers. One task flushes every `tick_s`: all pending text, one `Delta` per message
    (numbered per message from 0), in a single `append_deltas` call, and never two calls at once.
    A failed write keeps its deltas (same numbers, so a store may de-duplicate a write that did land)
    and retries them first at the next tick. The task stops when nothing is pending.
    """

    def __init__(
        self, store: DeltaStore, *, tick_s: float = 0.25, clock: Clock | None = None, max_batch: int = 4096
    ) -> None:
        self.store = store
        self.tick_s = tick_s
        self.clock: Clock = clock or SystemClock()
        self.max_batch = max_batch
        self._buffer: dict[str, list[str]] = {}
        self._workspace: dict[str, str] = {}  # message id -> its workspace key
        self._retry: list[Delta] = []  # written and failed: resent first, unchanged
        self._seq: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.writes = 0
        self.failures = 0

    def add(self, message_id: str, text: str, *, workspace: str) -> None:
        if not text or self._closed:
            return
        self._buffer.setdefault(message_id, []).append(text)
        self._workspace[message_id] = workspace
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    def pending(self, message_id: str) -> bool:
        return message_id in self._buffer or any(d.message_id == message_id for d in self._retry)

    async def _loop(self) -> None:
        while self._buffer or self._retry:
            await self.clock.sleep(self.tick_s)
            await self._flush_once()

    def _batch(self) -> list[Delta]:
        batch = self._retry[: self.max_batch]
        self._retry = self._retry[self.max_batch :]
        for message_id in list(self._buffer):
            if len(batch) >= self.max_batch:
                break
            seq = self._seq.get(message_id, 0)
            self._seq[message_id] = seq + 1
            batch.append(Delta(message_id, seq, "".join(self._buffer.pop(message_id)), self._workspace[message_id]))
        return batch

    async def _flush_once(self) -> None:
        batch = self._batch()
        if not batch:
            return
        try:
            await self.store.append_deltas(batch)
        except asyncio.CancelledError:
            self._retry = batch + self._retry
            raise
        except Exception as exc:
            self.failures += 1
            log.warning("deltas.write_failed", deltas=len(batch), error=repr(exc))
            self._retry = batch + self._retry
            return
        self.writes += 1
        for message_id in {d.message_id for d in batch}:
            if not self.pending(message_id):
                for waiter in self._waiters.pop(message_id, []):
                    if not waiter.done():
                        waiter.set_result(None)

    async def flush_message(self, message_id: str, *, timeout_s: float = 5.0) -> None:
        """Wait (at most `timeout_s`) until the message's deltas are written, then forget the message:
        its final text goes to the message row, so deltas still unwritten then are dropped."""
        try:
            if self.pending(message_id):
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(message_id, []).append(waiter)
                sleeper = asyncio.ensure_future(self.clock.sleep(timeout_s))
                try:
                    await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waiter.cancel()
        finally:
            self._buffer.pop(message_id, None)
            self._retry = [d for d in self._retry if d.message_id != message_id]
            self._seq.pop(message_id, None)
            self._workspace.pop(message_id, None)
            self._waiters.pop(message_id, None)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Write what is pending (one last try, bounded), then stop."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        if self._buffer or self._retry:
            flush = asyncio.ensure_future(self._flush_once())
            timer = asyncio.ensure_future(self.clock.sleep(timeout_s))
            try:
                await asyncio.wait([flush, timer], return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
                if not flush.done():
                    flush.cancel()
                    log.warning("deltas.close_lost", deltas=len(self._retry) + len(self._buffer))
                    await asyncio.wait([flush])
