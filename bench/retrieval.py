"""Retrieval quality: recall@5 and MRR for FTS5 and Weaviate (BM25, vector, hybrid) on labelled questions.

    uv run python bench/retrieval.py             # table + JSON
    uv run python bench/retrieval.py --json      # JSON only
    uv run python bench/retrieval.py --alpha 0.5 --alpha 0.7   # hybrid at other weights too

The set (bench/data/retrieval, made by bench/data/make_retrieval_set.py): 50 handbook pages with
four sections each, 400 questions labelled with the page and section that answer them, half in the
pages' own words (keyword), half as people ask (paraphrase). A hit counts when it is a chunk of the
labelled section. recall@5: the section is among the first 5 hits; MRR: mean of 1/rank of its
first chunk within the first 10 hits (0 if absent); page@5: the right page among the first 5.
Weaviate's server is WEAVIATE_URL if set, else the pinned build started on loopback for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from bench.knowledge import WS, Question, load_handbook, load_questions, weaviate_endpoint  # noqa: E402
from core.retrieval.base import Hit  # noqa: E402
from core.retrieval.embedders import LocalEmbedder  # noqa: E402
from core.retrieval.fts import FtsRetriever  # noqa: E402
from core.retrieval.weaviate import WeaviateRetriever  # noqa: E402

Search = Callable[[str], Awaitable[Sequence[Hit]]]
DEPTH = 10


def rank_of(hits: Sequence[Hit], question: Question, *, page_only: bool = False) -> int | None:
    for position, hit in enumerate(hits, 1):
        if hit.chunk.document_uri.endswith("/" + question.document) and (
            page_only or hit.chunk.heading == question.heading
        ):
            return position
    return None


async def evaluate(name: str, search: Search, questions: Sequence[Question]) -> dict[str, Any]:
    ranks: list[tuple[str, int | None, int | None]] = []
    latencies: list[float] = []
    for question in questions:
        started = time.perf_counter()
        hits = await search(question.question)
        latencies.append(time.perf_counter() - started)
        ranks.append((question.kind, rank_of(hits, question), rank_of(hits, question, page_only=True)))

    def figures(kind: str | None) -> dict[str, float]:
        chosen = [r for r in ranks if kind is None or r[0] == kind]
        return {
            "n": len(chosen),
            "recall@5": sum(1 for _, r, _ in chosen if r is not None and r <= 5) / len(chosen),
            "mrr": sum(1 / r for _, r, _ in chosen if r is not None) / len(chosen),
            "page@5": sum(1 for _, _, p in chosen if p is not None and p <= 5) / len(chosen),
        }

    return {
        "retriever": name,
        "all": figures(None),
        "keyword": figures("keyword"),
        "paraphrase": figures("paraphrase"),
        "ms_per_query_p50": statistics.median(latencies) * 1000,
    }


async def run(alphas: Sequence[float], fusion: Literal["relative", "ranked"] = "relative") -> dict[str, Any]:
    docs, chunked = await load_handbook()
    questions = load_questions()
    results: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory() as tmp:
        fts = await FtsRetriever.open(Path(tmp) / "knowledge.sqlite")
        try:
            for doc, chunks in zip(docs, chunked, strict=True):
                await fts.replace_document(WS, doc.uri, chunks)
            results.append(await evaluate("fts5 (bm25)", lambda q: fts.search(WS, q, k=DEPTH), questions))
        finally:
            await fts.close()

    with weaviate_endpoint() as endpoint:
        weaviate = WeaviateRetriever(
            url=endpoint.url,
            grpc_port=endpoint.grpc_port,
            embedder=LocalEmbedder(),
            fusion=fusion,
            collection=f"BenchRetrieval_{uuid.uuid4().hex}",
        )
        try:
            for doc, chunks in zip(docs, chunked, strict=True):
                await weaviate.replace_document(WS, doc.uri, chunks)
            modes = [("weaviate bm25 (alpha=0)", 0.0), ("weaviate vector (alpha=1)", 1.0)]
            modes += [(f"weaviate hybrid (alpha={a:g}, {fusion})", a) for a in alphas]
            for name, alpha in modes:

                def search(q: str, alpha: float = alpha) -> Awaitable[Sequence[Hit]]:
                    return weaviate.search(WS, q, k=DEPTH, alpha=alpha)

                results.append(await evaluate(name, search, questions))
        finally:
            await weaviate.drop_collection()
            await weaviate.close()

    return {
        "pages": len(docs),
        "chunks": sum(len(c) for c in chunked),
        "questions": len(questions),
        "embedder": LocalEmbedder.name,
        "fusion": fusion,
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    head = (
        f"{report['questions']} questions on {report['pages']} pages ({report['chunks']} chunks); "
        f"embedder {report['embedder']}\n\n"
        "| retriever | recall@5 all | recall@5 keyword | recall@5 paraphrase | MRR all | MRR keyword "
        "| MRR paraphrase | page@5 paraphrase | ms/query p50 |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {r['retriever']} | {r['all']['recall@5']:.3f} | {r['keyword']['recall@5']:.3f} "
        f"| {r['paraphrase']['recall@5']:.3f} | {r['all']['mrr']:.3f} | {r['keyword']['mrr']:.3f} "
        f"| {r['paraphrase']['mrr']:.3f} | {r['paraphrase']['page@5']:.3f} | {r['ms_per_query_p50']:.1f} |"
        for r in report["results"]
    ]
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, action="append", help="hybrid alpha(s) to measure (default 0.5)")
    parser.add_argument("--fusion", choices=["relative", "ranked"], default="relative", help="hybrid fusion")
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    report = asyncio.run(run(args.alpha or [0.5], args.fusion))
    if not args.json:
        print(table(report))
        print()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
