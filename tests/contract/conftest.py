"""Every implementation of a port runs the same contract suite.

Add an implementation by adding a factory: an async context manager taking (tmp_path, request)
and yielding the ready implementation. Factories that need a server ask the request for its
session fixture, so a missing server fails the suite instead of skipping it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from core.retrieval.base import Retriever
from core.retrieval.fts import FtsRetriever
from core.stores.base import Store
from core.stores.sqlite import SqliteStore

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


STORES: dict[str, StoreFactory] = {"sqlite": sqlite_store}
RETRIEVERS: dict[str, RetrieverFactory] = {"fts": fts_retriever}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with STORES[request.param](tmp_path, request) as implementation:
        yield implementation


@pytest.fixture(params=sorted(RETRIEVERS))
async def retriever(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Retriever]:
    async with RETRIEVERS[request.param](tmp_path, request) as implementation:
        yield implementation
