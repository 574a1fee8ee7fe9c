"""What the retrieval and ingest benchmarks share: the labelled sets, a vector cache and a Weaviate server.

The server is WEAVIATE_URL (+ WEAVIATE_GRPC_PORT) if set, else the pinned build that
`scripts/weaviate start` runs on loopback with a temporary data folder, stopped afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.data import git_manual
from core.ingest import LoadedDocument, chunk_document, load_file
from core.messages import Platform, WorkspaceRef
from core.retrieval.base import Chunk
from core.retrieval.embedders import Embedder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "retrieval"
WS = WorkspaceRef(Platform.SLACK, "T-bench")


@dataclass(frozen=True)
class Question:
    question: str
    document: str  # file name of the page
    heading: str  # the section that answers it
    kind: str  # "keyword" or "paraphrase"


@dataclass(frozen=True)
class LabelledSet:
    """Pages chunked as ingestion chunks them, and questions labelled with what answers them.

    A hit answers when its page is one of `pages` and, where `heading` is set, it is that section.
    """

    name: str
    docs: list[LoadedDocument]
    chunks: list[list[Chunk]]
    questions: list[tuple[str, str, tuple[str, ...], str | None]]  # (question, kind, pages, heading)

    @property
    def chunk_count(self) -> int:
        return sum(len(c) for c in self.chunks)


async def handbook_set() -> LabelledSet:
    docs, chunked = await load_handbook()
    return LabelledSet(
        "handbook",
        docs,
        chunked,
        [(q.question, q.kind, (q.document,), q.heading) for q in load_questions()],
    )


async def git_manual_set() -> LabelledSet:
    """Git's manual pages (the git-doc package): real documentation that nobody here wrote."""
    root = git_manual.locate()
    docs = [await load_file(path) for path in git_manual.pages(root)]
    return LabelledSet(
        "git manual",
        docs,
        [chunk_document(doc, WS.key) for doc in docs],
        [(q.question, q.kind, q.pages, None) for q in git_manual.questions()],
    )


class CachedEmbedder:
    """The real embedder with its vectors kept on disk by text, so reruns of the quality bench skip
    re-embedding thousands of unchanged chunks (throughput is bench/ingest.py's job, not this one's)."""

    def __init__(self, inner: Embedder, path: Path | None = None) -> None:
        self.inner = inner
        self.dimensions = inner.dimensions
        self.name = inner.name
        path = path or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatbot" / "bench-vectors.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector TEXT NOT NULL)")

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.inner.name}\n{text}".encode()).hexdigest()  # keyed by model too

    async def embed_query(self, query: str) -> list[float]:
        # Questions are embedded for real on every run (their cost is part of what is measured).
        return await self.inner.embed_query(query)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [self._key(t) for t in texts]
        found: dict[str, list[float]] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, vector in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part):
                found[key] = json.loads(vector)
        todo = [i for i, key in enumerate(keys) if key not in found]
        if todo:
            fresh = await self.inner.embed([texts[i] for i in todo])
            for i, vector in zip(todo, fresh, strict=True):
                found[keys[i]] = vector
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(keys[i], json.dumps(found[keys[i]])) for i in todo],
            )
            self._db.commit()
        return [found[key] for key in keys]


async def load_handbook() -> tuple[list[LoadedDocument], list[list[Chunk]]]:
    """The generated pages, chunked exactly as ingestion chunks them."""
    docs = [await load_file(path) for path in sorted((DATA / "corpus").glob("*.md"))]
    return docs, [chunk_document(doc, WS.key) for doc in docs]


def load_questions() -> list[Question]:
    return [Question(**item) for item in json.loads((DATA / "questions.json").read_text())]


@dataclass(frozen=True)
class WeaviateEndpoint:
    url: str
    grpc_port: int
    started_here: bool


@contextmanager
def weaviate_endpoint() -> Iterator[WeaviateEndpoint]:
    if os.environ.get("WEAVIATE_URL"):
        yield WeaviateEndpoint(os.environ["WEAVIATE_URL"], int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")), False)
        return
    script = str(ROOT / "scripts" / "weaviate")
    started = subprocess.run([script, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        raise SystemExit(f"could not start the Weaviate server:\n{started.stderr[-4000:]}")
    values = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    try:
        yield WeaviateEndpoint(values["WEAVIATE_URL"], int(values["WEAVIATE_GRPC_PORT"]), True)
    finally:
        subprocess.run([script, "stop", values["WEAVIATE_DIR"]], check=False)
