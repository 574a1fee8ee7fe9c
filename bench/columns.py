"""The benchmarks' human-readable table: one column per run, one row per figure (the JSON line beside
it carries every field)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def print_columns(rows: Sequence[Mapping[str, Any]], head: str, keys: Sequence[str], *, width: int = 12) -> None:
    """Each row a column headed by its `head` field, each key a line (missing figures print None)."""
    label = max(len(k) for k in keys) + 2
    print(f"{'':{label}}" + "".join(f"{r[head]!s:>{width}}" for r in rows))
    for key in keys:
        print(f"{key:{label}}" + "".join(f"{r.get(key)!s:>{width}}" for r in rows))
