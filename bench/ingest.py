"""Ingest throughput: chunks per second into the embedded hybrid, FTS5 and Weaviate, next to the raw embedder.

    uv run python bench/ingest.py                  # 120 chunks of ~200 words in 6 documents
    uv run python bench/ingest.py --chunks 480 --json --no-weaviate

Chunks are ~200-word passages (the ingestion default) built deterministically from the handbook's
sentences, written document by document through `replace_document`, as ingestion does. Rows:
- embedder (raw): LocalEmbedder alone on the same texts, same per-document batches;
- embedded hybrid (the default): embedding + FTS5 rows + vectors in one SQLite transaction;
  the two take turns document by document, so both are timed under the same load;
- embedded hybrid, vectors precomputed: its SQLite write path alone, the embedder taken out;
- fts5 alone (CHATBOT_RETRIEVAL=keyword);
- weaviate: end to end (embedding + batch insert);
- weaviate, vectors precomputed: the server's own write speed, the embedder taken out.
Weaviate's server is WEAVIATE_URL if set, else the pinned build started on loopback for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from bench.knowledge import DATA, WS, weaviate_endpoint  # noqa: E402
from bench.models import MODELS, model  # noqa: E402
from core.ingest import chunk_id  # noqa: E402
from core.retrieval.base import Chunk, Retriever  # noqa: E402
from core.retrieval.embedders import DEFAULT_LOCAL_MODEL, LocalEmbedder, LocalModel  # noqa: E402
from core.retrieval.fts import FtsRetriever  # noqa: E402
from core.retrieval.fusion import embedding_text  # noqa: E402
from core.retrieval.hybrid import HybridRetriever  # noqa: E402
from core.retrieval.weaviate import WeaviateRetriever  # noqa: E402

CHUNKS_PER_DOCUMENT = 20
WORDS_PER_CHUNK = 200


def make_documents(total_chunks: int, seed: int = 7) -> list[tuple[str, list[Chunk]]]:
    sentences = [
        s.strip()
        for page in sorted((DATA / "corpus").glob("*.md"))
        for s in re.split(r"(?<=[.;])\s+", page.read_text())
        if s.strip() and not s.lstrip().startswith("#")
    ]
    rng = random.Random(seed)
    documents: list[tuple[str, list[Chunk]]] = []
    for d in range(0, total_chunks, CHUNKS_PER_DOCUMENT):
        uri = f"bench://ingest/doc-{d // CHUNKS_PER_DOCUMENT}"
        chunks = []
        for index in range(min(CHUNKS_PER_DOCUMENT, total_chunks - d)):
            words: list[str] = []
            while len(words) < WORDS_PER_CHUNK:
                words += rng.choice(sentences).split()
            text = " ".join(words[:WORDS_PER_CHUNK])
            chunks.append(Chunk(chunk_id(WS.key, uri, index), uri, f"Handbook {d}", f"Part {index}", text, index))
        documents.append((uri, chunks))
    return documents


class PrecomputedEmbedder:
    """Hands back vectors computed beforehand, so only the server's write path is timed."""

    def __init__(self, vectors: dict[str, list[float]], dimensions: int) -> None:
        self.vectors = vectors
        self.dimensions = dimensions
        self.name = "precomputed"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]

    async def embed_query(self, query: str) -> list[float]:
        raise NotImplementedError("ingest only")


async def timed_ingest(retriever: Retriever, documents: list[tuple[str, list[Chunk]]]) -> float:
    started = time.perf_counter()
    for uri, chunks in documents:
        await retriever.replace_document(WS, uri, chunks)
    return time.perf_counter() - started


async def run(
    total_chunks: int, with_weaviate: bool = True, local_model: LocalModel = DEFAULT_LOCAL_MODEL
) -> dict[str, Any]:
    documents = make_documents(total_chunks)
    n = sum(len(chunks) for _, chunks in documents)
    embedder = LocalEmbedder(local_model)
    await embedder.embed(["warm up: load the model before timing"])
    rows: list[dict[str, Any]] = []

    def row(name: str, seconds: float) -> None:
        rows.append({"path": name, "chunks": n, "seconds": seconds, "chunks_per_s": n / seconds})

    # The raw embedder and the embedded hybrid take turns, document by document, so both are timed
    # under the same load (on the shared machine the load changes within seconds).
    vectors: dict[str, list[float]] = {}
    raw_s = hybrid_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        hybrid = await HybridRetriever.open(Path(tmp) / "knowledge.sqlite", embedder)
        try:
            for uri, chunks in documents:
                batch = [embedding_text(c) for c in chunks]
                started = time.perf_counter()
                vectors.update(zip(batch, await embedder.embed(batch), strict=True))
                raw_s += time.perf_counter() - started
                started = time.perf_counter()
                await hybrid.replace_document(WS, uri, chunks)
                hybrid_s += time.perf_counter() - started
        finally:
            await hybrid.close()
        row("embedder (raw, LocalEmbedder)", raw_s)
        row("embedded hybrid (embedding + FTS5 + vectors)", hybrid_s)
        precomputed = await HybridRetriever.open(
            Path(tmp) / "precomputed.sqlite", PrecomputedEmbedder(vectors, embedder.dimensions)
        )
        try:
            row("embedded hybrid, vectors precomputed (its own write path)", await timed_ingest(precomputed, documents))
        finally:
            await precomputed.close()
        fts = await FtsRetriever.open(Path(tmp) / "fts.sqlite")
        try:
            row("fts5 alone", await timed_ingest(fts, documents))
        finally:
            await fts.close()
    ratio = hybrid_s / raw_s

    if not with_weaviate:
        return _report(n, documents, rows, ratio, local_model)
    with weaviate_endpoint() as endpoint:
        for name, chosen in (
            ("weaviate (embedding + insert)", embedder),
            ("weaviate, vectors precomputed", PrecomputedEmbedder(vectors, embedder.dimensions)),
        ):
            weaviate = WeaviateRetriever(
                url=endpoint.url,
                grpc_port=endpoint.grpc_port,
                embedder=chosen,
                collection=f"BenchIngest_{uuid.uuid4().hex}",
            )
            try:
                # Create the collection and tenant first: a one-off cost, not throughput.
                await weaviate.replace_document(WS, "bench://warm-up", documents[0][1][:1])
                await weaviate.delete_document(WS, "bench://warm-up")
                row(name, await timed_ingest(weaviate, documents))
            finally:
                await weaviate.drop_collection()
                await weaviate.close()

    return _report(n, documents, rows, ratio, local_model)


def _report(
    n: int, documents: list[tuple[str, list[Chunk]]], rows: list[dict[str, Any]], ratio: float, model: LocalModel
) -> dict[str, Any]:
    return {
        "chunks": n,
        "documents": len(documents),
        "words_per_chunk": WORDS_PER_CHUNK,
        "embedder": model.name,
        "embedder_max_tokens": model.max_tokens,
        "hybrid_vs_raw_embedder": ratio,  # how many times slower the embedded default ingests than the model runs
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    head = (
        f"{report['chunks']} chunks of ~{report['words_per_chunk']} words in {report['documents']} documents; "
        f"embedder {report['embedder']}, up to {report['embedder_max_tokens']} tokens a chunk\n\n"
        "| path | seconds | chunks/s |\n|---|---|---|"
    )
    rows = [f"| {r['path']} | {r['seconds']:.2f} | {r['chunks_per_s']:.1f} |" for r in report["rows"]]
    tail = f"\nthe embedded hybrid takes {report['hybrid_vs_raw_embedder']:.2f}x the raw embedder's time"
    return "\n".join([head, *rows, tail])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=120, help="how many chunks to ingest (default 120)")
    parser.add_argument("--no-weaviate", action="store_true", help="skip the Weaviate rows")
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="minilm", help="the local embedding model (bench/models.py)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    report = asyncio.run(run(args.chunks, not args.no_weaviate, model(args.model)))
    if not args.json:
        print(table(report))
        print()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
