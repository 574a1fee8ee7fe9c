"""The embedded default: FTS5 keyword search and local vectors in one SQLite file, fused.

Vectors (float32, unit length) live in a table next to the FTS5 index, keyed by the same rowid,
and are written in the same transaction as the text, so the two indexes never disagree. Search
reads a workspace's vectors as one NumPy matrix (cached per workspace and reloaded when that
workspace's generation number changes, so writes by other processes are seen too) and fuses the
best `candidates` of each side (core/retrieval/fusion.py). bench/retrieval.py measured a brute-force
matrix product at 10,000 chunks well inside the 50 ms budget, so no ANN index is needed here.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from core.messages import WorkspaceRef
from core.retrieval import fts
from core.retrieval.base import Chunk, Hit
from core.retrieval.embedders import UNRECORDED_IDENTITY, Embedder, EmbedderUnavailable, identity
from core.retrieval.fusion import DEFAULT_FUSION, Fusion, embedding_text, fuse
from core.sqlite_worker import SqliteWorker

log = structlog.get_logger(__name__)

SCHEMA = (
    fts.SCHEMA
    + """
CREATE TABLE IF NOT EXISTS chunk_vectors (
    chunk_rowid INTEGER PRIMARY KEY, ws TEXT NOT NULL, document_uri TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunk_vectors_document ON chunk_vectors (ws, document_uri);
CREATE TABLE IF NOT EXISTS vector_generations (ws TEXT PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vector_model (only INTEGER PRIMARY KEY CHECK (only = 1), identity TEXT NOT NULL);
"""
)


class _Matrix:
    """One workspace's vectors: rowids, a (n, dimensions) float32 matrix, and for each row the row of
    its document's opening chunk."""

    def __init__(self, generation: int, rowids: Any, matrix: Any, openings: Any) -> None:
        self.generation = generation
        self.rowids = rowids
        self.matrix = matrix
        self.openings = openings


class HybridRetriever:
    def __init__(self, path: Path, embedder: Embedder, *, fusion: Fusion = DEFAULT_FUSION) -> None:
        self.path = path
        self.embedder = embedder
        self.fusion = fusion
        self._worker = SqliteWorker(path, SCHEMA, name="knowledge")
        self._matrices: dict[str, _Matrix] = {}  # touched only on the worker thread

    @classmethod
    async def open(cls, path: Path, embedder: Embedder, *, fusion: Fusion = DEFAULT_FUSION) -> HybridRetriever:
        retriever = cls(path, embedder, fusion=fusion)
        await retriever._worker.open()
        try:
            await retriever._match_model()
        except BaseException:
            await retriever.close()
            raise
        return retriever

    async def _match_model(self) -> None:
        """Make every stored vector this embedder's: vectors another model made (the default model
        changed, or CHATBOT_EMBEDDER did) are re-embedded from the stored text before any search,
        never compared with this model's. The model is recorded by `identity`."""
        wanted = identity(self.embedder)

        def recorded(db: sqlite3.Connection) -> tuple[str | None, int]:
            row = db.execute("SELECT identity FROM vector_model").fetchone()
            return (str(row[0]) if row else None, int(db.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0]))

        model, count = await self._worker.read(recorded)
        if model == wanted:
            return
        made_by = model or UNRECORDED_IDENTITY
        redo = count > 0 and made_by != wanted
        updates: list[tuple[bytes, int]] = []
        if redo:
            log.warning("hybrid.reembedding", made_by=made_by, now=wanted, chunks=count)
            rows = await self._worker.read(
                lambda db: db.execute(
                    "SELECT v.chunk_rowid, c.title, c.heading, c.text FROM chunk_vectors v "
                    "JOIN chunks c ON c.rowid = v.chunk_rowid"
                ).fetchall()
            )
            for start in range(0, len(rows), 256):
                part = rows[start : start + 256]
                texts = [embedding_text(Chunk("", "", str(r[1]), str(r[2]), str(r[3]), 0)) for r in part]
                vectors = await self.embedder.embed(texts)
                updates += [(_blob(v), int(r[0])) for r, v in zip(part, vectors, strict=True)]

        def record(db: sqlite3.Connection) -> None:
            if redo:
                db.executemany("UPDATE chunk_vectors SET vector = ? WHERE chunk_rowid = ?", updates)
                db.execute("UPDATE vector_generations SET generation = generation + 1")
            db.execute("INSERT OR REPLACE INTO vector_model (only, identity) VALUES (1, ?)", (wanted,))

        await self._worker.transaction(record)

    async def replace_document(self, ws: WorkspaceRef, document_uri: str, chunks: Sequence[Chunk]) -> None:
        # Embedding is the slow part: done before the write transaction, so readers are never held up.
        vectors = await self.embedder.embed([embedding_text(c) for c in chunks])
        blobs = [_blob(v) for v in vectors]

        def replace(db: sqlite3.Connection) -> None:
            _delete(db, ws, document_uri)
            rowids = fts.insert_rows(db, ws, document_uri, chunks)
            db.executemany(
                "INSERT INTO chunk_vectors (chunk_rowid, ws, document_uri, vector) VALUES (?, ?, ?, ?)",
                [(rowid, ws.key, document_uri, blob) for rowid, blob in zip(rowids, blobs, strict=True)],
            )
            _bump(db, ws)

        await self._worker.transaction(replace)

    async def delete_document(self, ws: WorkspaceRef, document_uri: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            _delete(db, ws, document_uri)
            _bump(db, ws)

        await self._worker.transaction(delete)

    async def search(self, ws: WorkspaceRef, query: str, *, k: int = 5) -> Sequence[Hit]:
        if not query.strip():
            return []
        depth = max(k, self.fusion.candidates)
        # The question's embedding (model thread) and the keyword search (database thread) run at once.
        embedding = asyncio.create_task(self._embed_query(query)) if self.fusion.vector_weight > 0 else None
        try:
            keyword = (
                await self._worker.read(lambda db: fts.keyword_search(db, ws, query, depth))
                if self.fusion.keyword_weight > 0
                else []
            )
        except BaseException:
            if embedding is not None:
                embedding.cancel()
            raise
        vector = await embedding if embedding is not None else None
        return await self._worker.read(lambda db: self._fuse(db, ws, keyword, vector, depth, k))

    async def _embed_query(self, query: str) -> list[float] | None:
        try:
            return await self.embedder.embed_query(query)
        except EmbedderUnavailable as exc:  # keyword search still answers
            log.warning("hybrid.embedder_unavailable", error=str(exc))
            return None

    def _fuse(
        self,
        db: sqlite3.Connection,
        ws: WorkspaceRef,
        keyword: list[tuple[int, float]],
        vector: list[float] | None,
        depth: int,
        k: int,
    ) -> list[Hit]:
        nearest = self._nearest(db, ws, vector, depth) if vector is not None else []
        fused = fuse(
            [(str(rowid), score) for rowid, score in keyword],
            [(str(rowid), score) for rowid, score in nearest],
            self.fusion,
            k,
        )
        # Only the chosen few are read whole (their text is most of a row).
        known = fts.chunks_by_rowid(db, ws, [int(key) for key, _ in fused])
        return [Hit(known[int(key)], score) for key, score in fused if int(key) in known]

    def _nearest(
        self, db: sqlite3.Connection, ws: WorkspaceRef, vector: list[float], depth: int
    ) -> list[tuple[int, float]]:
        """(rowid, cosine similarity) of the `depth` nearest chunks, nearest first."""
        import numpy as np

        entry = self._matrix(db, ws)
        if entry.matrix.shape[0] == 0:
            return []
        query = np.asarray(vector, dtype=np.float32)
        if query.shape[0] != entry.matrix.shape[1]:
            # Vectors from another embedder (the setting changed): they cannot be compared.
            log.warning("hybrid.dimension_mismatch", stored=entry.matrix.shape[1], query=query.shape[0])
            return []
        similarities = entry.matrix @ query
        share = self.fusion.document_weight
        scores = (1 - share) * similarities + share * similarities[entry.openings] if share else similarities
        depth = min(depth, scores.shape[0])
        top = np.argpartition(-scores, depth - 1)[:depth]
        return [(int(entry.rowids[i]), float(scores[i])) for i in top[np.argsort(-scores[top])]]

    def _matrix(self, db: sqlite3.Connection, ws: WorkspaceRef) -> _Matrix:
        import numpy as np

        row = db.execute("SELECT generation FROM vector_generations WHERE ws = ?", (ws.key,)).fetchone()
        generation = int(row[0]) if row else 0
        cached = self._matrices.get(ws.key)
        if cached is not None and cached.generation == generation:
            return cached
        rows = db.execute(
            "SELECT v.chunk_rowid, v.vector, v.document_uri, c.idx FROM chunk_vectors v "
            "JOIN chunks c ON c.rowid = v.chunk_rowid WHERE v.ws = ?",
            (ws.key,),
        ).fetchall()
        rowids = np.array([r[0] for r in rows], dtype=np.int64)
        opening: dict[str, tuple[int, int]] = {}  # document -> (lowest chunk index, its row)
        for position, r in enumerate(rows):
            if r[2] not in opening or int(r[3]) < opening[r[2]][0]:
                opening[r[2]] = (int(r[3]), position)
        openings = np.array([opening[r[2]][1] for r in rows], dtype=np.int64)
        if rows:
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        else:
            matrix = np.zeros((0, 0), dtype=np.float32)
        entry = _Matrix(generation, rowids, matrix, openings)
        self._matrices[ws.key] = entry
        return entry

    async def close(self) -> None:
        await self._worker.close()


def _blob(vector: Sequence[float]) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()


def _delete(db: sqlite3.Connection, ws: WorkspaceRef, document_uri: str) -> None:
    fts.delete_rows(db, ws, document_uri)
    db.execute("DELETE FROM chunk_vectors WHERE ws = ? AND document_uri = ?", (ws.key, document_uri))


def _bump(db: sqlite3.Connection, ws: WorkspaceRef) -> None:
    db.execute(
        "INSERT INTO vector_generations (ws, generation) VALUES (?, 1) "
        "ON CONFLICT (ws) DO UPDATE SET generation = generation + 1",
        (ws.key,),
    )
