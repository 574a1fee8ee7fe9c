"""Readiness: are the store, the retriever and the model reachable? Probed briefly, cached briefly.

A load balancer asks often (every few seconds, from several places); one probe per `ttl_s` serves
them all, and concurrent askers share the probe in flight instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.llm.base import LLM
from core.messages import Platform, WorkspaceRef
from core.retrieval.base import Retriever
from core.stores.base import RoleStore

Probe = Callable[[], Awaitable[str]]  # returns a short detail; raises when the part is not reachable


@runtime_checkable
class Pingable(Protocol):
    """A part that can say cheaply whether its service answers (an LLM's model lookup, say)."""

    async def ping(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    ok: bool
    checks: tuple[CheckResult, ...]
    at: float  # monotonic time of the probe

    def as_dict(self) -> dict[str, object]:
        return {
            "ready": self.ok,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail, "seconds": round(c.seconds, 4)} for c in self.checks},
        }


async def run_check(name: str, probe: Probe, timeout_s: float) -> CheckResult:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            detail = await probe()
        return CheckResult(name, True, detail, time.monotonic() - started)
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {timeout_s:g}s", time.monotonic() - started)
    except Exception as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)


class Readiness:
    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        ttl_s: float = 5.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probes = dict(probes)
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._last: ReadinessReport | None = None
        self._running: asyncio.Task[ReadinessReport] | None = None
        self.probe_count = 0  # how many times the parts were really asked (tests and metrics)

    async def report(self) -> ReadinessReport:
        last = self._last
        if last is not None and self.clock() - last.at < self.ttl_s:
            return last
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._probe())
        # shield: one asker giving up (a closed connection) must not cancel the probe the others wait for
        return await asyncio.shield(self._running)

    async def _probe(self) -> ReadinessReport:
        self.probe_count += 1
        checks = await asyncio.gather(*(run_check(n, p, self.timeout_s) for n, p in self.probes.items()))
        report = ReadinessReport(all(c.ok for c in checks), tuple(checks), self.clock())
        self._last = report
        return report


@runtime_checkable
class Diagnosable(Protocol):
    """A part with a deeper check for `chatbot doctor` (Convex: deployed functions; Weaviate: the schema)."""

    async def diagnose(self) -> str: ...


HEALTH_WORKSPACE = WorkspaceRef(Platform.SHELL, "health")  # only ever read by the probes


def part_probes(store: RoleStore, retriever: Retriever, llm: LLM) -> dict[str, Probe]:
    """The readiness probes of the wired parts: one cheap call each."""

    async def store_probe() -> str:
        await store.settings(HEALTH_WORKSPACE)
        return type(store).__name__

    async def retriever_probe() -> str:
        await retriever.search(HEALTH_WORKSPACE, "health check", k=1)
        return type(retriever).__name__

    async def llm_probe() -> str:
        if isinstance(llm, Pingable):
            return await llm.ping()
        return f"{llm.name} (runs in this process)"

    return {"store": store_probe, "retriever": retriever_probe, "llm": llm_probe}


def diagnostics(parts: Mapping[str, object]) -> dict[str, Probe]:
    """The doctor's deeper checks, for the parts that have one (named e.g. `store schema`)."""
    return {name: part.diagnose for name, part in parts.items() if isinstance(part, Diagnosable)}
