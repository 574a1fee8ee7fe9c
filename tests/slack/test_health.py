"""/healthz and /readyz on the Slack HTTP server, with the real core behind them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.anthropic import FakeAnthropic
from tests.slack.conftest import Harness

if TYPE_CHECKING:
    from core.app import ChatCore


async def get(harness: Harness, path: str) -> tuple[int, Any]:
    async with harness.http.get(harness.url.replace("/slack/events", path)) as response:
        return response.status, await (response.json() if path == "/readyz" else response.text())


async def test_readyz_probes_store_retriever_and_model_once_per_cache_period(
    harness: Harness, core: ChatCore, fake_anthropic: FakeAnthropic
) -> None:
    # Generous bounds: a loaded test machine must not make the parts look down (the bounds have unit tests).
    core.readiness.timeout_s, core.readiness.ttl_s = 15.0, 60.0
    assert await get(harness, "/healthz") == (200, "ok")
    status, body = await get(harness, "/readyz")
    assert status == 200 and body["ready"] is True
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "store": True,
        "retriever": True,
        "llm": True,
    }
    assert body["checks"]["llm"]["detail"] == f"anthropic, {core.settings.model}"
    for _ in range(5):
        await get(harness, "/readyz")
    assert fake_anthropic.model_lookups == 1, "a load balancer's polling is served from the cache"


async def test_readyz_is_503_naming_the_part_that_is_down(
    harness: Harness, core: ChatCore, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.unknown_models.add(core.settings.model)
    core.readiness.ttl_s, core.readiness.timeout_s = 0, 15.0  # probe on every request
    status, body = await get(harness, "/readyz")
    assert status == 503 and body["ready"] is False
    assert body["checks"]["store"]["ok"] and body["checks"]["retriever"]["ok"]
    assert not body["checks"]["llm"]["ok"] and "model" in body["checks"]["llm"]["detail"]
    fake_anthropic.unknown_models.clear()
    status, body = await get(harness, "/readyz")
    assert status == 200
