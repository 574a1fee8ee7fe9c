"""The fingerprint of the Convex functions in this checkout, as scripts/codegen.mjs computes it.

The deployment serves its own (version:version); equal fingerprints mean it runs these functions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "convex" / "functions"


def source_hash(functions_dir: Path = FUNCTIONS_DIR) -> str | None:
    """sha256 over every function source (path, newline, text, newline, in path order); None without a checkout."""
    if not functions_dir.is_dir():
        return None
    files = sorted(
        p.relative_to(functions_dir).as_posix()
        for p in functions_dir.rglob("*.ts")
        if "_generated" not in p.relative_to(functions_dir).parts and not p.name.endswith(".test.ts")
    )
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"{name}\n".encode())
        digest.update((functions_dir / name).read_text(encoding="utf-8").replace("\r\n", "\n").encode())
        digest.update(b"\n")
    return digest.hexdigest()
