"""The Retriever port: the workspace's knowledge, searched by the question."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.errors import Unavailable
from core.messages import WorkspaceRef


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of a document; `id` is deterministic (uuid5 of workspace, document, index)."""

    id: str
    document_uri: str
    title: str
    heading: str  # the heading path, e.g. "Deploying > Rollback"
    text: str
    index: int


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float


class RetrieverUnavailable(Unavailable):
    """The retriever could not be reached; the pipeline answers without context and says so."""


class Retriever(Protocol):
    async def replace_document(self, ws: WorkspaceRef, document_uri: str, chunks: Sequence[Chunk]) -> None:
        """Make `chunks` the document's only chunks (idempotent; failed writes raise)."""
        ...

    async def delete_document(self, ws: WorkspaceRef, document_uri: str) -> None: ...

    async def search(self, ws: WorkspaceRef, query: str, *, k: int = 5) -> Sequence[Hit]:
        """Best first; only `ws`'s chunks, ever."""
        ...

    async def close(self) -> None: ...
