"""One exception tree for every backend: store, retriever, embedder, LLM.

Callers decide by kind, not by vendor: an `Unavailable` backend is retried or degraded around
(answer without knowledge, keep the question), a `Refused` call is reported and not retried as-is,
an `Invalid` input is the caller's to fix. `str()` of each is safe to show a user; the cause for
operators travels in `__cause__` and the logs.
"""

from __future__ import annotations


class ChatbotError(Exception):
    """The root of every failure a backend reports on purpose; `code` is stable across backends."""

    code = "error"


class Unavailable(ChatbotError):
    """The backend could not be reached or did not answer in time; a later try may work."""

    code = "unavailable"


class Refused(ChatbotError):
    """The backend (or the rule book) said no; trying again unchanged gets the same answer."""

    code = "refused"


class Invalid(ChatbotError):
    """The input is malformed or out of bounds."""

    code = "invalid"
