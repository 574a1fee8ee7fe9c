"""Question rewriting: the thread's recent turns and the question, turned into search queries.

"and on Windows?" cannot be searched; "configure line endings on Windows" can. When an LLM is
configured, a small fast model call rewrites the question into up to MAX_QUERIES queries, which
are searched alongside the raw question and fused by reciprocal rank. The call is bounded
(`timeout_s`, default 0.6 s: the whole budget it may add before the answer starts, the searches
of the rewritten queries included) and any failure or timeout falls back to the raw question
alone. The raw question's search starts at once, in parallel with the rewrite.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from core.llm.base import LLM, Prompt, Turn
from core.messages import Usage, WorkspaceRef
from core.retrieval.base import Hit, Retriever
from core.retrieval.fusion import reciprocal_rank_fusion

log = structlog.get_logger(__name__)

MAX_QUERIES = 3
MAX_QUERY_CHARS = 200
RECENT_TURNS = 4
TURN_CHARS = 600
SYSTEM = (
    "You turn a chat user's latest question into search queries for the team's documentation search "
    "(keyword and semantic). Use the earlier turns only to resolve what the question refers to. "
    f"Write 1 to {MAX_QUERIES} short queries, one per line, each a complete stand-alone request that "
    "names the tool, command or topic and the technical terms the documentation would use. "
    "Output only the queries: no numbering, no quotes, no commentary."
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


@dataclass(frozen=True, slots=True)
class RecentTurn:
    role: str  # "user" or "assistant"
    text: str


class QueryRewriter:
    def __init__(self, llm: LLM, *, model: str = "", timeout_s: float = 0.6, max_tokens: int = 120) -> None:
        self.llm = llm
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens

    def prompt(self, question: str, recent: Sequence[RecentTurn]) -> Prompt:
        context = "\n".join(f"{t.role}: {' '.join(t.text.split())[:TURN_CHARS]}" for t in recent[-RECENT_TURNS:])
        body = (f"Earlier in the thread:\n{context}\n\n" if context else "") + f"Latest question: {question}"
        return Prompt(system=SYSTEM, turns=[Turn("user", body)], model=self.model, max_tokens=self.max_tokens)

    async def rewrite(self, question: str, recent: Sequence[RecentTurn] = ()) -> list[str]:
        """The rewritten queries, or [] (meaning: use the raw question alone) on any failure."""
        parts: list[str] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                async for item in self.llm.stream(self.prompt(question, recent)):
                    if not isinstance(item, Usage):
                        parts.append(item)
        except TimeoutError:
            log.info("rewrite.timeout", after_s=self.timeout_s)
            return []
        except Exception as exc:  # rewriting is an optimisation: it must never fail a question
            log.warning("rewrite.failed", error=repr(exc))
            return []
        return parse_queries("".join(parts), question)


def parse_queries(text: str, question: str) -> list[str]:
    queries: list[str] = []
    for line in text.splitlines():
        query = _BULLET.sub("", line).strip().strip('"').strip()
        if query and query.lower() != question.strip().lower() and query not in queries:
            queries.append(query[:MAX_QUERY_CHARS])
    return queries[:MAX_QUERIES]


async def search_rewritten(
    retriever: Retriever,
    rewriter: QueryRewriter | None,
    ws: WorkspaceRef,
    question: str,
    recent: Sequence[RecentTurn],
    *,
    k: int,
) -> list[Hit]:
    """The raw question's hits, fused with those of its rewritten queries when there are any.

    The rewriter's `timeout_s` bounds everything rewriting adds: the model call and then the
    searches of its queries; whatever is not done by then is dropped and the raw hits are used.
    """
    raw = asyncio.create_task(retriever.search(ws, question, k=k))
    if rewriter is None:
        return list(await raw)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + rewriter.timeout_s
    try:
        queries = await rewriter.rewrite(question, recent)
        rewritten: list[Sequence[Hit]] = []
        if queries:
            searches = asyncio.gather(*(retriever.search(ws, q, k=k) for q in queries))
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    rewritten = list(await searches)
            except TimeoutError:
                log.info("rewrite.searches_too_slow", queries=len(queries))
    except BaseException:
        raw.cancel()
        raise
    results = [await raw, *rewritten]
    if len(results) == 1:
        return list(results[0])
    hits = {hit.chunk.id: hit for result in results for hit in result}
    # Each query counts once, the raw question too: a follow-up like "and on Windows?" is exactly the
    # case where the raw question is the weakest query, so it must not outvote the rewrites.
    fused = reciprocal_rank_fusion([[h.chunk.id for h in result] for result in results])[:k]
    return [Hit(hits[key].chunk, score) for key, score in fused]
