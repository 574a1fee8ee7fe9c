"""Fusing ranked lists (keyword, vector, several rewritten queries) into one ranking.

One place for the fusion every retriever uses, so the embedded default and Weaviate rank alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.retrieval.base import Chunk

# The RRF constant from Cormack et al. (2009); larger values flatten the reward for the very top ranks.
RRF_K = 60


@dataclass(frozen=True, slots=True)
class Fusion:
    """How keyword and vector rankings are fused.

    Measured by bench/retrieval.py (see bench/README.md): reciprocal-rank fusion with the vector side
    weighted 2 keeps doc-worded questions at 1.0 and lifts paraphrases over either side alone on the
    Git manual; at most `per_document` chunks of one document, so five hits name more than one page
    (1 helps page-level recall most but hides a page's other sections; 2 costs the handbook nothing).
    `candidates`: how deep each side is read.
    """

    keyword_weight: float = 1.0
    vector_weight: float = 2.0
    per_document: int = 2
    candidates: int = 40


DEFAULT_FUSION = Fusion()


def embedding_text(chunk: Chunk) -> str:
    """What a chunk is about includes where it sits: title and heading path go into the vector too."""
    return " — ".join(part for part in (chunk.title, chunk.heading, chunk.text) if part)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, *, k: int = RRF_K
) -> list[tuple[str, float]]:
    """ids best first, each scored sum(weight / (k + rank)) over the rankings it appears in."""
    scores: dict[str, float] = {}
    for position, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[position]
        if weight <= 0:
            continue
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    # Ties keep first-seen order (sorted is stable), so equal evidence favours the earlier ranking.
    return sorted(scores.items(), key=lambda item: -item[1])


def fuse(
    keyword: Sequence[str], vector: Sequence[str], fusion: Fusion, document_of: Callable[[str], str], k: int
) -> list[tuple[str, float]]:
    """The fused ranking of both sides, best first, at most `fusion.per_document` per document, `k` long."""
    fused = reciprocal_rank_fusion([keyword, vector], [fusion.keyword_weight, fusion.vector_weight])
    kept: list[tuple[str, float]] = []
    per_document: dict[str, int] = {}
    for key, score in fused:
        document = document_of(key)
        if per_document.get(document, 0) < fusion.per_document:
            per_document[document] = per_document.get(document, 0) + 1
            kept.append((key, score))
            if len(kept) == k:
                break
    return kept
