"""A loopback Anthropic Messages API server speaking the real SSE wire format.

The real `anthropic` SDK is pointed at it with ANTHROPIC_BASE_URL (or base_url=), so the
streaming code path is exercised end to end. Tests script the next answers and faults.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from core.rewrite import SYSTEM as REWRITE_SYSTEM
from tests.fakes.loopback import serve

FailMode = Literal["error_event", "disconnect"]


@dataclass
class ScriptedAnswer:
    text: str
    chunk_chars: int = 6
    delay_s: float = 0.0  # between deltas
    fail_after_chars: int | None = None
    fail_mode: FailMode = "error_event"
    stall_s: float = 0.0  # a silence once `stall_after_chars` have been sent (0: before the first delta)
    stall_after_chars: int = 0
    http_status: int = 200  # non-200: answer with an API error before streaming
    # A model's own rhythm: these pieces (joined, `text`), each after its gap (gaps[0] is unused).
    pieces: tuple[str, ...] = ()
    gaps: tuple[float, ...] = ()


class FakeAnthropic:
    """`async with FakeAnthropic() as fake:` then `fake.url`, `fake.script(...)`, `fake.requests`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # (when, the answer, characters of it sent so far) per delta: benchmarks measure staleness from it
        self.sent_log: list[tuple[float, str, int]] = []
        # Question-rewriting calls (recognised by their system prompt) are kept apart, so tests that
        # script answers or count answer requests are not disturbed by them.
        self.rewrite_requests: list[dict[str, Any]] = []
        self._rewrites: deque[ScriptedAnswer] = deque()
        self.headers: list[dict[str, str]] = []
        self._queue: deque[ScriptedAnswer] = deque()
        self._for_word: dict[str, ScriptedAnswer] = {}  # answers to questions naming a word, every time
        self.default_chunk_chars = 6
        self.default_delay_s = 0.0
        self.unknown_models: set[str] = set()  # GET /v1/models/{id} answers 404 for these
        self.model_lookups = 0
        self._cached: set[str] = set()  # system prefixes in the prompt cache
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- scripting -------------------------------------------------------------------------
    def script(self, text: str, **options: Any) -> ScriptedAnswer:
        answer = ScriptedAnswer(text=text, **options)
        self._queue.append(answer)
        return answer

    def script_for(self, word: str, text: str, **options: Any) -> ScriptedAnswer:
        """The answer to every question containing `word` (a whole word), before the queue's."""
        answer = ScriptedAnswer(text=text, **options)
        self._for_word[word] = answer
        return answer

    def script_rewrite(self, text: str, **options: Any) -> ScriptedAnswer:
        """The next question-rewriting answer (by default the question comes back unchanged)."""
        answer = ScriptedAnswer(text=text, **options)
        self._rewrites.append(answer)
        return answer

    def fail_after(self, n_chars: int, text: str = "", *, mode: FailMode = "error_event") -> ScriptedAnswer:
        body = text or "This answer will be cut off somewhere in the middle of this sentence. " * 4
        return self.script(body, fail_after_chars=n_chars, fail_mode=mode)

    def stall(self, seconds: float, text: str = "Eventually, an answer.", *, after_chars: int = 0) -> ScriptedAnswer:
        return self.script(text, stall_s=seconds, stall_after_chars=after_chars)

    def http_error(self, status: int) -> ScriptedAnswer:
        return self.script("", http_status=status)

    def api_key(self, index: int = -1) -> str:
        """The key the SDK sent (newer SDKs use a bearer token, older ones x-api-key)."""
        headers = self.headers[index]
        return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    # -- server ----------------------------------------------------------------------------
    async def __aenter__(self) -> FakeAnthropic:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models/{model}", self._model)
        self._runner, self.url = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _default_answer(self, body: dict[str, Any]) -> ScriptedAnswer:
        question = _last_user_text(body)
        has_context = "[1]" in json.dumps(body.get("system", ""))
        cite = " [1]" if has_context else ""
        return ScriptedAnswer(
            text=f"Here is what I found about: {question.strip()[:200]}{cite}",
            chunk_chars=self.default_chunk_chars,
            delay_s=self.default_delay_s,
        )

    def _answer_for(self, body: dict[str, Any]) -> ScriptedAnswer:
        if self._for_word:
            for word in re.findall(r"\w+", _last_user_text(body)):
                if word in self._for_word:
                    return self._for_word[word]
        return self._queue.popleft() if self._queue else self._default_answer(body)

    def _cache_usage(self, body: dict[str, Any]) -> dict[str, int]:
        """Prompt caching as the API documents it: each system block marked `cache_control` ends a prefix;
        a prefix seen before is read from the cache, a new one written to it (counted in words here)."""
        system = body.get("system")
        if not isinstance(system, list):
            return {}
        read = written = 0
        prefix = ""
        for block in system:
            prefix += str(block.get("text", ""))
            if block.get("cache_control", {}).get("type") == "ephemeral":
                words = len(prefix.split())
                if prefix in self._cached:
                    read = words
                else:
                    written = words - read
                    self._cached.add(prefix)
        return {"cache_read_input_tokens": read, "cache_creation_input_tokens": written}

    async def _model(self, request: web.Request) -> web.Response:
        """GET /v1/models/{id}, as the Models API answers it (404 for a model listed in `unknown_models`)."""
        self.model_lookups += 1
        if not (request.headers.get("x-api-key") or request.headers.get("authorization", "").startswith("Bearer ")):
            return _api_error(401, "authentication_error", "an API key is required")
        model = request.match_info["model"]
        if model in self.unknown_models:
            return _api_error(404, "not_found_error", f"model: {model}")
        return web.json_response(
            {"type": "model", "id": model, "display_name": model, "created_at": "2026-01-01T00:00:00Z"}
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        rewriting = body.get("system") == REWRITE_SYSTEM
        if rewriting:
            self.rewrite_requests.append(body)
        else:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if not (request.headers.get("x-api-key") or request.headers.get("authorization", "").startswith("Bearer ")):
            return _api_error(401, "authentication_error", "an API key is required")
        if rewriting:
            question = _last_user_text(body).rsplit("Latest question:", 1)[-1].strip()
            answer = self._rewrites.popleft() if self._rewrites else ScriptedAnswer(text=question)
        else:
            answer = self._answer_for(body)
        if answer.http_status != 200:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(answer.http_status, "api_error")
            return _api_error(answer.http_status, kind, f"scripted {answer.http_status}")
        if not body.get("stream"):
            return _api_error(400, "invalid_request_error", "the fake only streams")
        problem = _block_problem(body)
        if problem:
            return _api_error(400, "invalid_request_error", problem)

        response = web.StreamResponse(headers={"content-type": "text/event-stream", "request-id": "req_fake"})
        await response.prepare(request)
        model = body.get("model", "fake")
        await _event(
            response,
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake_{len(self.requests)}",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": _count_words(body), "output_tokens": 1, **self._cache_usage(body)},
                },
            },
        )
        await _event(
            response,
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        sent = 0
        text = answer.text
        stalled = False
        pieces = 0
        while sent < len(text):
            if answer.stall_s and not stalled and sent >= answer.stall_after_chars:
                stalled = True
                await asyncio.sleep(answer.stall_s)
            if answer.pieces:
                if pieces and pieces < len(answer.gaps):
                    await asyncio.sleep(answer.gaps[pieces])
                piece = answer.pieces[pieces]
                pieces += 1
            else:
                piece = text[sent : sent + answer.chunk_chars]
            if answer.fail_after_chars is not None and sent >= answer.fail_after_chars:
                if answer.fail_mode == "disconnect":
                    # Cut the TCP connection mid-stream: the SDK sees a transport error.
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await _event(
                    response,
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                )
                return response
            await _event(
                response,
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            sent += len(piece)
            if not rewriting:  # the log follows answers, which is what benchmarks measure
                self.sent_log.append((time.monotonic(), text, sent))
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
        await _event(response, "content_block_stop", {"type": "content_block_stop", "index": 0})
        await _event(
            response,
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": max(1, len(text.split()))},
            },
        )
        await _event(response, "message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response


async def _event(response: web.StreamResponse, name: str, data: dict[str, Any]) -> None:
    await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())


def _api_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def _block_problem(body: dict[str, Any]) -> str:
    """What the Messages API would reject in content blocks (the shapes the bot sends), or ''."""
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            continue
        for block in content:
            kind, source = block.get("type"), block.get("source") or {}
            if kind == "text" and isinstance(block.get("text"), str):
                continue
            if kind == "image" and source.get("type") == "base64" and source.get("media_type") in IMAGE_TYPES:
                continue
            if kind == "document" and (
                (source.get("type") == "base64" and source.get("media_type") == "application/pdf")
                or (source.get("type") == "text" and source.get("media_type") == "text/plain")
            ):
                continue
            return f"messages: invalid content block {kind!r}"
    return ""


def _count_words(body: dict[str, Any]) -> int:
    return len(json.dumps(body).split())
