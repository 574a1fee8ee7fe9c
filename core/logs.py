"""The one logging setup: every record, ours (structlog) and the libraries' (stdlib), is one line on stderr.

Services write JSON, one event per line, or a readable console line when stderr is a terminal.
The command line stays silent unless asked (`--verbose`), so its one clear line stands alone.
Secrets are scrubbed from every record: the values the process was configured with, tokens it
learns later (`remember_secret`, e.g. a workspace's bot token from an OAuth install) and anything
shaped like a Slack, Anthropic or Discord credential.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"
SILENT = logging.CRITICAL + 10  # above every level: nothing is written
# Credentials recognisable by their shape, wherever they turn up (a header echoed in a debug line, a URL).
_SHAPES = re.compile(
    r"xox[abeoprs]-[A-Za-z0-9-]+"  # Slack bot, user and refresh tokens
    r"|xapp-[A-Za-z0-9-]+"  # Slack app-level tokens
    r"|sk-ant-[A-Za-z0-9_-]+"  # Anthropic keys
    r"|\b(?:Bearer|Bot)\s+[A-Za-z0-9._~+/=-]{8,}"  # Authorization header values
    r"|client_secret=[^&\s'\"]+"
)
# Libraries that log every request at INFO; their warnings still come through.
_CHATTY = ("httpx", "httpcore", "aiohttp.access", "websockets", "urllib3")


class _Secrets:
    def __init__(self) -> None:
        self.values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        if not value or len(value) < 6 or value in self.values:  # very short values would redact ordinary words
            return
        self.values.add(value)
        longest_first = sorted(self.values, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(v) for v in longest_first))

    def scrub(self, text: str) -> str:
        if self.pattern is not None:
            text = self.pattern.sub(REDACTED, text)
        return _SHAPES.sub(REDACTED, text)


_secrets = _Secrets()


def remember_secret(value: str | None) -> None:
    """Never log this value (a token learned at run time, e.g. from an OAuth installation)."""
    _secrets.add(value)


def scrub(text: str) -> str:
    """`text` with every known secret and credential-shaped string replaced."""
    return _secrets.scrub(text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return _secrets.scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_scrub_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return _secrets.scrub(repr(value) if isinstance(value, BaseException) else str(value))


def redact(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """The last word before rendering: no secret leaves the process in a log line."""
    return {key: _scrub_value(value) for key, value in event.items()}


def _drop_meta(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    for key in ("_record", "_from_structlog"):
        event.pop(key, None)
    return event


def configure_logging(
    level: str = "INFO",
    *,
    quiet: bool = False,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog and the stdlib root logger once for the process.

    `quiet` (the command line without --verbose) writes nothing at all; otherwise records at `level`
    and above go to `stream` (stderr): JSON lines, or console lines when the stream is a terminal.
    """
    for value in secrets:
        remember_secret(value)
    out = stream or sys.stderr
    numeric = SILENT if quiet else logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    tty = bool(getattr(out, "isatty", lambda: False)())
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=False) if tty else structlog.processors.JSONRenderer(default=str)
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[_drop_meta, structlog.processors.format_exc_info, redact, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min(numeric, logging.CRITICAL)),  # stdlib drops the rest
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def bind_reply(key: str, **more: Any) -> Any:
    """Context manager: every record logged inside (also by tasks started inside) carries the reply's key."""
    return structlog.contextvars.bound_contextvars(key=key, **more)


__all__ = ["REDACTED", "bind_reply", "configure_logging", "redact", "remember_secret", "scrub"]
