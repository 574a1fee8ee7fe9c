"""The embedded retriever: SQLite FTS5 with BM25, rows keyed by workspace."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from core.messages import WorkspaceRef
from core.retrieval.base import Chunk, Hit
from core.sqlite_worker import SqliteWorker

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
    the question are just text), OR-ed. No prefix matching: the porter tokenizer already folds word
    forms, and prefix terms doubled a search's cost at 10,000 chunks for no measured gain
    (bench/retrieval.py: the same recall on both sets, doc-worded and paraphrased)."""
    words = [w.lower() for w in _TOKEN.findall(query)]
    terms = [w for w in words if w not in STOPWORDS] or words
    seen: list[str] = []
    for word in terms:
        if word not in seen:
            seen.append(word)
    return " OR ".join(f'"{w}"' for w in seen[:32])


SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
    id UNINDEXED, ws UNINDEXED, document_uri UNINDEXED, idx UNINDEXED, title, heading, text,
    tokenize = 'porter unicode61 remove_diacritics 2');
"""
_COLUMNS = "rowid, id, document_uri, idx, title, heading, text"


def delete_rows(db: sqlite3.Connection, ws: WorkspaceRef, document_uri: str) -> None:
    db.execute("DELETE FROM chunks WHERE ws = ? AND document_uri = ?", (ws.key, document_uri))


def insert_rows(db: sqlite3.Connection, ws: WorkspaceRef, document_uri: str, chunks: Sequence[Chunk]) -> list[int]:
    """The rows' rowids, in order (the hybrid retriever keys its vectors by them)."""
    rowids = []
    for c in chunks:
        cursor = db.execute(
            "INSERT INTO chunks (id, ws, document_uri, idx, title, heading, text) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (c.id, ws.key, document_uri, c.index, c.title, c.heading, c.text),
        )
        rowids.append(int(cursor.lastrowid or 0))
    return rowids


def _chunk(row: sqlite3.Row | tuple[object, ...]) -> Chunk:
    return Chunk(
        id=str(row[1]),
        document_uri=str(row[2]),
        index=int(str(row[3])),
        title=str(row[4]),
        heading=str(row[5]),
        text=str(row[6]),
    )


# How many times `k` the workspace-blind ranking reads before it checks workspaces (see keyword_search).
_OVERFETCH = 4


def keyword_search(db: sqlite3.Connection, ws: WorkspaceRef, query: str, k: int) -> list[tuple[int, float]]:
    """(rowid, score) of `ws`'s best `k` chunks, best first; bm25() is lower-is-better and negative,
    so scores are flipped.

    `ws` is an UNINDEXED column: filtering on it inside the MATCH query reads every matching row's
    whole record (text included) before ranking, the main cost of a search at 10,000 chunks. So the
    ranking runs without it, reading only the index, and the workspace of the best `_OVERFETCH * k`
    rows is then checked by rowid. The workspace's best rows are among those whenever at least `k` of
    them are; only when they are not (other workspaces crowd the top) does the filtered query run.
    The result is the same either way: bm25's statistics span the whole table in both.
    """
    expression = match_expression(query)
    if not expression or k <= 0:
        return []
    limit = _OVERFETCH * k
    ranked = db.execute(
        f"SELECT rowid, bm25(chunks, {_WEIGHTS}) AS rank FROM chunks WHERE chunks MATCH ? ORDER BY rank LIMIT ?",
        (expression, limit),
    ).fetchall()
    if ranked:
        marks = ", ".join("?" * len(ranked))
        ours = {
            int(r[0])
            for r in db.execute(
                f"SELECT rowid FROM chunks WHERE rowid IN ({marks}) AND ws = ?", (*(r[0] for r in ranked), ws.key)
            )
        }
        found = [(int(r[0]), -float(r[1])) for r in ranked if int(r[0]) in ours]
        if len(found) >= k or len(ranked) < limit:
            return found[:k]
    rows = db.execute(
        f"SELECT rowid, bm25(chunks, {_WEIGHTS}) AS rank FROM chunks WHERE chunks MATCH ? AND ws = ? "
        "ORDER BY rank LIMIT ?",
        (expression, ws.key, k),
    ).fetchall()
    return [(int(r[0]), -float(r[1])) for r in rows]


def chunks_by_rowid(db: sqlite3.Connection, ws: WorkspaceRef, rowids: Sequence[int]) -> dict[int, Chunk]:
    if not rowids:
        return {}
    marks = ", ".join("?" * len(rowids))
    rows = db.execute(f"SELECT {_COLUMNS} FROM chunks WHERE rowid IN ({marks}) AND ws = ?", (*rowids, ws.key))
    return {int(r[0]): _chunk(r) for r in rows}


class FtsRetriever:
    """Keyword search alone (CHATBOT_RETRIEVAL=keyword): no model, no vectors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, SCHEMA, name="fts")

    @classmethod
    async def open(cls, path: Path) -> FtsRetriever:
        retriever = cls(path)
        await retriever._worker.open()
        return retriever

    async def replace_document(self, ws: WorkspaceRef, document_uri: str, chunks: Sequence[Chunk]) -> None:
        def replace(db: sqlite3.Connection) -> None:
            delete_rows(db, ws, document_uri)
            insert_rows(db, ws, document_uri, chunks)

        await self._worker.transaction(replace)

    async def delete_document(self, ws: WorkspaceRef, document_uri: str) -> None:
        await self._worker.transaction(lambda db: delete_rows(db, ws, document_uri))

    async def search(self, ws: WorkspaceRef, query: str, *, k: int = 5) -> Sequence[Hit]:
        def search(db: sqlite3.Connection) -> list[Hit]:
            ranked = keyword_search(db, ws, query, k)
            chunks = chunks_by_rowid(db, ws, [rowid for rowid, _ in ranked])
            return [Hit(chunks[rowid], score) for rowid, score in ranked if rowid in chunks]

        return await self._worker.read(search)

    async def close(self) -> None:
        await self._worker.close()
