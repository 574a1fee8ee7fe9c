"""Text from outside, made safe to store: the one normalization every adapter's input goes through.

JSON may carry lone UTF-16 surrogates ("\\ud800") that no UTF-8 encoder accepts, so a store write
would fail long after the event was acknowledged. They become U+FFFD. NUL and the other C0/C1
control characters are removed (nobody types them, and NUL truncates text in some drivers), except
tab, newline and carriage return, which are text.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced and control characters (but tab/newline/CR) removed."""
    if text.isascii() and text.isprintable():
        return text  # the common case: nothing to do
    return _CONTROL.sub("", _SURROGATE.sub(REPLACEMENT, text))


def clean_payload(value: Any) -> Any:
    """A parsed JSON (or form) payload with every string, keys included, passed through clean_text."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_payload(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_payload(v) for v in value]
    return value
