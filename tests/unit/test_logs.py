"""core.logs: one event per line as JSON (with the reply's key), console lines on a terminal, silence, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from core.logs import REDACTED, bind_reply, configure_logging, remember_secret


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()


def test_json_lines_carry_the_reply_key_for_our_records_and_the_libraries() -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    with bind_reply("slack:T1:C1:123.4"):
        structlog.get_logger("core.pipeline").info("pipeline.refused", code="blocked")
        logging.getLogger("slack_bolt.App").warning("listener %s failed", "x")
    structlog.get_logger("core.app").debug("below.the.level")
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["pipeline.refused", "listener x failed"]
    assert all(r["key"] == "slack:T1:C1:123.4" for r in records)
    assert records[0]["code"] == "blocked" and records[0]["level"] == "info"
    assert records[1]["logger"] == "slack_bolt.App" and records[1]["level"] == "warning"


def test_a_terminal_gets_readable_console_lines() -> None:
    out = Terminal()
    configure_logging("INFO", stream=out)
    with bind_reply("discord:G1:C1:9"):
        structlog.get_logger("core.app").info("core.ready", store="SqliteStore")
    line = out.getvalue().strip()
    assert "core.ready" in line and "store=SqliteStore" in line and "key=discord:G1:C1:9" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_quiet_writes_nothing_at_any_level() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", quiet=True, stream=out)
    structlog.get_logger("x").critical("boom")
    logging.getLogger("discord").critical("boom")
    assert out.getvalue() == ""


def test_secrets_are_scrubbed_from_fields_messages_and_tracebacks() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", stream=out, secrets=["configured-signing-secret", None])
    remember_secret("learned-at-runtime-token")
    log = structlog.get_logger("t")
    log.info("call", headers={"Authorization": "Bearer xoxb-123-456-abc"}, secret="configured-signing-secret")
    logging.getLogger("slack_sdk").debug("sending token=learned-at-runtime-token app=xapp-1-A1-2-zz")
    try:
        raise RuntimeError("key sk-ant-api03-abcdef refused")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    for leaked in ("xoxb-123", "configured-signing-secret", "learned-at-runtime-token", "xapp-1", "sk-ant-api03"):
        assert leaked not in text
    assert text.count(REDACTED) >= 5
    assert "RuntimeError" in text  # the traceback itself is kept
