"""Model and knowledge faults end to end: the real Bolt app, the real core and the real anthropic SDK
against the loopback Anthropic server. Users read what happened in their terms (no operator hints);
a silent stream ends as timed out long before the request timeout; a knowledge base that is out of
reach (its embeddings API down) answers without knowledge and says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from core.app import ChatCore, build_core, build_llm, build_store
from core.config import Settings
from core.retrieval.embedders import HttpEmbedder
from core.retrieval.weaviate import WeaviateRetriever
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.loopback import serve as loopback
from tests.fakes.slack import BOT_USER_ID, FakeSlack
from tests.slack.conftest import Harness, make_bot, serve

OPERATOR_WORDS = ("ANTHROPIC", "CHATBOT_", "API key", "check ")


@pytest.fixture
async def model_core(data_dir: Path, fake_anthropic: FakeAnthropic) -> AsyncIterator[ChatCore]:
    settings = Settings(
        CHATBOT_DATA_DIR=data_dir,
        ANTHROPIC_API_KEY="test",
        ANTHROPIC_BASE_URL=fake_anthropic.url,
        CHATBOT_LLM_IDLE_TIMEOUT_S=0.5,
    )
    core = await build_core(settings)
    try:
        yield core
    finally:
        await core.close()


@pytest.fixture
async def h(model_core: ChatCore, slack: FakeSlack) -> AsyncIterator[Harness]:
    async for harness in serve(make_bot(model_core, slack), slack):
        yield harness


async def ask(h: Harness, ts: str, text: str = "how do we deploy?") -> str:
    event = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> {text}", "ts": ts, "channel": "C1"}
    assert (await h.event(event)).status == 200
    await h.settle()
    assert not h.bot.errors, list(h.bot.errors)
    [reply] = h.slack.replies_in("C1", ts)
    return h.slack.shown_text(reply)


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        (500, "the model service had an internal error"),
        (529, "the model is overloaded right now"),
        (401, "the model service refused to answer for this bot right now"),
    ],
)
async def test_model_errors_reach_users_in_their_terms(
    h: Harness, fake_anthropic: FakeAnthropic, status: int, shown: str
) -> None:
    for _ in range(3):  # the first try and the SDK's two retries (401 is not retried)
        fake_anthropic.http_error(status)
    text = await ask(h, f"1700002{status}.000100")
    assert "The answer was cut off" in text and shown in text
    assert not any(word in text for word in OPERATOR_WORDS), text
    assert ("overloaded" in text) == (status == 529)


async def test_a_silent_model_stream_ends_as_timed_out(h: Harness, fake_anthropic: FakeAnthropic) -> None:
    # Quiet for 3 s (the idle limit here is 0.5 s): without it the rest would arrive and complete the reply.
    fake_anthropic.stall(3.0, "The first words arrive, and then the model goes quiet for good.", after_chars=16)
    text = await asyncio.wait_for(ask(h, "1700002600.000100"), 20)
    assert text.startswith("The first words")
    assert "timed out" in text and "quiet for good" not in text


async def test_an_embedder_outage_answers_without_knowledge(
    data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    """Weaviate's search needs the question's vector first; the embeddings API answers 503. The answer
    comes anyway, without knowledge, and says so (it used to abort: the embedder's error was no
    retriever outage)."""
    embeddings = web.Application()
    calls: list[object] = []

    async def down(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.json_response({"error": {"message": "overloaded"}}, status=503)

    embeddings.router.add_post("/v1/embeddings", down)
    runner, url = await loopback(embeddings)
    settings = Settings(CHATBOT_DATA_DIR=data_dir, ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=fake_anthropic.url)
    store = await build_store(settings)
    embedder = HttpEmbedder(url, api_key=None, model="m", dimensions=8, timeout_s=5)
    retriever = WeaviateRetriever(url="http://127.0.0.1:9", grpc_port=9, embedder=embedder)  # never reached
    core = ChatCore(settings, store, retriever, build_llm(settings))
    try:
        async for harness in serve(make_bot(core, slack), slack):
            text = await ask(harness, "1700002700.000100")
        assert calls, "the embeddings API was asked"
        first_line, _, answer = text.partition("\n")
        assert "I can't reach the knowledge base right now" in first_line
        assert "Here is what I found" in answer
    finally:
        await core.close()
        await runner.cleanup()
