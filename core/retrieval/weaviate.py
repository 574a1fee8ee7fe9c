"""The production retriever: Weaviate, one multi-tenant collection, one tenant per workspace.

Vectors are self-provided: computed here by the configured embedder (by default the same local
model as the embedded default, from the same `embedding_text`), never by a server-side module.
Search asks the server for its best BM25 candidates, its nearest vectors and the nearest documents'
opening chunks (three queries, run together) and fuses them here with core/retrieval/fusion.py, the
embedded default's own fusion, so both retrievers rank alike. Only chunks and vectors live here;
documents' metadata stays in the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import httpx
import structlog
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.classes.tenants import Tenant
from weaviate.exceptions import WeaviateBaseError

from core.messages import WorkspaceRef
from core.retrieval.base import Chunk, Hit, RetrieverUnavailable
from core.retrieval.embedders import UNRECORDED_IDENTITY, Embedder, identity
from core.retrieval.fusion import DEFAULT_FUSION, Fusion, embedding_text, fuse

log = structlog.get_logger(__name__)

COLLECTION = "ChatbotChunk"
PROPERTIES = (
    Property(name="document_uri", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
    Property(name="title", data_type=DataType.TEXT),
    Property(name="heading", data_type=DataType.TEXT),
    Property(name="text", data_type=DataType.TEXT),
    Property(name="index", data_type=DataType.INT),
)
_TENANT_CHARS = re.compile(r"[^A-Za-z0-9_-]")
# BM25 on BlockMax-WAND drops true top-k matches in these servers, while they are in the memtable and
# after a flush (weaviate#11780, #12022; read in v1.35.2's source, reproduced in tests/weaviate).
BLOCKMAX_BROKEN_UP_TO = (1, 35, 2)


class RetrieverWriteError(Exception):
    """Weaviate refused some objects of a batch; the message lists them."""


def tenant_name(ws: WorkspaceRef) -> str:
    """A valid, collision-free tenant name (letters, digits, _ and -, at most 64) for the workspace."""
    readable = _TENANT_CHARS.sub("_", ws.key)[:40]
    digest = hashlib.sha256(ws.key.encode()).hexdigest()[:12]
    return f"{readable}-{digest}"


class WeaviateRetriever:
    def __init__(
        self,
        *,
        url: str,
        grpc_port: int,
        embedder: Embedder,
        api_key: str | None = None,
        fusion: Fusion = DEFAULT_FUSION,
        collection: str = COLLECTION,
        search_timeout_s: float = 5.0,
        write_timeout_s: float = 120.0,
    ) -> None:
        parsed = urlparse(url)
        self.http_host = parsed.hostname or "127.0.0.1"
        self.http_port = parsed.port or (443 if parsed.scheme == "https" else 8080)
        self.secure = parsed.scheme == "https"
        self.grpc_port = grpc_port
        self.api_key = api_key
        self.embedder = embedder
        self.fusion = fusion
        self.collection_name = collection
        # The client retries an unreachable gRPC server for about a minute; a question cannot wait that
        # long, so every call is bounded here and an expired bound counts as an outage.
        self.search_timeout_s = search_timeout_s
        self.write_timeout_s = write_timeout_s
        self._client: weaviate.WeaviateAsyncClient | None = None
        self._connect_lock = asyncio.Lock()
        self._collection_ready = False
        self._tenants: set[str] = set()

    async def _collection(self) -> Any:
        """Connect (again, after an outage) and create the collection on first use."""
        async with self._connect_lock:
            if self._client is None or not self._client.is_connected():
                client = weaviate.use_async_with_custom(
                    http_host=self.http_host,
                    http_port=self.http_port,
                    http_secure=self.secure,
                    grpc_host=self.http_host,
                    grpc_port=self.grpc_port,
                    grpc_secure=self.secure,
                    auth_credentials=weaviate.auth.AuthApiKey(self.api_key) if self.api_key else None,
                )
                try:
                    await client.connect()
                except Exception as exc:
                    await _close_quietly(client)
                    raise RetrieverUnavailable(f"cannot reach Weaviate at {self.http_host}:{self.http_port}") from exc
                self._client = client
            client = self._client
            if not self._collection_ready:
                wanted = identity(self.embedder)
                if not await client.collections.exists(self.collection_name):
                    await client.collections.create(
                        self.collection_name,
                        description=wanted,  # the model its vectors come from (checked below)
                        properties=list(PROPERTIES),
                        vector_config=Configure.Vectors.self_provided(),
                        multi_tenancy_config=Configure.multi_tenancy(
                            enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                        ),
                    )
                else:
                    made_by = (await client.collections.get(self.collection_name).config.get()).description
                    made_by = made_by or UNRECORDED_IDENTITY
                    if made_by != wanted:
                        # Another model's vectors cannot be compared with this one's (not even at the same
                        # dimension), and mixing both in one collection would rank by noise: refuse.
                        raise RetrieverUnavailable(
                            f"the Weaviate collection {self.collection_name} holds vectors made by "
                            f"{made_by}, not by {wanted}: delete the collection and ingest the documents again"
                        )
                self._collection_ready = True
            return client.collections.get(self.collection_name)

    async def _tenant(self, ws: WorkspaceRef, *, create: bool = False) -> Any:
        collection = await self._collection()
        name = tenant_name(ws)
        if create and name not in self._tenants:
            if not await collection.tenants.exists(name):
                try:
                    await collection.tenants.create([Tenant(name=name)])
                except WeaviateBaseError as exc:
                    if "already exists" not in str(exc).lower():  # a concurrent ingest created it first
                        raise
            self._tenants.add(name)
        return collection.with_tenant(name)

    async def replace_document(self, ws: WorkspaceRef, document_uri: str, chunks: Sequence[Chunk]) -> None:
        try:
            vectors = await self.embedder.embed([embedding_text(c) for c in chunks])
            async with asyncio.timeout(self.write_timeout_s):
                result = await self._write(ws, document_uri, chunks, vectors)
        except TimeoutError as exc:
            raise RetrieverUnavailable(f"Weaviate did not answer while writing {document_uri}") from exc
        except WeaviateBaseError as exc:
            raise RetrieverUnavailable(f"Weaviate failed while writing {document_uri}: {exc}") from exc
        if result is not None and result.errors:
            failed = "; ".join(f"#{i}: {error.message}" for i, error in sorted(result.errors.items())[:5])
            raise RetrieverWriteError(f"Weaviate refused {len(result.errors)} of {len(chunks)} chunks ({failed})")

    async def _write(
        self, ws: WorkspaceRef, document_uri: str, chunks: Sequence[Chunk], vectors: list[list[float]]
    ) -> Any:
        tenant = await self._tenant(ws, create=True)
        await tenant.data.delete_many(where=Filter.by_property("document_uri").equal(document_uri))
        if not chunks:
            return None
        objects = [
            DataObject(
                uuid=chunk.id,
                properties={
                    "document_uri": document_uri,
                    "title": chunk.title,
                    "heading": chunk.heading,
                    "text": chunk.text,
                    "index": chunk.index,
                },
                vector=vector,
            )
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
        return await tenant.data.insert_many(objects)

    async def delete_document(self, ws: WorkspaceRef, document_uri: str) -> None:
        try:
            async with asyncio.timeout(self.write_timeout_s):
                tenant = await self._tenant(ws, create=True)
                await tenant.data.delete_many(where=Filter.by_property("document_uri").equal(document_uri))
        except (WeaviateBaseError, TimeoutError) as exc:
            raise RetrieverUnavailable(f"Weaviate failed while deleting {document_uri}: {exc!r}") from exc

    async def search(self, ws: WorkspaceRef, query: str, *, k: int = 5) -> Sequence[Hit]:
        if not query.strip():
            return []
        depth = max(k, self.fusion.candidates)
        try:
            vector = await self.embedder.embed_query(query) if self.fusion.vector_weight > 0 else None
            async with asyncio.timeout(self.search_timeout_s):
                tenant = await self._tenant(ws)
                near = vector is not None
                keyword, nearest, openings = await asyncio.gather(
                    tenant.query.bm25(
                        query=query,
                        limit=depth,
                        query_properties=["title^2", "heading^2", "text"],
                        return_metadata=MetadataQuery(score=True),
                    )
                    if self.fusion.keyword_weight > 0
                    else _nothing(),
                    tenant.query.near_vector(
                        near_vector=vector, limit=depth, return_metadata=MetadataQuery(distance=True)
                    )
                    if near
                    else _nothing(),
                    # The documents' opening chunks nearest the question: the document side of the score.
                    tenant.query.near_vector(
                        near_vector=vector,
                        limit=depth,
                        filters=Filter.by_property("index").equal(0),
                        return_metadata=MetadataQuery(distance=True),
                    )
                    if near and self.fusion.document_weight > 0
                    else _nothing(),
                )
        except TimeoutError as exc:
            raise RetrieverUnavailable(f"Weaviate did not answer within {self.search_timeout_s:.0f} s") from exc
        except WeaviateBaseError as exc:
            if "tenant not found" in str(exc).lower():
                return []  # a workspace that never ingested anything has no tenant yet
            raise RetrieverUnavailable(f"Weaviate search failed: {exc}") from exc
        chunks: dict[str, Chunk] = {}
        rankings: list[list[tuple[str, float]]] = []
        for response, similarity in ((keyword, _bm25_score), (nearest, _cosine), (openings, _cosine)):
            ranking = []
            for obj in response.objects if response is not None else []:
                chunk = _chunk(obj)
                chunks.setdefault(chunk.id, chunk)
                ranking.append((chunk.id, similarity(obj)))
            rankings.append(ranking)
        fused = fuse(rankings[0], self._with_documents(rankings[1], rankings[2], chunks), self.fusion, k)
        return [Hit(chunks[key], score) for key, score in fused]

    def _with_documents(
        self, nearest: list[tuple[str, float]], openings: list[tuple[str, float]], chunks: dict[str, Chunk]
    ) -> list[tuple[str, float]]:
        """Each candidate's similarity blended with its document's opening chunk's, as the embedded
        retriever scores them (a document whose opening is not among the nearest gets the farthest one's)."""
        share = self.fusion.document_weight
        if not share or not openings:
            return nearest
        by_document = {chunks[key].document_uri: score for key, score in openings}
        floor = min(by_document.values())
        candidates = dict(nearest)
        candidates.update(openings)  # an opening chunk is a candidate too (its blend is its own similarity)
        blended = [
            (key, (1 - share) * score + share * by_document.get(chunks[key].document_uri, floor))
            for key, score in candidates.items()
        ]
        return sorted(blended, key=lambda item: -item[1])

    async def diagnose(self) -> str:
        """`chatbot doctor`: the collection has the properties this code writes and is multi-tenant."""
        collection = await self._collection()
        config = await collection.config.get()
        actual = {p.name: p.data_type for p in config.properties}
        problems = [
            f"{p.name} is {actual[p.name].value} (expected {p.dataType.value})"
            if p.name in actual
            else f"{p.name} is missing"
            for p in PROPERTIES
            if actual.get(p.name) != p.dataType
        ]
        if not config.multi_tenancy_config.enabled:
            problems.append("multi-tenancy is off")
        problems += await self._bm25_index_problems()
        if problems:
            raise RetrieverUnavailable(f"collection {self.collection_name}: " + "; ".join(problems))
        return f"collection {self.collection_name}: {len(PROPERTIES)} properties as expected, one tenant per workspace"

    async def _bm25_index_problems(self) -> list[str]:
        """The collection's BM25 index, which the typed client does not show: read from the REST schema."""
        assert self._client is not None
        version = str((await self._client.get_meta()).get("version", ""))
        scheme = "https" if self.secure else "http"
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(headers=headers, timeout=self.search_timeout_s) as http:
            response = await http.get(f"{scheme}://{self.http_host}:{self.http_port}/v1/schema/{self.collection_name}")
            response.raise_for_status()
        inverted = response.json().get("invertedIndexConfig") or {}
        numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
        if inverted.get("usingBlockMaxWAND") and numbers <= BLOCKMAX_BROKEN_UP_TO:
            return [
                f"BM25 runs on BlockMax-WAND, which drops true matches in Weaviate {version} (weaviate#11780): "
                "run the server with USE_INVERTED_SEARCHABLE=false, then drop this collection and ingest again"
            ]
        return []

    async def drop_collection(self) -> None:
        """Delete the whole collection (tests and benchmarks use one collection each)."""
        client = (await self._collection()) and self._client
        assert client is not None
        await client.collections.delete(self.collection_name)
        self._collection_ready = False
        self._tenants.clear()

    async def close(self) -> None:
        if self._client is not None:
            await _close_quietly(self._client)
            self._client = None


async def _close_quietly(client: weaviate.WeaviateAsyncClient) -> None:
    try:
        await client.close()
    except Exception as exc:
        log.debug("weaviate.close_failed", error=repr(exc))


async def _nothing() -> None:
    return None


def _bm25_score(obj: Any) -> float:
    return float(obj.metadata.score or 0.0)


def _cosine(obj: Any) -> float:
    """Weaviate's cosine distance back to the similarity the embedded retriever scores with."""
    return 1.0 - float(obj.metadata.distance or 0.0)


def _chunk(obj: Any) -> Chunk:
    props = obj.properties
    return Chunk(
        id=str(obj.uuid),
        document_uri=str(props["document_uri"]),
        title=str(props.get("title") or ""),
        heading=str(props.get("heading") or ""),
        text=str(props.get("text") or ""),
        index=int(str(props.get("index") or 0)),
    )
