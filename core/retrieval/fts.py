"""The embedded retriever: SQLite FTS5 with BM25, rows keyed by workspace."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from core.messages import WorkspaceRef
from core.retrieval.base import Chunk, Hit
from core.sqlite_worker import SqliteWorker

T = TypeVar("T")

# Title and heading path count more than body text: they say what a passage is about.
_WEIGHTS = "0, 0, 0, 0, 4.0, 2.5, 1.0"
_TOKEN = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    }
)


def match_expression(query: str) -> str:
    """A safe FTS5 MATCH expression: each meaningful word quoted (so punctuation and operators in
    the question are just text), OR-ed, with prefix matching for longer words."""
    words = [w.lower() for w in _TOKEN.findall(query)]
    terms = [w for w in words if w not in STOPWORDS] or words
    seen: list[str] = []
    for word in terms:
        if word not in seen:
            seen.append(word)
    return " OR ".join(f'"{w}"*' if len(w) >= 5 else f'"{w}"' for w in seen[:32])


SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
    id UNINDEXED, ws UNINDEXED, document_uri UNINDEXED, idx UNINDEXED, title, heading, text,
    tokenize = 'porter unicode61 remove_diacritics 2');
"""


class FtsRetriever:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, SCHEMA, name="fts")

    @classmethod
    async def open(cls, path: Path) -> FtsRetriever:
        retriever = cls(path)
        await retriever._worker.open()
        return retriever

    async def replace_document(self, ws: WorkspaceRef, document_uri: str, chunks: Sequence[Chunk]) -> None:
        rows = [(c.id, ws.key, document_uri, c.index, c.title, c.heading, c.text) for c in chunks]

        def replace(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM chunks WHERE ws = ? AND document_uri = ?", (ws.key, document_uri))
            db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

        await self._worker.transaction(replace)

    async def delete_document(self, ws: WorkspaceRef, document_uri: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM chunks WHERE ws = ? AND document_uri = ?", (ws.key, document_uri))

        await self._worker.transaction(delete)

    async def search(self, ws: WorkspaceRef, query: str, *, k: int = 5) -> Sequence[Hit]:
        expression = match_expression(query)
        if not expression:
            return []

        def search(db: sqlite3.Connection) -> list[Hit]:
            rows = db.execute(
                f"SELECT id, document_uri, idx, title, heading, text, bm25(chunks, {_WEIGHTS}) AS rank "
                "FROM chunks WHERE chunks MATCH ? AND ws = ? ORDER BY rank LIMIT ?",
                (expression, ws.key, k),
            ).fetchall()
            # bm25() is lower-is-better and negative; flip it so higher scores are better everywhere.
            return [
                Hit(Chunk(id=r[0], document_uri=r[1], index=int(r[2]), title=r[3], heading=r[4], text=r[5]), -r[6])
                for r in rows
            ]

        return await self._worker.read(search)

    async def close(self) -> None:
        await self._worker.close()
