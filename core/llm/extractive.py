"""The no-key fallback: an answer made of the best retrieved passages, clearly labelled as such."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from core.llm.base import Prompt
from core.messages import Source, Usage

LABEL = "_No language model is configured, so here are the most relevant passages from your knowledge base:_"
NOTHING_FOUND = (
    "_No language model is configured, and nothing in the knowledge base matches this question. "
    "Add documents with `chatbot ingest`, or set ANTHROPIC_API_KEY for full answers._"
)
_WORD = re.compile(r"[\w']+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class ExtractiveLLM:
    name = "extractive (no ANTHROPIC_API_KEY)"

    def __init__(self, *, max_passages: int = 3, sentences_per_passage: int = 3) -> None:
        self.max_passages = max_passages
        self.sentences_per_passage = sentences_per_passage

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Usage]:
        question = prompt.turns[-1].content if prompt.turns else ""
        answer = self.compose(question, prompt.sources)
        # Streamed in small pieces, like a model would, so every surface paces it the same way.
        for piece in re.findall(r"\S+\s*|\s+", answer):
            yield piece
            await asyncio.sleep(0)
        yield Usage(0, 0)

    def compose(self, question: str, sources: list[Source] | tuple[Source, ...] | object) -> str:
        chosen = list(sources)[: self.max_passages] if isinstance(sources, list | tuple) else []
        if not chosen:
            return NOTHING_FOUND
        terms = {w.lower() for w in _WORD.findall(question) if len(w) > 2}
        lines = [LABEL, ""]
        for source in chosen:
            lines.append(f"> {self._best_sentences(source.text, terms)} [{source.index}]")
            lines.append("")
        return "\n".join(lines).rstrip()

    def _best_sentences(self, text: str, terms: set[str]) -> str:
        sentences = [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]
        if not sentences:
            return ""
        scored = sorted(
            range(len(sentences)),
            key=lambda i: -len(terms & {w.lower() for w in _WORD.findall(sentences[i])}),
        )
        keep = sorted(scored[: self.sentences_per_passage])  # in the document's own order
        excerpt = " ".join(sentences[i] for i in keep)
        return excerpt if len(excerpt) <= 700 else excerpt[:697].rstrip() + "…"
