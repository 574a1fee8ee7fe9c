"""The metrics port: what the core counts and times, with no vendor in sight.

core/app.py wires an implementation (core/metrics_prometheus.py) and times the parts it hands
the pipeline (`timed`, `timed_llm`); adapters never record anything themselves.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from core.llm.base import LLM, Prompt
from core.messages import Usage
from core.surface import RateScope

T = TypeVar("T")


class Metrics(Protocol):
    def reply_started(self, platform: str) -> None: ...

    def reply_finished(self, platform: str, outcome: str) -> None: ...

    def first_text(self, platform: str, seconds: float) -> None:
        """From the question's arrival at the reply to the first words the user sees."""
        ...

    def staleness(self, platform: str, seconds: float) -> None:
        """How long text waited between arriving from the model and being shown (one sample per edit)."""
        ...

    def platform_request(self, platform: str, scope: str) -> None: ...

    def platform_rate_limited(self, platform: str, scope: str) -> None: ...

    def part_latency(self, part: str, operation: str, seconds: float) -> None: ...

    def tokens(self, workspace: str, usage: Usage) -> None: ...

    def exposition(self) -> tuple[bytes, str]:
        """The scrape body and its content type."""
        ...


class NullMetrics:
    """Records nothing (benchmarks of the engine alone, tools)."""

    def reply_started(self, platform: str) -> None: ...
    def reply_finished(self, platform: str, outcome: str) -> None: ...
    def first_text(self, platform: str, seconds: float) -> None: ...
    def staleness(self, platform: str, seconds: float) -> None: ...
    def platform_request(self, platform: str, scope: str) -> None: ...
    def platform_rate_limited(self, platform: str, scope: str) -> None: ...
    def part_latency(self, part: str, operation: str, seconds: float) -> None: ...
    def tokens(self, workspace: str, usage: Usage) -> None: ...

    def exposition(self) -> tuple[bytes, str]:
        return b"", "text/plain"


def scope_labels(scope: RateScope) -> tuple[str, str]:
    """(platform, kind) of a scope key without its ids: "slack:T1:C1:chat.postMessage" -> ("slack",
    "chat.postMessage"), "discord:channel:123" -> ("discord", "channel"); ids would explode the series."""
    parts = scope.key.split(":")
    kinds = [p for p in parts[1:] if p and not any(ch.isdigit() for ch in p)]
    return parts[0], (kinds[-1] if kinds else "other")


class SchedulerMetrics:
    """The EditScheduler's observer: every granted platform call and every 429, by scope."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def granted(self, scopes: Sequence[RateScope]) -> None:
        # A call spends from each of its scopes; it is one request, counted under its narrowest scope.
        if scopes:
            self.metrics.platform_request(*scope_labels(scopes[0]))

    def rate_limited(self, scope: RateScope) -> None:
        self.metrics.platform_rate_limited(*scope_labels(scope))


class _Timed:
    """A part whose coroutine methods are timed; everything else passes through."""

    def __init__(self, target: object, part: str, metrics: Metrics) -> None:
        self._target = target
        self._part = part
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not inspect.iscoroutinefunction(value):
            return value
        method: Callable[..., Awaitable[Any]] = value
        part, metrics = self._part, self._metrics

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                metrics.part_latency(part, name, time.perf_counter() - started)

        return timed


def timed(target: T, part: str, metrics: Metrics) -> T:
    """`target` with every async method timed as `part`/<method> (a store, a retriever)."""
    return _Timed(target, part, metrics)  # type: ignore[return-value]


class TimedLLM:
    """The LLM with the time to its first token and to its whole answer recorded."""

    def __init__(self, llm: LLM, metrics: Metrics) -> None:
        self.llm = llm
        self.name = llm.name
        self.metrics = metrics

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Usage]:
        started = time.perf_counter()
        first = True
        try:
            async for item in self.llm.stream(prompt):
                if first and isinstance(item, str):
                    first = False
                    self.metrics.part_latency("llm", "first_token", time.perf_counter() - started)
                yield item
        finally:
            self.metrics.part_latency("llm", "stream", time.perf_counter() - started)


class _Answered(Protocol):
    """What `record_outcome` reads of a pipeline Outcome."""

    @property
    def usage(self) -> Usage: ...
    @property
    def first_text_at(self) -> float | None: ...
    @property
    def lags(self) -> Sequence[float]: ...


def record_outcome(metrics: Metrics, workspace: str, platform: str, started: float, outcome: _Answered) -> None:
    """The figures of one finished reply (`started`: time.monotonic when the question arrived)."""
    if outcome.first_text_at is not None:
        metrics.first_text(platform, max(0.0, outcome.first_text_at - started))
    for lag in outcome.lags:
        metrics.staleness(platform, lag)
    if any(dataclasses.astuple(outcome.usage)):
        metrics.tokens(workspace, outcome.usage)
