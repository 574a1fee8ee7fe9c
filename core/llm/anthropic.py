"""Answers from Anthropic's Messages API, streamed with the official async SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx
import structlog
from anthropic.types import AssistantMessageParam, MessageParam, UserMessageParam

from core.llm.base import LLMError, Prompt
from core.messages import Usage

log = structlog.get_logger(__name__)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a dropped connection raises mid-stream. Newer SDKs bundle their own
    httpx fork, whose errors are not httpx's, so both are caught."""
    errors: list[type[BaseException]] = [httpx.TransportError, anthropic.APIError]
    try:
        import httpx2  # type: ignore[import-not-found,unused-ignore]

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()


class AnthropicLLM:
    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        self.base_url = base_url or "the Anthropic API"
        # The SDK retries connection errors, 429 and 5xx before the stream starts;
        # once text has been shown, a failure ends the reply with a marker instead.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Usage]:
        messages: list[MessageParam] = [
            UserMessageParam(role="user", content=t.content)
            if t.role == "user"
            else AssistantMessageParam(role="assistant", content=t.content)
            for t in prompt.turns
        ]
        try:
            async with self._client.messages.stream(
                model=prompt.model or self.model,
                max_tokens=prompt.max_tokens,
                system=prompt.system,
                messages=messages,
            ) as stream:
                async for text in stream.text_stream:
                    yield text
                final = await stream.get_final_message()
            yield Usage(final.usage.input_tokens, final.usage.output_tokens)
        except anthropic.APIStatusError as exc:
            log.warning("llm.status_error", status=exc.status_code, error=str(exc))
            raise LLMError(_status_message(exc)) from exc
        except anthropic.APITimeoutError as exc:
            raise LLMError("the model took too long to answer") from exc
        except anthropic.APIConnectionError as exc:
            raise LLMError(f"could not reach the model at {self.base_url}") from exc
        except _TRANSPORT_ERRORS as exc:
            # A connection dropped mid-stream surfaces as a raw transport error, not an APIError.
            log.warning("llm.stream_broken", error=repr(exc))
            raise LLMError("the connection to the model dropped") from exc

    async def close(self) -> None:
        await self._client.close()


def _status_message(exc: anthropic.APIStatusError) -> str:
    code = exc.status_code
    if code == 401:
        return "the model refused our API key (check ANTHROPIC_API_KEY)"
    if code == 403:
        return "the API key may not use this model"
    if code == 404:
        return "the configured model does not exist (check CHATBOT_MODEL)"
    if code == 429:
        return "the model is rate limited right now; try again in a minute"
    if code in (500, 502, 503, 529) or "overloaded" in str(exc).lower():
        return "the model is overloaded right now; try again shortly"
    if code == 400:
        return "the model rejected the request (is the question too long?)"
    return f"the model answered with an error ({code})"
