"""The metrics port on prometheus-client, one registry per core (so several cores can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from core.messages import Usage

# Users feel the first words within about a second; staleness beyond ~5 s reads as a stall.
TEXT_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
PART_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PrometheusMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._replies = Counter("chatbot_replies", "Questions handled, by outcome", ["platform", "outcome"], registry=r)
        self._in_flight = Gauge("chatbot_replies_in_flight", "Questions being handled now", ["platform"], registry=r)
        self._first_text = Histogram(
            "chatbot_first_text_seconds",
            "From the question to the first words shown",
            ["platform"],
            buckets=TEXT_BUCKETS,
            registry=r,
        )
        self._staleness = Histogram(
            "chatbot_staleness_seconds",
            "How long streamed text waited before it was shown, per edit",
            ["platform"],
            buckets=TEXT_BUCKETS,
            registry=r,
        )
        self._requests = Counter(
            "chatbot_platform_requests", "Platform calls granted by the rate budgets", ["platform", "scope"], registry=r
        )
        self._limited = Counter(
            "chatbot_platform_rate_limited", "Platform answers 429, by limit scope", ["platform", "scope"], registry=r
        )
        self._parts = Histogram(
            "chatbot_part_seconds",
            "Latency of the store, retriever and LLM calls",
            ["part", "operation"],
            buckets=PART_BUCKETS,
            registry=r,
        )
        self._tokens = Counter("chatbot_tokens", "Model tokens by workspace", ["workspace", "kind"], registry=r)

    def reply_started(self, platform: str) -> None:
        self._in_flight.labels(platform).inc()

    def reply_finished(self, platform: str, outcome: str) -> None:
        self._in_flight.labels(platform).dec()
        self._replies.labels(platform, outcome).inc()

    def first_text(self, platform: str, seconds: float) -> None:
        self._first_text.labels(platform).observe(seconds)

    def staleness(self, platform: str, seconds: float) -> None:
        self._staleness.labels(platform).observe(seconds)

    def platform_request(self, platform: str, scope: str) -> None:
        self._requests.labels(platform, scope).inc()

    def platform_rate_limited(self, platform: str, scope: str) -> None:
        self._limited.labels(platform, scope).inc()

    def part_latency(self, part: str, operation: str, seconds: float) -> None:
        self._parts.labels(part, operation).observe(seconds)

    def tokens(self, workspace: str, usage: Usage) -> None:
        self._tokens.labels(workspace, "input").inc(usage.input_tokens)
        self._tokens.labels(workspace, "output").inc(usage.output_tokens)
        self._tokens.labels(workspace, "cache_read").inc(usage.cache_read_tokens)
        self._tokens.labels(workspace, "cache_write").inc(usage.cache_write_tokens)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
