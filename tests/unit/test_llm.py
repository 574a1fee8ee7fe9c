"""Both LLM implementations: the real Anthropic SDK against the loopback SSE server, and the extractive fallback."""

from __future__ import annotations

import pytest

from core.llm.anthropic import AnthropicLLM
from core.llm.base import LLMError, Prompt, Turn
from core.llm.extractive import LABEL, NOTHING_FOUND, ExtractiveLLM
from core.messages import Source, Usage
from tests.fakes.anthropic import FakeAnthropic

PROMPT = Prompt(system="sys", turns=[Turn("user", "How do I deploy?")], max_tokens=100)


async def collect(llm: AnthropicLLM | ExtractiveLLM, prompt: Prompt = PROMPT) -> tuple[str, list[Usage]]:
    text, usage = "", []
    async for item in llm.stream(prompt):
        if isinstance(item, Usage):
            usage.append(item)
        else:
            text += item
    return text, usage


def anthropic(fake: FakeAnthropic) -> AnthropicLLM:
    return AnthropicLLM(api_key="k", model="claude-test", base_url=fake.url, max_retries=0, timeout_s=5)


async def test_streams_the_exact_text_then_usage(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("Run `make deploy` from main. Then watch the dashboard.", chunk_chars=3)
    text, usage = await collect(anthropic(fake_anthropic))
    assert text == "Run `make deploy` from main. Then watch the dashboard."
    assert len(usage) == 1 and usage[0].output_tokens > 0 and usage[0].input_tokens > 0
    body = fake_anthropic.last_request
    assert body["model"] == "claude-test" and body["system"] == "sys" and body["max_tokens"] == 100
    assert fake_anthropic.api_key() == "k"


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "API key"), (404, "CHATBOT_MODEL"), (429, "rate limited"), (529, "overloaded"), (500, "overloaded")],
)
async def test_http_errors_become_clear_messages(fake_anthropic: FakeAnthropic, status: int, message: str) -> None:
    fake_anthropic.http_error(status)
    with pytest.raises(LLMError, match=message):
        await collect(anthropic(fake_anthropic))


async def test_error_event_mid_stream_is_an_llm_error(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail_after(10, "0123456789" * 5)
    with pytest.raises(LLMError, match="overloaded"):
        await collect(anthropic(fake_anthropic))


async def test_dropped_connection_mid_stream_is_an_llm_error(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail_after(10, "0123456789" * 5, mode="disconnect")
    with pytest.raises(LLMError, match="dropped"):
        await collect(anthropic(fake_anthropic))


async def test_unreachable_server_is_an_llm_error() -> None:
    llm = AnthropicLLM(api_key="k", model="m", base_url="http://127.0.0.1:9", max_retries=0, timeout_s=2)
    with pytest.raises(LLMError, match="could not reach"):
        await collect(llm)


async def test_extractive_answer_is_labelled_and_cites_passages() -> None:
    sources = [
        Source(
            1,
            "Deploys",
            "file:deploy.md",
            "We deploy with make deploy. Rollbacks use the rollback job. Lunch is at noon.",
        ),
        Source(2, "On-call", "file:oncall.md", "The on-call engineer approves every deploy."),
    ]
    prompt = Prompt(system="", turns=[Turn("user", "How do rollbacks work?")], sources=sources)
    text, usage = await collect(ExtractiveLLM(sentences_per_passage=1), prompt)
    assert text.startswith(LABEL)
    assert "Rollbacks use the rollback job. [1]" in text  # the sentence that matches the question
    assert "Lunch" not in text
    assert "[2]" in text
    assert usage == [Usage(0, 0)]


async def test_extractive_with_nothing_found_says_so() -> None:
    text, _ = await collect(ExtractiveLLM(), Prompt(system="", turns=[Turn("user", "anything")]))
    assert text == NOTHING_FOUND
