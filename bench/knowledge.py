"""What the retrieval and ingest benchmarks share: the labelled handbook and a Weaviate server.

The server is WEAVIATE_URL (+ WEAVIATE_GRPC_PORT) if set, else the pinned build that
`scripts/weaviate start` runs on loopback with a temporary data folder, stopped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.ingest import LoadedDocument, chunk_document, load_file
from core.messages import Platform, WorkspaceRef
from core.retrieval.base import Chunk

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "retrieval"
WS = WorkspaceRef(Platform.SLACK, "T-bench")


@dataclass(frozen=True)
class Question:
    question: str
    document: str  # file name of the page
    heading: str  # the section that answers it
    kind: str  # "keyword" or "paraphrase"


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
