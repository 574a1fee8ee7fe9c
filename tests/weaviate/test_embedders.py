"""Embedders: the offline local model and the OpenAI-compatible HTTP provider (against a loopback server)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from core.config import MissingSetting, Settings
from core.retrieval.embedders import EmbedderUnavailable, HttpEmbedder, LocalEmbedder, build_embedder, identity
from tests.fakes.loopback import serve


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_local_vectors_are_unit_length_in_order_and_batch_independent() -> None:
    embedder = LocalEmbedder(batch_tokens=64)  # a small budget forces several batches of mixed lengths
    texts = ["short", "", "a somewhat longer sentence about rolling back a deploy " * 6, "Café 東京", "short"]
    vectors = await embedder.embed(texts)
    assert len(vectors) == len(texts)
    assert all(len(v) == embedder.dimensions == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in vectors)
    assert vectors[0] == vectors[4]
    # Padding within a batch must not change a text's vector: compare with each text embedded alone.
    for text, vector in zip(texts, vectors, strict=True):
        (alone,) = await embedder.embed([text])
        assert cosine(alone, vector) > 0.9999
    assert await embedder.embed([]) == []


async def test_local_vectors_carry_meaning() -> None:
    laptop, parking, question = await LocalEmbedder().embed(
        ["Laptop refresh: replacing an employee's old notebook", "Parking permit for the garage", "a new work computer"]
    )
    assert cosine(question, laptop) > cosine(question, parking) + 0.1


async def test_a_question_is_embedded_by_the_models_query_convention() -> None:
    embedder = LocalEmbedder()
    question = "how do I undo my last commit"
    as_query = await embedder.embed_query(question)
    (expected,) = embedder.embed_sync([embedder.model.query_prefix + question])
    assert cosine(as_query, expected) > 0.9999
    assert identity(embedder) == "all-MiniLM-L6-v2 (int8 ONNX, local) (384 dimensions)"


def test_batches_group_similar_lengths_within_budget() -> None:
    embedder = LocalEmbedder(batch_tokens=100, max_batch=3)
    lengths = [50, 10, 12, 11, 90, 30, 13]
    batches = embedder._batches(lengths)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
    assert batches[0] == [1, 3, 2]  # the three shortest together


@pytest.fixture
async def embeddings_api() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback server speaking the OpenAI /v1/embeddings shape, answering out of order on purpose."""
    seen: list[dict[str, Any]] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        if body["input"] == ["fail"]:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0]}
            for i, text in enumerate(body["input"])
        ]
        return web.json_response({"object": "list", "data": list(reversed(data)), "model": body["model"]})

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner, url = await serve(app)
    yield url, seen
    await runner.cleanup()


async def test_http_embedder_speaks_the_openai_shape(embeddings_api: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = embeddings_api
    embedder = HttpEmbedder(url, api_key="k-123", model="text-embedding-3-small", dimensions=2)
    try:
        assert await embedder.embed(["a", "bbb", "cc"]) == [[1.0, 1.0], [3.0, 1.0], [2.0, 1.0]]
        assert seen[0]["body"] == {"model": "text-embedding-3-small", "input": ["a", "bbb", "cc"]}
        assert seen[0]["auth"] == "Bearer k-123"
        assert await embedder.embed([]) == []
        assert len(seen) == 1
        with pytest.raises(EmbedderUnavailable, match="503"):
            await embedder.embed(["fail"])
    finally:
        await embedder.close()


async def test_build_embedder_from_settings() -> None:
    assert isinstance(build_embedder(Settings(CHATBOT_EMBEDDER="local")), LocalEmbedder)
    http = build_embedder(Settings(CHATBOT_EMBEDDER="http", CHATBOT_EMBEDDINGS_URL="http://127.0.0.1:1"))
    assert isinstance(http, HttpEmbedder) and http.dimensions == 1536
    await http.close()
    with pytest.raises(MissingSetting, match="CHATBOT_EMBEDDINGS_URL"):
        build_embedder(Settings(CHATBOT_EMBEDDER="http"))
    with pytest.raises(MissingSetting, match="CHATBOT_EMBEDDER"):
        build_embedder(Settings(CHATBOT_EMBEDDER="word2vec"))
