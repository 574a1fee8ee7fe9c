"""Retrieval quality: recall@5 and MRR per retriever, per labelled set, with question rewriting on and off.

    uv run python bench/retrieval.py                    # table + one JSON line (starts the pinned Weaviate itself)
    uv run python bench/retrieval.py --no-weaviate      # the embedded retrievers only
    uv run python bench/retrieval.py --vector-weight 0.5 --vector-weight 0.8 --rrf   # other fusions too

Sets (bench/knowledge.py):
- git manual: Git's own manual pages from Debian's git-doc package (bench/data/git_manual.py installs
  or locates it), ~190 pages; 169 questions in users' words that avoid the page's vocabulary
  (paraphrase) and 116 worded like the docs (keyword), each labelled with the page(s) that answer it.
  A hit counts when its page is a labelled one.
- handbook: the generated 50-page handbook (bench/data/make_retrieval_set.py), 200 keyword and 200
  paraphrased questions; a hit counts only if it is the labelled section of the labelled page.
recall@5: an answering hit among the first 5; MRR: mean of 1/rank of the first answering hit within 10.
Retrievers: FTS5 alone; the embedded default (FTS5 + local vectors in SQLite, fused) and its vector
side alone; Weaviate's BM25, vectors, and the same fusion. Vectors come from the local model through an
on-disk cache (a rerun embeds nothing new); each question is embedded for real. Rewriting (core/rewrite.py)
needs ANTHROPIC_API_KEY; without it the "on" rows are not measured and the JSON says so.
The scale figure: the embedded default filled to 10,000 chunks, p50/p95 ms per question (embedding included).
The rewriting latency: what rewriting adds before the answer can start, against the loopback Anthropic
server (tests/fakes) playing a small model with a realistic first-token delay, and a slow one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from bench.knowledge import WS, CachedEmbedder, LabelledSet, git_manual_set, handbook_set, weaviate_endpoint  # noqa: E402
from bench.models import EnsembleEmbedder, ensemble_names, model  # noqa: E402
from core.retrieval.base import Hit, Retriever  # noqa: E402
from core.retrieval.embedders import LocalEmbedder  # noqa: E402
from core.retrieval.fts import FtsRetriever  # noqa: E402
from core.retrieval.fusion import DEFAULT_FUSION, Fusion  # noqa: E402
from core.retrieval.hybrid import HybridRetriever  # noqa: E402
from core.retrieval.weaviate import WeaviateRetriever  # noqa: E402
from core.rewrite import QueryRewriter, search_rewritten  # noqa: E402

Search = Callable[[str], Awaitable[Sequence[Hit]]]
BenchEmbedder: TypeAlias = "CachedEmbedder | CachedEnsemble"
DEPTH = 10
KEYWORD_ONLY = Fusion(keyword_weight=1.0, vector_weight=0.0)
VECTOR_ONLY = Fusion(keyword_weight=0.0, vector_weight=1.0)


def rank_of(hits: Sequence[Hit], pages: tuple[str, ...], heading: str | None) -> int | None:
    for position, hit in enumerate(hits, 1):
        page = hit.chunk.document_uri.rsplit("/", 1)[-1]
        if page in pages and (heading is None or hit.chunk.heading == heading):
            return position
    return None


async def evaluate(search: Search, labelled: LabelledSet) -> dict[str, Any]:
    ranks: list[tuple[str, int | None]] = []
    latencies: list[float] = []
    for question, kind, pages, heading in labelled.questions:
        started = time.perf_counter()
        hits = await search(question)
        latencies.append(time.perf_counter() - started)
        ranks.append((kind, rank_of(hits, pages, heading)))

    def figures(kind: str) -> dict[str, float]:
        chosen = [r for k, r in ranks if k == kind]
        return {
            "n": len(chosen),
            "recall@5": sum(1 for r in chosen if r is not None and r <= 5) / len(chosen),
            "mrr": sum(1 / r for r in chosen if r is not None) / len(chosen),
        }

    return {
        "keyword": figures("keyword"),
        "paraphrase": figures("paraphrase"),
        "ms_per_query_p50": statistics.median(latencies) * 1000,
    }


async def ingest(retriever: Retriever, labelled: LabelledSet) -> None:
    for doc, chunks in zip(labelled.docs, labelled.chunks, strict=True):
        await retriever.replace_document(WS, doc.uri, chunks)


def fusion_name(fusion: Fusion) -> str:
    if fusion.vector_weight == 0:
        return "keyword only"
    if fusion.keyword_weight == 0:
        return "vector only"
    if fusion.method == "rrf":
        return f"fused (rrf, weights {fusion.keyword_weight:g}/{fusion.vector_weight:g})"
    return f"fused (relative scores, vector {fusion.vector_weight:g})"


async def measure_set(
    labelled: LabelledSet,
    embedder: BenchEmbedder,
    fusions: Sequence[Fusion],
    rewriter: QueryRewriter | None,
    weaviate: tuple[str, int] | None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    async def measure(name: str, retriever: Retriever, *, default: bool) -> None:
        def plain(q: str) -> Awaitable[Sequence[Hit]]:
            return retriever.search(WS, q, k=DEPTH)

        rows.append({"set": labelled.name, "retriever": name, "rewriting": "off", **await evaluate(plain, labelled)})
        if default:
            if rewriter is None:
                rows.append({"set": labelled.name, "retriever": name, "rewriting": "on", "skipped": "no LLM"})
                return

            def rewritten(q: str) -> Awaitable[Sequence[Hit]]:
                return search_rewritten(retriever, rewriter, WS, q, [], k=DEPTH)

            figures = await evaluate(rewritten, labelled)
            rows.append({"set": labelled.name, "retriever": name, "rewriting": "on", **figures})

    with tempfile.TemporaryDirectory() as tmp:
        fts = await FtsRetriever.open(Path(tmp) / "fts.sqlite")
        try:
            await ingest(fts, labelled)
            await measure("fts5 alone (before)", fts, default=False)
        finally:
            await fts.close()
        path = Path(tmp) / "knowledge.sqlite"
        base = await HybridRetriever.open(path, embedder)
        try:
            await ingest(base, labelled)
            for fusion in [VECTOR_ONLY, *fusions]:
                variant: Retriever = await HybridRetriever.open(path, embedder, fusion=fusion)
                try:
                    await measure(f"embedded {fusion_name(fusion)}", variant, default=fusion == DEFAULT_FUSION)
                finally:
                    await variant.close()
        finally:
            await base.close()

    if weaviate is not None:
        url, grpc_port = weaviate
        collection = f"BenchRetrieval_{uuid.uuid4().hex}"
        loader = WeaviateRetriever(url=url, grpc_port=grpc_port, embedder=embedder, collection=collection)
        try:
            await ingest(loader, labelled)
            for fusion in [KEYWORD_ONLY, VECTOR_ONLY, *fusions]:
                variant = WeaviateRetriever(
                    url=url, grpc_port=grpc_port, embedder=embedder, collection=collection, fusion=fusion
                )
                try:
                    await measure(f"weaviate {fusion_name(fusion)}", variant, default=fusion == DEFAULT_FUSION)
                finally:
                    await variant.close()
        finally:
            await loader.drop_collection()
            await loader.close()
    return rows


async def measure_scale(labelled: LabelledSet, embedder: BenchEmbedder, total: int) -> dict[str, Any]:
    """The embedded default filled to `total` chunks (the set's chunks, repeated under other URIs, their
    vectors from the cache); each question then costs its real embedding plus the fused search."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "knowledge.sqlite"
        filler = await HybridRetriever.open(path, embedder)
        written, copy = 0, 0
        try:
            while written < total:
                for doc, chunks in zip(labelled.docs, labelled.chunks, strict=True):
                    part = chunks[: total - written]
                    if not part:
                        break
                    await filler.replace_document(WS, f"{doc.uri}#copy{copy}", part)
                    written += len(part)
                copy += 1
        finally:
            await filler.close()
        live = await HybridRetriever.open(path, embedder.inner)
        try:
            await live.search(WS, "warm up: load the model and the matrix", k=5)
            latencies = []
            for question, *_ in labelled.questions[:100]:
                started = time.perf_counter()
                await live.search(WS, question, k=5)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            await live.close()
    latencies.sort()
    return {
        "chunks": written,
        "questions": len(latencies),
        "ms_p50": statistics.median(latencies),
        "ms_p95": latencies[int(len(latencies) * 0.95) - 1],
    }


# A small fast model's answer as the loopback server plays it: first token after `stall_s`, then
# ~12-character deltas every 20 ms (about 150 tokens/s); two queries of ~60 characters.
REWRITE_SCENARIOS = {"typical small model (first token 350 ms)": 0.35, "slow model (first token 2 s)": 2.0}


async def measure_rewrite_latency(labelled: LabelledSet, embedder: BenchEmbedder, n: int = 20) -> list[dict[str, Any]]:
    """What rewriting adds before the answer can start: the time to the fused hits with rewriting
    minus without, on the embedded default, against the loopback Anthropic server (tests/fakes)."""
    from core.config import DEFAULT_REWRITE_MODEL
    from core.llm.anthropic import AnthropicLLM
    from tests.fakes.anthropic import FakeAnthropic

    questions = [q for q, kind, *_ in labelled.questions if kind == "paraphrase"][:n]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        retriever = await HybridRetriever.open(Path(tmp) / "knowledge.sqlite", embedder)
        try:
            await ingest(retriever, labelled)
            async with FakeAnthropic() as fake:
                llm = AnthropicLLM(api_key="bench", model="answer-model", base_url=fake.url, max_retries=0)
                rewriter = QueryRewriter(llm, model=DEFAULT_REWRITE_MODEL)
                for scenario, stall_s in REWRITE_SCENARIOS.items():
                    added: list[float] = []
                    for question in questions:
                        fake.script_rewrite(
                            f"git {question}\n{question} command", stall_s=stall_s, delay_s=0.02, chunk_chars=12
                        )
                        started = time.perf_counter()
                        await search_rewritten(retriever, rewriter, WS, question, [], k=5)
                        with_rewrite = time.perf_counter() - started
                        started = time.perf_counter()
                        await retriever.search(WS, question, k=5)
                        added.append((with_rewrite - (time.perf_counter() - started)) * 1000)
                    added.sort()
                    rows.append(
                        {
                            "scenario": scenario,
                            "questions": len(added),
                            "added_ms_p50": statistics.median(added),
                            "added_ms_max": added[-1],
                            "budget_ms": rewriter.timeout_s * 1000,
                        }
                    )
                await llm.close()
        finally:
            await retriever.close()
    return rows


def build_rewriter() -> QueryRewriter | None:
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        return None
    from core.config import DEFAULT_MODEL, DEFAULT_REWRITE_MODEL
    from core.llm.anthropic import AnthropicLLM

    llm = AnthropicLLM(api_key=key, model=DEFAULT_MODEL, base_url=os.environ.get("ANTHROPIC_BASE_URL"))
    return QueryRewriter(llm, model=DEFAULT_REWRITE_MODEL)


class CachedEnsemble(EnsembleEmbedder):
    """Models fused, each one's chunk vectors from the cache; `inner` is the same ensemble uncached."""

    def __init__(self, parts: Sequence[CachedEmbedder], weights: Sequence[float]) -> None:
        super().__init__(parts, weights)
        self.inner = EnsembleEmbedder([part.inner for part in parts], weights)


def local_embedder(spec: str) -> CachedEmbedder | CachedEnsemble:
    """One model, or several fused ("minilm+bge-small-en-v1.5-q")."""
    parts = ensemble_names(spec)
    if len(parts) == 1:
        return CachedEmbedder(LocalEmbedder(model(parts[0][0])))
    return CachedEnsemble([CachedEmbedder(LocalEmbedder(model(name))) for name, _ in parts], [w for _, w in parts])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    embedder = local_embedder(args.model)
    fusions = [DEFAULT_FUSION, *(Fusion(keyword_weight=1 - w, vector_weight=w) for w in args.vector_weight or [])]
    if args.rrf:
        fusions.append(Fusion(keyword_weight=1.0, vector_weight=2.0, method="rrf"))
    rewriter = build_rewriter()
    sets = [await git_manual_set(), await handbook_set()]
    rows: list[dict[str, Any]] = []
    if args.latency_only:
        pass
    elif args.no_weaviate:
        for labelled in sets:
            rows += await measure_set(labelled, embedder, fusions, rewriter, None)
    else:
        with weaviate_endpoint() as endpoint:
            for labelled in sets:
                rows += await measure_set(labelled, embedder, fusions, rewriter, (endpoint.url, endpoint.grpc_port))
    report: dict[str, Any] = {
        "sets": {s.name: {"pages": len(s.docs), "chunks": s.chunk_count, "questions": len(s.questions)} for s in sets},
        "embedder": embedder.name,
        "default_fusion": {
            "method": DEFAULT_FUSION.method,
            "keyword_weight": DEFAULT_FUSION.keyword_weight,
            "vector_weight": DEFAULT_FUSION.vector_weight,
            "candidates": DEFAULT_FUSION.candidates,
        },
        "rows": rows,
    }
    if args.scale:
        report["scale"] = await measure_scale(sets[0], embedder, args.scale)
    if not args.no_rewrite_latency:
        report["rewrite_latency"] = await measure_rewrite_latency(sets[0], embedder)
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        ", ".join(
            f"{name}: {s['pages']} pages, {s['chunks']} chunks, {s['questions']} questions"
            for name, s in report["sets"].items()
        ),
        f"embedder {report['embedder']}",
        "",
        "| set | retriever | rewriting | recall@5 keyword | recall@5 paraphrase | MRR keyword | MRR paraphrase "
        "| ms/query p50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['set']} | {r['retriever']} | on | not measured ({r['skipped']}) | | | | |")
            continue
        lines.append(
            f"| {r['set']} | {r['retriever']} | {r['rewriting']} | {r['keyword']['recall@5']:.3f} "
            f"| {r['paraphrase']['recall@5']:.3f} | {r['keyword']['mrr']:.3f} | {r['paraphrase']['mrr']:.3f} "
            f"| {r['ms_per_query_p50']:.1f} |"
        )
    if "scale" in report:
        s = report["scale"]
        lines += [
            "",
            f"embedded default at {s['chunks']:,} chunks: {s['ms_p50']:.1f} ms p50, "
            f"{s['ms_p95']:.1f} ms p95 per question ({s['questions']} questions, embedding included)",
        ]
    for r in report.get("rewrite_latency", []):
        lines.append(
            f"rewriting, {r['scenario']}: adds {r['added_ms_p50']:.0f} ms p50, {r['added_ms_max']:.0f} ms max "
            f"before the answer can start (budget {r['budget_ms']:.0f} ms; {r['questions']} questions)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--vector-weight", type=float, action="append", help="also measure relative-score fusion at this vector weight"
    )
    parser.add_argument("--rrf", action="store_true", help="also measure reciprocal-rank fusion (weights 1/2)")
    parser.add_argument(
        "--model",
        default="minilm",
        help="the local embedding model (bench/models.py), or models fused: a+b, a:0.6+b:0.4",
    )
    parser.add_argument("--no-weaviate", action="store_true", help="measure the embedded retrievers only")
    parser.add_argument("--scale", type=int, default=10_000, help="chunks for the latency figure (0: skip)")
    parser.add_argument("--latency-only", action="store_true", help="only the 10,000-chunk and rewriting latencies")
    parser.add_argument("--no-rewrite-latency", action="store_true", help="skip the rewriting latency figure")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    report = asyncio.run(run(args))
    if not args.json:
        print(table(report))
        print()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
