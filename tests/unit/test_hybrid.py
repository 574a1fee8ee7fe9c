"""The embedded hybrid retriever's own rules: one SQLite file, vectors written with their text,
other processes' writes seen, and keyword search still answering when the embedder cannot."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.ingest import chunk_id
from core.messages import Platform, WorkspaceRef
from core.retrieval.base import Chunk
from core.retrieval.embedders import EmbedderUnavailable, LocalEmbedder, identity
from core.retrieval.fusion import Fusion, fuse, reciprocal_rank_fusion
from core.retrieval.hybrid import HybridRetriever

WS = WorkspaceRef(Platform.SLACK, "T-hy")


def chunk(uri: str, text: str, index: int = 0, title: str = "Doc") -> Chunk:
    return Chunk(chunk_id(WS.key, uri, index), uri, title, "", text, index)


class QueriesFail(LocalEmbedder):
    """The real model for documents; every question's embedding fails, as an outage of an HTTP embedder would."""

    async def embed_query(self, query: str) -> list[float]:
        raise EmbedderUnavailable("the embeddings API failed: 503")


class Counting(LocalEmbedder):
    """The default model, counting the passages it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        return await super().embed(texts)


class OtherModel(Counting):
    """The same weights under another name: as far as the index knows, another model (same dimension)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "another-model"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[-x for x in v] for v in await super().embed(texts)]  # vectors unlike the default model's


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_vectors_live_and_die_with_their_text(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.sqlite"
    retriever = await HybridRetriever.open(path, LocalEmbedder())
    try:
        chunks = [chunk("a://d", "the garage opens at seven", 0), chunk("a://d", "bikes go in the basement", 1)]
        await retriever.replace_document(WS, "a://d", chunks)
        await retriever.replace_document(WS, "a://d", chunks)
        assert rows(path, "chunks") == rows(path, "chunk_vectors") == 2
        await retriever.delete_document(WS, "a://d")
        assert rows(path, "chunks") == rows(path, "chunk_vectors") == 0
        assert await retriever.search(WS, "garage", k=5) == []
    finally:
        await retriever.close()


async def test_a_write_by_another_process_is_seen_by_the_next_search(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.sqlite"
    reader = await HybridRetriever.open(path, LocalEmbedder(), fusion=Fusion(keyword_weight=0, vector_weight=1))
    writer = await HybridRetriever.open(path, LocalEmbedder())
    try:
        await writer.replace_document(WS, "a://lunch", [chunk("a://lunch", "The canteen serves lunch at noon.")])
        assert [h.chunk.document_uri for h in await reader.search(WS, "when can I eat", k=5)] == ["a://lunch"]
        car = chunk("a://car", "Cars are parked in the garage, levels B1 and B2.")
        await writer.replace_document(WS, "a://car", [car])
        hits = await reader.search(WS, "where can I park my car", k=5)  # the cached matrix is stale now
        assert hits[0].chunk.document_uri == "a://car"
        await writer.delete_document(WS, "a://car")
        assert [h.chunk.document_uri for h in await reader.search(WS, "where can I park my car", k=5)] == ["a://lunch"]
    finally:
        await reader.close()
        await writer.close()


async def test_keyword_search_answers_when_the_question_cannot_be_embedded(tmp_path: Path) -> None:
    retriever = await HybridRetriever.open(tmp_path / "knowledge.sqlite", QueriesFail())
    try:
        await retriever.replace_document(WS, "a://vpn", [chunk("a://vpn", "The wireguard profile expires quarterly.")])
        hits = await retriever.search(WS, "wireguard profile", k=3)
        assert [h.chunk.document_uri for h in hits] == ["a://vpn"]
    finally:
        await retriever.close()


async def test_vectors_of_another_dimension_are_not_compared(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.sqlite"
    retriever = await HybridRetriever.open(path, LocalEmbedder())
    try:
        await retriever.replace_document(WS, "a://d", [chunk("a://d", "quarterly wireguard rotation")])
        with sqlite3.connect(path) as db:  # as if the database had been filled by another embedder
            db.execute("UPDATE chunk_vectors SET vector = ?", (b"\x00" * 16,))
            db.execute("UPDATE vector_generations SET generation = generation + 1")
        hits = await retriever.search(WS, "wireguard rotation", k=3)
        assert [h.chunk.document_uri for h in hits] == ["a://d"]  # the keyword side still finds it
    finally:
        await retriever.close()


async def test_vectors_of_another_model_are_re_embedded_before_any_search(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.sqlite"
    parking = chunk("a://car", "Cars are parked in the garage, levels B1 and B2.")
    lunch = chunk("a://lunch", "The canteen serves lunch at noon.")
    first = await HybridRetriever.open(path, LocalEmbedder())
    try:
        await first.replace_document(WS, "a://car", [parking])
        await first.replace_document(WS, "a://lunch", [lunch])
    finally:
        await first.close()
    with sqlite3.connect(path) as db:  # as an index from before the model was recorded (made by MiniLM)
        db.execute("DELETE FROM vector_model")
    same = Counting()
    await (await HybridRetriever.open(path, same)).close()
    assert same.calls == []  # the same model: nothing re-embedded, only recorded
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT identity FROM vector_model").fetchone() == (identity(same),)
    other = OtherModel()
    vector_only = Fusion(keyword_weight=0, vector_weight=1)
    second = await HybridRetriever.open(path, other, fusion=vector_only)
    try:
        assert other.calls == [2]  # both stored chunks, re-embedded once, at open
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT identity FROM vector_model").fetchone() == ("another-model (384 dimensions)",)
        # Negated vectors rank the opposite way: were the old vectors still there, lunch would come first.
        hits = await second.search(WS, "where can I park my car", k=2)
        assert [h.chunk.document_uri for h in hits] == ["a://lunch", "a://car"]
    finally:
        await second.close()
    again = OtherModel()
    third = await HybridRetriever.open(path, again, fusion=vector_only)
    await third.close()
    assert again.calls == []  # recorded: nothing to redo


def test_reciprocal_rank_fusion_rewards_agreement_and_weights() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "d"]])
    assert [key for key, _ in fused][:2] == ["b", "c"] or [key for key, _ in fused][:2] == ["c", "b"]
    assert {key for key, _ in fused} == {"a", "b", "c", "d"}
    assert fused[0][1] > fused[-1][1]
    weighted = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], [1.0, 2.0])
    assert [key for key, _ in weighted] == ["b", "a"]
    only_first = reciprocal_rank_fusion([["a"], ["z"]], [1.0, 0.0])
    assert only_first == [("a", 1.0 / 61)]


def test_relative_score_fusion_scales_each_side_then_weighs_them() -> None:
    keyword = [("a", 12.0), ("b", 7.0), ("c", 2.0)]  # BM25: unbounded
    vector = [("c", 0.61), ("d", 0.60), ("a", 0.20)]  # cosine: a narrow band
    fused = fuse(keyword, vector, Fusion(keyword_weight=0.3, vector_weight=0.7), 10)
    scores = dict(fused)
    assert scores["a"] == pytest.approx(0.3 * 1.0 + 0.7 * 0.0)
    assert scores["c"] == pytest.approx(0.3 * 0.0 + 0.7 * 1.0)
    assert scores["d"] == pytest.approx(0.7 * (0.40 / 0.41))
    assert [key for key, _ in fused] == ["c", "d", "a", "b"]
    assert [key for key, _ in fuse(keyword, vector, Fusion(method="rrf", vector_weight=0), 2)] == ["a", "b"]
    assert fuse([], [("x", 0.5)], Fusion(), 5) == [("x", 0.7)]


async def test_a_passage_of_a_document_about_the_question_outranks_its_twin_elsewhere(tmp_path: Path) -> None:
    twin = "Levels B1 and B2 are reserved; the gate opens at seven."
    retriever = await HybridRetriever.open(
        tmp_path / "knowledge.sqlite", LocalEmbedder(), fusion=Fusion(keyword_weight=0, document_weight=0.2)
    )
    try:
        for uri, opening in (("a://servers", "Data center operations and rack power."), ("a://parking", "Car parking")):
            await retriever.replace_document(WS, uri, [chunk(uri, opening, 0), chunk(uri, twin, 1)])
        hits = await retriever.search(WS, "which floors can I park my car on?", k=4)
        twins = [h.chunk.document_uri for h in hits if h.chunk.text == twin]
        # The same words score the same on their own; the document each sits in decides.
        assert twins == ["a://parking", "a://servers"]
    finally:
        await retriever.close()
