"""The no-key fallback: an answer made of the best retrieved passages' matching sentences, labelled as such.

For each of the best passages it shows the whole sentences that share the most words with the
question (a word matches its longer forms: "rollback" matches "rollbacks", as FTS5 prefix search
does), in the passage's own order; a passage found by meaning alone, with no word in common, shows
its opening sentences. Sentences are never cut in the middle, except a single run-on "sentence"
(a code block, a table) longer than MAX_SENTENCE_CHARS.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

from core.llm.base import Prompt
from core.messages import Source, Usage
from core.retrieval.fts import STOPWORDS

LABEL = "_No language model is configured, so here are the most relevant passages from your knowledge base:_"
NOTHING_FOUND = (
    "_No language model is configured, and nothing in the knowledge base matches this question. "
    "Add documents with `chatbot ingest`, or set ANTHROPIC_API_KEY for full answers._"
)
MAX_SENTENCE_CHARS = 500
PREFIX = 5  # a question word this long also matches words it begins (plural, -ing, -ed forms)
_WORD = re.compile(r"[\w']+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9`])")


def question_terms(question: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(question) if len(w) > 2 and w.lower() not in STOPWORDS}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]


def matches(terms: set[str], sentence: str) -> int:
    """How many of the question's terms the sentence contains (each term once)."""
    words = {w.lower() for w in _WORD.findall(sentence)}
    return sum(1 for term in terms if term in words or (len(term) >= PREFIX and any(w.startswith(term) for w in words)))


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

    def compose(self, question: str, sources: Sequence[Source]) -> str:
        chosen = list(sources)[: self.max_passages]
        if not chosen:
            return NOTHING_FOUND
        terms = question_terms(question)
        lines = [LABEL, ""]
        for source in chosen:
            excerpt = self.best_sentences(source.text, terms)
            if excerpt:
                lines.append(f"> {excerpt} [{source.index}]")
                lines.append("")
        return "\n".join(lines).rstrip()

    def best_sentences(self, text: str, terms: set[str]) -> str:
        found = sentences(text)
        if not found:
            return ""
        scores = [matches(terms, s) for s in found]
        ranked = sorted((i for i in range(len(found)) if scores[i] > 0), key=lambda i: -scores[i])
        # No word in common (a passage found by meaning): its opening sentences say what it is about.
        keep = sorted(ranked[: self.sentences_per_passage]) or list(range(min(2, len(found))))
        return " ".join(_bounded(found[i]) for i in keep)


def _bounded(sentence: str) -> str:
    if len(sentence) <= MAX_SENTENCE_CHARS:
        return sentence
    return sentence[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"
