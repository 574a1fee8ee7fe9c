"""Fusing ranked lists (keyword, vector, several rewritten queries) into one ranking.

One place for the fusion every retriever uses, so the embedded default and Weaviate rank alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.retrieval.base import Chunk

# The RRF constant from Cormack et al. (2009); larger values flatten the reward for the very top ranks.
RRF_K = 60


@dataclass(frozen=True, slots=True)
class Fusion:
    """How keyword and vector rankings are fused.

    "relative": each side's scores scaled to 0..1 over its candidates (min-max), then summed with
    the weights; "rrf": reciprocal-rank fusion, sum(weight / (60 + rank)). Measured by
    bench/retrieval.py (bench/README.md): relative scores with the vector side at 0.7 scored best
    on paraphrases over both labelled sets (the Git manual and the handbook) while every
    doc-worded question stayed found; RRF let BM25's matches on generic words outvote the vectors
    (handbook paraphrases 0.60 against 0.69), and capping chunks per document lost more on the
    handbook's sections than it gained on the manual's pages. `candidates`: how deep each side is read.

    `document_weight`: the share of a chunk's vector score that is its document's opening chunk's
    similarity to the question (where a page says what it is for); a passage deep in a page about
    the right thing then outranks a look-alike passage of an unrelated page. Measured: 0.2 lifted
    the Git manual's paraphrases from 0.53 to 0.60 and the handbook's from 0.685 to 0.69, every
    doc-worded question still found; 0.35 and 0.5 gave less.
    """

    keyword_weight: float = 0.3
    vector_weight: float = 0.7
    document_weight: float = 0.2
    method: Literal["relative", "rrf"] = "relative"
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


def relative_score_fusion(
    rankings: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float]
) -> list[tuple[str, float]]:
    """ids best first, each scored sum(weight * (score - min) / (max - min)) over the rankings it is in."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight <= 0 or not ranking:
            continue
        low, high = min(s for _, s in ranking), max(s for _, s in ranking)
        for key, score in ranking:
            scaled = (score - low) / (high - low) if high > low else 1.0
            scores[key] = scores.get(key, 0.0) + weight * scaled
    return sorted(scores.items(), key=lambda item: -item[1])


def fuse(
    keyword: Sequence[tuple[str, float]], vector: Sequence[tuple[str, float]], fusion: Fusion, k: int
) -> list[tuple[str, float]]:
    """Both sides' (id, score) candidates, best first (higher scores better), fused: the best `k`."""
    weights = [fusion.keyword_weight, fusion.vector_weight]
    if fusion.method == "rrf":
        return reciprocal_rank_fusion([[key for key, _ in keyword], [key for key, _ in vector]], weights)[:k]
    return relative_score_fusion([keyword, vector], weights)[:k]
