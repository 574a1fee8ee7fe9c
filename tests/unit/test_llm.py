"""Both LLM implementations: the real Anthropic SDK against the loopback SSE server, and the extractive fallback."""

from __future__ import annotations

import pytest

from core.errors import Unavailable
from core.llm.anthropic import AnthropicLLM
from core.llm.base import LLMError, LLMInvalid, LLMRefused, LLMTimeout, LLMUnavailable, Prompt, Turn
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
    ("status", "kind", "message"),
    [
        (401, LLMRefused, "refused"),
        (403, LLMRefused, "refused"),
        (404, LLMRefused, "refused"),
        (429, LLMUnavailable, "rate limited"),
        (529, LLMUnavailable, "overloaded"),
        (500, LLMUnavailable, "internal error"),
        (503, LLMUnavailable, "unavailable"),
        (400, LLMInvalid, "rejected"),
    ],
)
async def test_http_errors_say_what_happened_in_the_users_terms(
    fake_anthropic: FakeAnthropic, status: int, kind: type[LLMError], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_anthropic.http_error(status)
    with pytest.raises(kind, match=message) as caught:
        await collect(anthropic(fake_anthropic))
    shown = str(caught.value)
    # Users get no operator hints; a 500 is not "overloaded" (only 529 and overloaded_error are).
    assert "ANTHROPIC" not in shown and "CHATBOT_" not in shown and "check" not in shown
    assert ("overloaded" in shown) == (status == 529)
    assert isinstance(caught.value, Unavailable) == (kind is LLMUnavailable)


async def test_a_refused_key_names_the_cause_for_operators_in_the_log(
    fake_anthropic: FakeAnthropic, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_anthropic.http_error(401)
    with pytest.raises(LLMRefused):
        await collect(anthropic(fake_anthropic))
    logged = capsys.readouterr()
    assert "ANTHROPIC_API_KEY" in logged.out + logged.err


async def test_a_silent_stream_ends_as_timed_out_before_the_request_timeout(fake_anthropic: FakeAnthropic) -> None:
    # Half the answer, then silence longer than the idle limit (but well inside the request timeout):
    # without the idle limit the stream would resume and complete normally.
    fake_anthropic.stall(4.0, "The first half arrives. The second half never does.", after_chars=12)
    llm = AnthropicLLM(
        api_key="k", model="m", base_url=fake_anthropic.url, max_retries=0, timeout_s=30, idle_timeout_s=0.5
    )
    text = ""
    with pytest.raises(LLMTimeout, match="timed out"):
        async for item in llm.stream(PROMPT):
            if isinstance(item, str):
                text += item
    assert text and "The first half arrives. The second half never does.".startswith(text)
    assert not text.endswith("does.")


async def test_the_idle_limit_comes_from_the_settings() -> None:
    from core.app import build_llm
    from core.config import Settings

    llm = build_llm(Settings(ANTHROPIC_API_KEY="k", CHATBOT_LLM_IDLE_TIMEOUT_S=7.5))
    assert isinstance(llm, AnthropicLLM) and llm.idle_timeout_s == 7.5
    assert AnthropicLLM(api_key="k", model="m").idle_timeout_s == 20.0


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
    with pytest.raises(LLMUnavailable, match="could not reach the model service"):
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


def test_extractive_shows_the_whole_matching_sentence_wherever_it_is() -> None:
    filler = " ".join(f"Paragraph {n} talks about the office plants and the coffee rota." for n in range(30))
    answer_sentence = "To undo a pushed change, run git revert with the commit's hash and push the result."
    source = Source(1, "Undoing", "file:undo.md", f"{filler} {answer_sentence} Lunch is at noon.")
    text = ExtractiveLLM(sentences_per_passage=1).compose("How do I revert a pushed commit?", [source])
    assert f"> {answer_sentence} [1]" in text  # found past the first 1,800 characters, and not cut
    assert "plants" not in text and "Lunch" not in text


def test_extractive_passage_found_by_meaning_shows_its_opening() -> None:
    text = "Garage permits cost nothing. Levels B1 and B2 are ours. Ask facilities."
    source = Source(1, "Parking", "file:p.md", text)
    text = ExtractiveLLM().compose("where can my car stay?", [source])
    assert "> Garage permits cost nothing. Levels B1 and B2 are ours. [1]" in text


async def test_extractive_with_nothing_found_says_so() -> None:
    text, _ = await collect(ExtractiveLLM(), Prompt(system="", turns=[Turn("user", "anything")]))
    assert text == NOTHING_FOUND
