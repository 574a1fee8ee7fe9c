"""Answers from Anthropic's Messages API, streamed with the official async SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import structlog
from anthropic.types import AssistantMessageParam, MessageParam, TextBlockParam, UserMessageParam

from core.llm.base import LLMError, LLMInvalid, LLMRefused, LLMTimeout, LLMUnavailable, Prompt, Turn
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
        idle_timeout_s: float = 20.0,
    ) -> None:
        self.model = model
        self.base_url = base_url or "the Anthropic API"
        # A stream that sends no text for this long ends as timed out, however long the whole
        # request may take (`timeout_s` bounds each network read and the wait for the first byte).
        self.idle_timeout_s = idle_timeout_s
        # The SDK retries connection errors, 429 and 5xx before the stream starts;
        # once text has been shown, a failure ends the reply with a marker instead.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Usage]:
        messages: list[MessageParam] = [
            UserMessageParam(role="user", content=_user_content(t))
            if t.role == "user"
            else AssistantMessageParam(role="assistant", content=t.content)
            for t in prompt.turns
        ]
        try:
            # The raw events, not the SDK's MessageStream helper: that one rebuilds a typed snapshot of the
            # whole message on every delta, which made it most of a busy process's CPU (bench/README.md).
            events = await self._client.messages.create(
                model=prompt.model or self.model,
                max_tokens=prompt.max_tokens,
                system=_system(prompt),
                messages=messages,
                stream=True,
            )
            usage = Usage(0, 0)
            async with events:
                iterator = events.__aiter__()
                while True:
                    try:
                        async with asyncio.timeout(self.idle_timeout_s):
                            event = await anext(iterator)
                    except StopAsyncIteration:
                        break
                    if event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield event.delta.text  # outside the timeout: the consumer's time is not idle
                    elif event.type == "message_start":
                        started = event.message.usage
                        usage = Usage(
                            started.input_tokens,
                            started.output_tokens,
                            cache_read_tokens=started.cache_read_input_tokens or 0,
                            cache_write_tokens=started.cache_creation_input_tokens or 0,
                        )
                    elif event.type == "message_delta":  # the counts so far, the output's final at the end
                        usage = Usage(
                            event.usage.input_tokens or usage.input_tokens,
                            event.usage.output_tokens,
                            cache_read_tokens=event.usage.cache_read_input_tokens or usage.cache_read_tokens,
                            cache_write_tokens=event.usage.cache_creation_input_tokens or usage.cache_write_tokens,
                        )
            yield usage
        except TimeoutError as exc:
            log.warning("llm.idle_timeout", idle_s=self.idle_timeout_s, base_url=self.base_url)
            raise LLMTimeout(f"the model went silent for {self.idle_timeout_s:g} s (timed out)") from exc
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from exc
        except anthropic.APITimeoutError as exc:
            log.warning("llm.request_timeout", base_url=self.base_url)
            raise LLMTimeout("the model took too long to answer (timed out)") from exc
        except anthropic.APIConnectionError as exc:
            log.error("llm.unreachable", base_url=self.base_url, error=repr(exc.__cause__ or exc))
            raise LLMUnavailable("could not reach the model service right now") from exc
        except _TRANSPORT_ERRORS as exc:
            # A connection dropped mid-stream surfaces as a raw transport error, not an APIError.
            log.warning("llm.stream_broken", error=repr(exc))
            raise LLMUnavailable("the connection to the model dropped") from exc

    async def ping(self) -> str:
        """Readiness: the API answers and knows the configured model (a GET, no tokens spent)."""
        try:
            model = await self._client.models.retrieve(self.model, timeout=5.0)
        except anthropic.APIStatusError as exc:  # operators read this (readiness, doctor): hints included
            hint = _OPERATOR_HINTS.get(exc.status_code, f"the model service answered {exc.status_code}")
            raise LLMRefused(hint) from exc
        except anthropic.APIError as exc:
            raise LLMUnavailable(f"could not reach the model at {self.base_url}") from exc
        return f"anthropic, {model.id}"

    async def close(self) -> None:
        await self._client.close()


def _system(prompt: Prompt) -> str | list[TextBlockParam]:
    """The system prompt with a cache breakpoint after each stable part (instructions, then the retrieved
    context): a follow-up reads them from the prompt cache. Parts below the model's minimum cacheable
    length are simply not cached, so marking them costs nothing."""
    if not prompt.system_parts:
        return prompt.system
    return [
        TextBlockParam(type="text", text=part, cache_control={"type": "ephemeral"})
        for part in prompt.system_parts
        if part
    ]


def _error_type(exc: anthropic.APIStatusError) -> str:
    """The API's error type (`overloaded_error`, `api_error`, ...), also for an error event mid-stream."""
    body: Any = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type", "")) if isinstance(error, dict) else ""


# What users see (their terms, no operator hints) and what operators read in the log, by status.
_OPERATOR_HINTS = {
    401: "the API key was refused: check ANTHROPIC_API_KEY",
    403: "the API key may not use this model: check the key's permissions and CHATBOT_MODEL",
    404: "the model does not exist: check CHATBOT_MODEL (and per-workspace model settings)",
}


def _status_error(exc: anthropic.APIStatusError) -> LLMError:
    code, kind = exc.status_code, _error_type(exc)
    hint = _OPERATOR_HINTS.get(code)
    if hint:  # the deployment is wrong: an operator must act, so it is an error in the log
        log.error("llm.status_error", status=code, type=kind, error=str(exc), hint=hint)
        return LLMRefused("the model service refused to answer for this bot right now")
    log.warning("llm.status_error", status=code, type=kind, error=str(exc))
    # The status decides; an error event mid-stream arrives on a 200 and is judged by its type.
    if code == 529 or (code == 200 and kind == "overloaded_error"):
        return LLMUnavailable("the model is overloaded right now; try again shortly")
    if code == 429 or (code == 200 and kind == "rate_limit_error"):
        return LLMUnavailable("the model is busy (rate limited); try again in a minute")
    if code in (502, 503, 504):
        return LLMUnavailable("the model service is unavailable right now; try again shortly")
    if code == 500 or (code == 200 and kind == "api_error"):
        return LLMUnavailable("the model service had an internal error; try again shortly")
    if code in (400, 413):
        return LLMInvalid("the model rejected the request (is the question too long?)")
    return LLMUnavailable(f"the model service answered with an error ({code})")


def _user_content(turn: Turn) -> Any:
    """A plain string, or the turn's files as document and image blocks followed by its text."""
    if not turn.files:
        return turn.content
    blocks: list[dict[str, Any]] = []
    for f in turn.files:
        if f.kind == "image":
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": f.media_type, "data": f.data}})
        elif f.kind == "pdf":
            source = {"type": "base64", "media_type": f.media_type, "data": f.data}
            blocks.append({"type": "document", "source": source, "title": f.name[:500]})
        else:
            source = {"type": "text", "media_type": "text/plain", "data": f.data}
            blocks.append({"type": "document", "source": source, "title": f.name[:500]})
    return [*blocks, {"type": "text", "text": turn.content}]
