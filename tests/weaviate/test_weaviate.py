"""Weaviate specifics on a real server: rejected objects, outages and recovery, degraded answers."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from bots.shell.shell import StreamSurface
from core.ingest import Ingestor, chunk_id
from core.llm.extractive import ExtractiveLLM
from core.messages import Actor, IncomingMessage, Platform, PlatformFacts, WorkspaceRef
from core.pacing import EditScheduler
from core.pipeline import NO_KNOWLEDGE_NOTE, Pipeline
from core.retrieval.base import Chunk, RetrieverUnavailable
from core.retrieval.embedders import LocalEmbedder
from core.retrieval.fusion import DEFAULT_FUSION, Fusion
from core.retrieval.weaviate import RetrieverWriteError, WeaviateRetriever, tenant_name
from core.stores.sqlite import SqliteStore
from tests.support.weaviate_server import WeaviateServer, free_ports, launch

WS = WorkspaceRef(Platform.SLACK, "T-wv")
ADMIN = Actor("U-admin", PlatformFacts(is_admin=True))


class ShortVectorFor(LocalEmbedder):
    """The real embedder, except that texts containing `marker` get a 3-dimensional vector,
    which the server must refuse once the collection holds 384-dimensional ones."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = await super().embed(texts)
        return [[0.1, 0.2, 0.3] if self.marker in t else v for t, v in zip(texts, vectors, strict=True)]


def chunk(uri: str, text: str, index: int = 0) -> Chunk:
    return Chunk(chunk_id(WS.key, uri, index), uri, "Doc", "", text, index)


@pytest.fixture
async def retriever(weaviate_server: WeaviateServer) -> AsyncIterator[WeaviateRetriever]:
    r = WeaviateRetriever(
        url=weaviate_server.url,
        grpc_port=weaviate_server.grpc_port,
        embedder=ShortVectorFor("BROKEN"),
        collection=f"Wv_{uuid.uuid4().hex}",
    )
    yield r
    await r.drop_collection()
    await r.close()


async def test_refused_objects_raise_with_their_messages(retriever: WeaviateRetriever) -> None:
    await retriever.replace_document(WS, "u://ok", [chunk("u://ok", "a healthy chunk")])
    with pytest.raises(RetrieverWriteError, match=r"refused 1 of 2 chunks \(#1: .+\)"):
        await retriever.replace_document(WS, "u://bad", [chunk("u://bad", "fine", 0), chunk("u://bad", "BROKEN", 1)])


async def test_unknown_workspace_has_no_hits(retriever: WeaviateRetriever) -> None:
    assert await retriever.search(WorkspaceRef(Platform.DISCORD, "never-ingested"), "anything") == []


class Renamed(LocalEmbedder):
    """The same weights under another name: to the collection, another model of the same dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "another-model"


async def test_a_collection_of_another_models_vectors_is_refused_not_mixed(weaviate_server: WeaviateServer) -> None:
    collection = f"Wv_{uuid.uuid4().hex}"
    made = WeaviateRetriever(
        url=weaviate_server.url, grpc_port=weaviate_server.grpc_port, embedder=LocalEmbedder(), collection=collection
    )
    other = WeaviateRetriever(
        url=weaviate_server.url, grpc_port=weaviate_server.grpc_port, embedder=Renamed(), collection=collection
    )
    try:
        await made.replace_document(WS, "u://a", [chunk("u://a", "the garage opens at seven")])
        with pytest.raises(RetrieverUnavailable, match=r"made by .+384 dimensions.+not by another-model"):
            await other.search(WS, "garage")
        with pytest.raises(RetrieverUnavailable, match="delete the collection and ingest the documents again"):
            await other.replace_document(WS, "u://b", [chunk("u://b", "lunch at noon")])
        assert [h.chunk.document_uri for h in await made.search(WS, "garage")] == ["u://a"]
    finally:
        await made.drop_collection()
        await made.close()
        await other.close()


async def test_bm25_finds_a_just_written_chunk_by_its_rare_words_among_many_matches(
    weaviate_server: WeaviateServer,
) -> None:
    # BlockMax-WAND in the pinned server drops such a chunk while it is in the memtable (weaviate#11780):
    # here it was missing from the top 5. scripts/weaviate runs the classic WAND index, which finds it first.
    keyword_only = WeaviateRetriever(
        url=weaviate_server.url,
        grpc_port=weaviate_server.grpc_port,
        embedder=LocalEmbedder(),
        collection=f"Wv_{uuid.uuid4().hex}",
        fusion=Fusion(keyword_weight=1.0, vector_weight=0.0),
    )
    common = ["branch", "commit", "merge", "remote", "index", "tree", "file", "change"]
    try:
        for n in range(60):  # more matches than the 40 candidates each side reads
            words = " ".join(common[(n * 7 + i * 3) % len(common)] for i in range(20))
            await keyword_only.replace_document(WS, f"u://{n}", [chunk(f"u://{n}", words)])
        target = "the reflog records where the tips of branches were " + " ".join(common * 2)
        await keyword_only.replace_document(WS, "u://target", [chunk("u://target", target)])
        hits = await keyword_only.search(WS, "reflog tips of branches commit merge", k=5)
        assert hits[0].chunk.document_uri == "u://target"
    finally:
        await keyword_only.drop_collection()
        await keyword_only.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[WeaviateServer]:
    """A server of this test's own, so stopping it disturbs nobody else."""
    server = launch(tmp_path / "weaviate")
    try:
        yield server
    finally:
        server.stop()


async def test_a_closed_port_raises_unavailable_quickly() -> None:
    http_port, grpc_port = free_ports(2)  # nothing listens on either
    retriever = WeaviateRetriever(url=f"http://127.0.0.1:{http_port}", grpc_port=grpc_port, embedder=LocalEmbedder())
    started = time.monotonic()
    try:
        with pytest.raises(RetrieverUnavailable):
            await retriever.search(WS, "anything")
        with pytest.raises(RetrieverUnavailable):
            await retriever.replace_document(WS, "u://x", [chunk("u://x", "text")])
        with pytest.raises(RetrieverUnavailable):
            await retriever.delete_document(WS, "u://x")
    finally:
        await retriever.close()
    assert time.monotonic() - started < 30


async def test_concurrent_ingest_of_real_documents_stays_isolated(weaviate_server: WeaviateServer) -> None:
    """Two workspaces ingest overlapping documents at once; each sees only its own, from either side of the fusion."""
    retriever = WeaviateRetriever(
        url=weaviate_server.url,
        grpc_port=weaviate_server.grpc_port,
        embedder=LocalEmbedder(),
        collection=f"Iso_{uuid.uuid4().hex}",
    )
    a, b = WorkspaceRef(Platform.SLACK, "T-iso"), WorkspaceRef(Platform.DISCORD, "T-iso")  # same key, other platform
    assert tenant_name(a) != tenant_name(b)

    async def fill(ws: WorkspaceRef, owner: str) -> None:
        for n in range(8):
            uri = f"doc://{n}"  # the same URIs in both workspaces
            text = f"The deploy runbook, part {n}: rollback with the release job. Owner {owner}."
            await retriever.replace_document(ws, uri, [Chunk(chunk_id(ws.key, uri, 0), uri, "Runbook", "", text, 0)])

    try:
        await asyncio.gather(fill(a, "alice"), fill(b, "bob"))
        for ws, owner in ((a, "alice"), (b, "bob")):
            for fusion in (Fusion(vector_weight=0), DEFAULT_FUSION, Fusion(keyword_weight=0), Fusion(method="rrf")):
                retriever.fusion = fusion
                hits = await retriever.search(ws, "how do I roll back a deploy", k=20)
                assert len(hits) == 8
                assert all(owner in h.chunk.text for h in hits)
    finally:
        await retriever.drop_collection()
        await retriever.close()


async def test_outage_degrades_then_recovers(own_server: WeaviateServer, tmp_path: Path) -> None:
    retriever = WeaviateRetriever(
        url=own_server.url, grpc_port=own_server.grpc_port, embedder=LocalEmbedder(), write_timeout_s=5
    )
    store = await SqliteStore.open(tmp_path / "store.sqlite")
    ingestor = Ingestor(store, retriever)
    doc = tmp_path / "vpn.md"
    doc.write_text("# VPN\nThe wireguard profile expires after ninety days.\n")
    try:
        assert (await ingestor.ingest(WS, ADMIN, [str(doc)])).chunks == 1
        own_server.stop()

        with pytest.raises(RetrieverUnavailable):
            await retriever.search(WS, "wireguard profile")

        # Ingest during the outage: a clear error, and the document is marked failed, not half-present.
        doc.write_text("# VPN\nThe openvpn profile never expires.\n")
        report = await ingestor.ingest(WS, ADMIN, [str(doc)])
        assert report.failed and "knowledge store failed" in report.failed[0][1]
        record = await store.document(WS, doc.resolve().as_uri())
        assert record is not None and record.status == "failed"

        # A question during the outage is answered without context, and says so.
        pipeline = Pipeline(store=store, retriever=retriever, llm=ExtractiveLLM())
        out, err = io.StringIO(), io.StringIO()
        message = IncomingMessage(WS, "C1", "t1", "m1", ADMIN, "how long does the wireguard profile last?", is_dm=True)
        outcome = await pipeline.answer(message, StreamSurface(out, err), EditScheduler())
        assert outcome.status == "answered"
        assert out.getvalue().startswith(NO_KNOWLEDGE_NOTE.strip())

        own_server.start()
        hits = await retriever.search(WS, "wireguard profile")  # the same retriever reconnects
        assert hits and hits[0].chunk.title == "VPN"
        assert (await ingestor.ingest(WS, ADMIN, [str(doc)])).updated
        assert "openvpn" in (await retriever.search(WS, "openvpn profile"))[0].chunk.text
    finally:
        await retriever.close()
        await store.close()


async def test_doctor_names_a_collection_whose_bm25_runs_on_blockmax_wand(
    weaviate_server: WeaviateServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = WeaviateRetriever(
        url=weaviate_server.url,
        grpc_port=weaviate_server.grpc_port,
        embedder=LocalEmbedder(),
        collection=f"Wv_{uuid.uuid4().hex}",
    )
    monkeypatch.setenv("WEAVIATE_USE_INVERTED_SEARCHABLE", "true")  # the server's own default
    default = launch(tmp_path / "weaviate")
    theirs = WeaviateRetriever(
        url=default.url, grpc_port=default.grpc_port, embedder=LocalEmbedder(), collection="ChatbotChunk"
    )
    try:
        assert "as expected" in await ours.diagnose()
        with pytest.raises(RetrieverUnavailable, match=r"BlockMax-WAND.+USE_INVERTED_SEARCHABLE=false"):
            await theirs.diagnose()
    finally:
        await ours.drop_collection()
        for retriever in (ours, theirs):
            await retriever.close()
        default.stop()
