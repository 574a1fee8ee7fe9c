"""Question rewriting through the real Anthropic SDK against the loopback fake: queries searched and
fused, the thread's turns used, and every failure (slow model, API error) falls back to the raw question."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.ingest import chunk_id
from core.llm.anthropic import AnthropicLLM
from core.messages import Platform, WorkspaceRef
from core.retrieval.base import Chunk
from core.retrieval.fts import FtsRetriever
from core.rewrite import SYSTEM, QueryRewriter, RecentTurn, parse_queries, search_rewritten
from tests.fakes.anthropic import FakeAnthropic

WS = WorkspaceRef(Platform.SLACK, "T-rw")
THREAD = [
    RecentTurn("user", "How do I stop git from changing line endings on Linux?"),
    RecentTurn("assistant", "Set core.autocrlf to input [1]."),
]


@pytest.fixture
async def retriever(tmp_path: Path) -> AsyncIterator[FtsRetriever]:
    r = await FtsRetriever.open(tmp_path / "k.sqlite")
    for index, (uri, title, text) in enumerate(
        [
            ("a://autocrlf", "Line endings", "On Windows set core.autocrlf to true so checkouts get CRLF."),
            ("a://windows", "Installing", "On Windows, run the installer and choose the default options."),
        ]
    ):
        await r.replace_document(WS, uri, [Chunk(chunk_id(WS.key, uri, index), uri, title, "", text, 0)])
    yield r
    await r.close()


def rewriter(fake: FakeAnthropic, timeout_s: float = 5.0) -> QueryRewriter:
    llm = AnthropicLLM(api_key="k", model="answer-model", base_url=fake.url, max_retries=0)
    return QueryRewriter(llm, model="small-fast-model", timeout_s=timeout_s)


async def test_a_follow_up_is_rewritten_with_the_thread_and_both_queries_are_fused(
    fake_anthropic: FakeAnthropic, retriever: FtsRetriever
) -> None:
    fake_anthropic.script_rewrite("- git line endings CRLF on Windows core.autocrlf\n- autocrlf Windows checkout")
    hits = await search_rewritten(retriever, rewriter(fake_anthropic), WS, "and on Windows?", THREAD, k=2)
    # The raw question alone matches both pages on "Windows"; the rewrite puts the line-endings page first.
    assert [h.chunk.document_uri for h in hits] == ["a://autocrlf", "a://windows"]
    (request,) = fake_anthropic.rewrite_requests
    assert request["model"] == "small-fast-model" and request["system"] == SYSTEM
    content = request["messages"][-1]["content"]
    assert "line endings on Linux" in content and "core.autocrlf to input" in content
    assert content.endswith("Latest question: and on Windows?")
    assert fake_anthropic.requests == []  # nothing was taken for an answer


async def test_a_slow_model_is_abandoned_and_the_raw_question_answers(
    fake_anthropic: FakeAnthropic, retriever: FtsRetriever
) -> None:
    fake_anthropic.script_rewrite("core.autocrlf", stall_s=2.0)
    started = time.monotonic()
    hits = await search_rewritten(retriever, rewriter(fake_anthropic, 0.3), WS, "autocrlf", THREAD, k=5)
    assert time.monotonic() - started < 1.8  # gave up on the model long before it answered
    assert [h.chunk.document_uri for h in hits] == ["a://autocrlf"]


@pytest.mark.parametrize("status", [400, 500, 529])
async def test_an_api_error_falls_back_to_the_raw_question(
    fake_anthropic: FakeAnthropic, retriever: FtsRetriever, status: int
) -> None:
    fake_anthropic._rewrites.append(fake_anthropic.script("", http_status=status))
    fake_anthropic._queue.clear()
    assert await rewriter(fake_anthropic).rewrite("autocrlf", THREAD) == []
    hits = await search_rewritten(retriever, rewriter(fake_anthropic), WS, "installer options", [], k=5)
    assert [h.chunk.document_uri for h in hits] == ["a://windows"]


async def test_no_rewriter_searches_the_raw_question(retriever: FtsRetriever) -> None:
    hits = await search_rewritten(retriever, None, WS, "installer", [], k=5)
    assert [h.chunk.document_uri for h in hits] == ["a://windows"]


def test_queries_are_parsed_bounded_and_deduplicated() -> None:
    text = '1. "rollback a deploy"\n\n- rollback a deploy\n* revert release\n2) undo\nmore\nand more\n'
    assert parse_queries(text, "how do I undo it?") == ["rollback a deploy", "revert release", "undo"]
    assert parse_queries("How do I undo it?\n", "how do I undo it?") == []
    assert parse_queries("x" * 500, "q") == ["x" * 200]
