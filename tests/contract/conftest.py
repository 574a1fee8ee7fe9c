"""Every implementation of a port runs the same contract suite.

Add an implementation by adding a factory: an async context manager taking (tmp_path, request)
and yielding the ready implementation. Factories that need a server ask the request for its
session fixture, so a missing server fails the suite instead of skipping it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from core.retrieval.base import Retriever
from core.retrieval.embedders import LocalEmbedder
from core.retrieval.fts import FtsRetriever
from core.retrieval.hybrid import HybridRetriever
from core.retrieval.weaviate import WeaviateRetriever
from core.stores.base import Store
from core.stores.sqlite import SqliteStore
from tests.support.convex_server import platform_confirms

StoreFactory = Callable[[Path, pytest.FixtureRequest], AbstractAsyncContextManager[Store]]
RetrieverFactory = Callable[[Path, pytest.FixtureRequest], AbstractAsyncContextManager[Retriever]]


@asynccontextmanager
async def sqlite_store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    store = await SqliteStore.open(tmp_path / "store.sqlite")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def fts_retriever(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Retriever]:
    retriever = await FtsRetriever.open(tmp_path / "knowledge.sqlite")
    try:
        yield retriever
    finally:
        await retriever.close()


@asynccontextmanager
async def hybrid_retriever(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Retriever]:
    retriever = await HybridRetriever.open(tmp_path / "knowledge.sqlite", LocalEmbedder())
    try:
        yield retriever
    finally:
        await retriever.close()


@asynccontextmanager
async def weaviate_retriever(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Retriever]:
    server = request.getfixturevalue("weaviate_server")
    # A collection per test keeps tests independent on the one session server.
    retriever = WeaviateRetriever(
        url=server.url, grpc_port=server.grpc_port, embedder=LocalEmbedder(), collection=f"Contract_{uuid.uuid4().hex}"
    )
    try:
        yield retriever
    finally:
        await retriever.drop_collection()
        await retriever.close()


@asynccontextmanager
async def convex_store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    server = request.getfixturevalue("convex_server")
    server.reset()
    async with platform_confirms(server, request.getfixturevalue("monkeypatch")) as store:
        yield store


STORES: dict[str, StoreFactory] = {"sqlite": sqlite_store, "convex": convex_store}
RETRIEVERS: dict[str, RetrieverFactory] = {
    "fts": fts_retriever,
    "hybrid": hybrid_retriever,
    "weaviate": weaviate_retriever,
}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with STORES[request.param](tmp_path, request) as implementation:
        yield implementation


# The retrievers that fuse keyword and vector search (the embedded default and Weaviate).
HYBRID_RETRIEVERS = ("hybrid", "weaviate")


@pytest.fixture(params=HYBRID_RETRIEVERS)
async def hybrid(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Retriever]:
    async with RETRIEVERS[request.param](tmp_path, request) as implementation:
        yield implementation


@pytest.fixture(params=sorted(RETRIEVERS))
async def retriever(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Retriever]:
    async with RETRIEVERS[request.param](tmp_path, request) as implementation:
        yield implementation
