"""Fixtures for the Slack adapter: the loopback Slack Web API, the Bolt app served on loopback, the real core."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web

from bots.slack.app import EVENTS_PATH, SlackBot
from core.config import Settings
from core.pacing import EditScheduler
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    command_body,
    event_body,
    signed_headers,
)

if TYPE_CHECKING:
    from core.app import ChatCore


class FastClock:
    """The engine's clock running `speed` times faster: rate budgets and Retry-After waits shrink alike,
    so streaming tests exercise the real pacing logic in a fraction of the wall time."""

    def __init__(self, speed: float = 20.0) -> None:
        self.speed = speed

    def now(self) -> float:
        return time.monotonic() * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)

    def call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, (when - self.now()) / self.speed), callback)


@dataclass
class Reply:
    status: int
    text: str


@dataclass
class Harness:
    """A SlackBot served over real HTTP on loopback, talking to the fake Slack Web API."""

    bot: SlackBot
    slack: FakeSlack
    url: str
    http: aiohttp.ClientSession

    async def post(self, body: str, headers: dict[str, str]) -> Reply:
        async with self.http.post(self.url, data=body.encode(), headers=headers) as response:
            return Reply(response.status, await response.text())

    async def event(self, event: dict[str, Any], *, retry_num: int | None = None, **envelope: Any) -> Reply:
        self.slack.record_event(event)  # the message is in Slack before the event says so
        body = event_body(event, **envelope)
        return await self.post(body, signed_headers(body, content_type="application/json", retry_num=retry_num))

    async def command(self, text: str, *, user_id: str) -> Reply:
        body = command_body(text, user_id=user_id, response_url=self.slack.response_url())
        return await self.post(body, signed_headers(body, content_type="application/x-www-form-urlencoded"))

    async def settle(self) -> None:
        await self.bot.drain(timeout_s=30)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def core(data_dir: Path, fake_anthropic: FakeAnthropic) -> AsyncIterator[ChatCore]:
    from core.app import build_core

    settings = Settings(CHATBOT_DATA_DIR=data_dir, ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=fake_anthropic.url)
    chat_core = await build_core(settings)
    try:
        yield chat_core
    finally:
        await chat_core.close()


async def serve(bot: SlackBot, slack: FakeSlack) -> AsyncIterator[Harness]:
    runner = web.AppRunner(bot.web_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(bot, slack, f"http://127.0.0.1:{port}{EVENTS_PATH}", http)
    finally:
        await bot.close()
        await runner.cleanup()


def make_bot(
    core: Any, slack: FakeSlack, scheduler: EditScheduler | None = None, *, native_streaming: bool = False
) -> SlackBot:
    return SlackBot(
        core,
        token=BOT_TOKEN,
        signing_secret=SIGNING_SECRET,
        api_url=slack.api_url,
        scheduler=scheduler,
        native_streaming=native_streaming,
    )


@pytest.fixture
async def harness(core: ChatCore, slack: FakeSlack) -> AsyncIterator[Harness]:
    """The real core behind the Bolt app, paced in real time, replying with chat.postMessage + chat.update
    (the way everywhere Slack does not stream natively)."""
    async for h in serve(make_bot(core, slack), slack):
        yield h


@pytest.fixture
async def fast_harness(core: ChatCore, slack: FakeSlack) -> AsyncIterator[Harness]:
    """As `harness`, with the edit budgets on a 20x clock (for long rate-limit scenarios)."""
    async for h in serve(make_bot(core, slack, EditScheduler(FastClock())), slack):
        yield h


@pytest.fixture
async def native_harness(core: ChatCore, slack: FakeSlack) -> AsyncIterator[Harness]:
    """As `harness`, streaming natively in threads (chat.startStream), as the bot does by default."""
    async for h in serve(make_bot(core, slack, native_streaming=True), slack):
        yield h


@pytest.fixture
async def native_fast_harness(core: ChatCore, slack: FakeSlack) -> AsyncIterator[Harness]:
    """As `native_harness`, with the edit budgets on a 20x clock."""
    async for h in serve(make_bot(core, slack, EditScheduler(FastClock()), native_streaming=True), slack):
        yield h


class NoCore:
    """Stands in for the core where a request must never reach it: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the core was used ({name}) by a request that should have been refused")


@pytest.fixture
async def bare(slack: FakeSlack) -> AsyncIterator[Harness]:
    """The Bolt app without a core: for requests that must be refused (or answered) before any work."""
    async for h in serve(make_bot(NoCore(), slack, EditScheduler()), slack):  # budgets of its own: no core
        yield h
