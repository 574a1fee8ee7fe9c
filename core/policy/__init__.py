"""The rule book: role order, permissions, default-role limits and every bound, from rules.json.

The same file is compiled into the Convex functions (convex/scripts/codegen.mjs writes
convex/functions/lib/rules.ts from it, and scripts/test fails when that copy is stale), so both
stores enforce one table. The decisions built on it live in core/roles.py (Python) and
convex/functions/lib/roles.ts (TypeScript), both run against tests/policy/cases.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RULES: Mapping[str, Any] = json.loads((Path(__file__).with_name("rules.json")).read_text(encoding="utf-8"))

TEXT: Mapping[str, int] = RULES["text"]  # kind -> most characters
COUNTS: Mapping[str, int] = RULES["counts"]  # kind -> most items
NUMBERS: Mapping[str, tuple[int, int]] = {k: (v[0], v[1]) for k, v in RULES["numbers"].items()}
# How long rows that only serve a reply are kept, and how many older ones a write prunes.
RETENTION: Mapping[str, int] = {k: v for k, v in RULES["retention"].items() if not k.startswith("$")}
SETTING_TEXT: Mapping[str, str] = RULES["settings"]  # text setting -> its kind in TEXT
# setting -> the values it may take
SETTING_CHOICES: Mapping[str, tuple[str, ...]] = {
    k: tuple(v) for k, v in RULES["setting_choices"].items() if not k.startswith("$")
}


def choice_error(setting: str, value: object) -> str | None:
    """Why `value` is not one of the setting's choices, or None."""
    choices = SETTING_CHOICES[setting]
    if value not in choices:
        return f"{setting} is one of: {', '.join(choices)}"
    return None


def text_error(kind: str, value: object, name: str, *, allow_empty: bool = False) -> str | None:
    """Why `value` is not an acceptable `kind` of text (too long, empty, not text), or None."""
    limit = TEXT[kind]
    if not isinstance(value, str):
        return f"{name} must be text"
    if not value and not allow_empty:
        return f"{name} must not be empty"
    if len(value) > limit:
        return f"{name} is too long ({len(value):,} characters; the limit is {limit:,})"
    return None


def whole_error(kind: str, value: object, name: str) -> str | None:
    low, high = NUMBERS[kind]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        return f"{name} must be a whole number from {low:,} to {high:,}"
    return None


def number_error(kind: str, value: object, name: str) -> str | None:
    """For fractional numbers (scores): finite and within the bounds."""
    low, high = NUMBERS[kind]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"{name} must be a finite number"
    if not low <= value <= high:
        return f"{name} must be from {low:,} to {high:,}"
    return None


def count_error(kind: str, count: int, name: str) -> str | None:
    limit = COUNTS[kind]
    return f"at most {limit:,} {name} per call" if count > limit else None


# The one audit action a caller may record directly (a question refused before any write);
# every other row is written by the function that acts, in its own transaction.
REFUSED: str = RULES["audit"]["direct_action"]
