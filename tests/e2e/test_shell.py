"""End to end through the real `chatbot` command: ingest, ask, stream, persist, fail cleanly."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef
from core.stores.sqlite import SqliteStore
from tests.fakes.anthropic import FakeAnthropic

CORPUS = Path(__file__).parents[1] / "data" / "corpus"


@dataclass
class Run:
    code: int
    out: str
    err: str


async def chatbot(*args: str, env: dict[str, str], stdin: str | None = None, limit_s: float = 60) -> Run:
    """Run the installed console script's entry point in a child process; the loop keeps serving fakes."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CONVEX_", "WEAVIATE_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else b""), limit_s)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    return {"CHATBOT_DATA_DIR": str(data_dir)}


async def stored_replies(data_dir: Path) -> list[tuple[MessageRole, ReplyStatus, str]]:
    """Every message of the shell thread `t1`, oldest first."""
    store = await SqliteStore.open(data_dir / "chatbot.sqlite")
    try:
        ws = WorkspaceRef(Platform.SHELL, "local")
        thread_id = await store.find_thread(ws, "terminal", "t1")
        assert thread_id is not None
        page = await store.messages(ws, thread_id, limit=100)
        return [(m.role, m.status, m.text) for m in reversed(page.items)]
    finally:
        await store.close()


async def test_ingest_then_extractive_answer_without_a_key(env: dict[str, str], data_dir: Path) -> None:
    ingest = await chatbot("ingest", str(CORPUS), env=env)
    assert ingest.code == 0, ingest.err
    again = await chatbot("ingest", str(CORPUS), env=env)
    assert again.code == 0 and "unchanged" in (again.out + again.err).lower()

    run = await chatbot("shell", env=env, stdin="How do I roll back a bad deploy?\n")
    assert run.code == 0, run.err
    assert "No language model is configured" in run.out
    assert "Sources:" in run.out and "[1]" in run.out
    assert "deploy" in run.out.lower()


async def test_streamed_answer_with_sources_is_persisted(env: dict[str, str], data_dir: Path) -> None:
    async with FakeAnthropic() as fake:
        env = {**env, "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        assert (await chatbot("ingest", str(CORPUS), env=env)).code == 0
        answer = "To roll back, run the rollback job for the previous release [1]. Then tell #ops."
        fake.script(answer, chunk_chars=5)
        run = await chatbot("shell", "--thread", "t1", env=env, stdin="How do I roll back a bad deploy?")
        assert run.code == 0, run.err
        assert run.out.startswith(answer)
        assert "Sources:\n[1]" in run.out
        request = fake.last_request
        assert request["stream"] is True
        assert request["messages"][-1] == {"role": "user", "content": "How do I roll back a bad deploy?"}
        # The system prompt goes as cacheable text blocks; the numbered context is among them.
        system = request["system"]
        assert all(block["type"] == "text" and block["cache_control"] == {"type": "ephemeral"} for block in system)
        assert "[1]" in "".join(block["text"] for block in system)

    rows = await stored_replies(data_dir)
    assert rows[0] == (MessageRole.USER, ReplyStatus.COMPLETE, "How do I roll back a bad deploy?")
    assert rows[1][:2] == (MessageRole.ASSISTANT, ReplyStatus.COMPLETE)
    assert rows[1][2] == answer


@pytest.mark.parametrize("mode", ["error_event", "disconnect"])
async def test_mid_stream_failure_leaves_a_saved_marked_partial_reply(
    env: dict[str, str], data_dir: Path, mode: str
) -> None:
    async with FakeAnthropic() as fake:
        fake.fail_after(30, "The first part arrives fine. " * 3, mode=mode)  # type: ignore[arg-type]
        run = await chatbot(
            "shell",
            "--thread",
            "t1",
            env={**env, "ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": fake.url},
            stdin="Tell me",
        )
    assert run.code == 1
    assert run.out.startswith("The first part arrives fine.")
    assert "cut off" in run.out
    assert "the answer failed" in run.err
    rows = await stored_replies(data_dir)
    role, status, text = rows[-1]
    assert (role, status) == (MessageRole.ASSISTANT, ReplyStatus.FAILED)
    assert text.startswith("The first part arrives fine.") and "cut off" in text
    assert rows[-2][0] is MessageRole.USER  # the question was saved before the model was called


async def test_empty_question_is_one_clear_line(env: dict[str, str], data_dir: Path) -> None:
    run = await chatbot("shell", env=env, stdin="   \n")
    assert run.code == 2
    assert run.err.strip().count("\n") == 0 and "no question" in run.err
    assert not (data_dir / "chatbot.sqlite").exists()


async def test_oversized_question_is_refused_before_anything_is_written(env: dict[str, str], data_dir: Path) -> None:
    run = await chatbot("shell", env=env, stdin="x" * 100_000)
    assert run.code == 2
    assert "too long" in run.err and run.err.strip().count("\n") == 0
    assert not (data_dir / "chatbot.sqlite").exists()


async def test_missing_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    run = await chatbot("shell", env={"CHATBOT_DATA_DIR": str(missing)}, stdin="hello")
    assert run.code == 2
    assert "CHATBOT_DATA_DIR" in run.err and run.err.strip().count("\n") == 0
    assert not missing.exists()


async def test_binary_file_is_rejected_and_nothing_is_written(env: dict[str, str], tmp_path: Path) -> None:
    blob = tmp_path / "image.bin"
    blob.write_bytes(bytes(range(256)) * 40)
    run = await chatbot("ingest", str(blob), env=env)
    assert run.code != 0
    assert "image.bin" in run.err
    docs = await chatbot("shell", env=env, stdin="what is in image.bin?")
    assert "nothing in the knowledge base matches" in docs.out


async def test_unreachable_model_ends_in_a_clear_failure(env: dict[str, str]) -> None:
    # A port nothing listens on (bound then closed); the SDK's retries still end quickly.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = await chatbot(
        "shell",
        env={**env, "ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"},
        stdin="hello?",
    )
    assert run.code == 1
    # Users read what happened in their terms; the operator's line on stderr says the same, no hint.
    assert "could not reach the model service" in run.out
    assert "could not reach the model service" in run.err


async def test_doctor_reports_each_service(env: dict[str, str]) -> None:
    run = await chatbot("doctor", env=env)
    assert run.code == 0, run.out + run.err
    assert "store" in run.out and "retriever" in run.out and "extractive" in run.out


async def test_local_roles_command(env: dict[str, str]) -> None:
    granted = await chatbot("roles", "set", "U42", "curator", env=env)
    assert granted.code == 0, granted.out + granted.err
    listing = await chatbot("roles", "list", env=env)
    assert "U42" in listing.out and "curator" in listing.out
    bad = await chatbot("roles", "set", "U42", "emperor", env=env)
    assert bad.code == 1 and "unknown role" in bad.out
    malformed = await chatbot("roles", "set", "U42", env=env)  # no role given
    assert malformed.code == 1 and "Usage" in malformed.out, malformed.out


async def test_interactive_repl_streams_answers_in_a_terminal(env: dict[str, str]) -> None:
    """A real pseudo-terminal: the REPL prompts, renders the streamed answer, and /quit leaves."""
    import pty
    import re
    import subprocess

    async with FakeAnthropic() as fake:
        fake.script("Deploys happen from **main** after review.", chunk_chars=4, delay_s=0.02)
        master, slave = pty.openpty()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CONVEX_", "WEAVIATE_"))}
        proc = subprocess.Popen(  # noqa: ASYNC220 - a pty needs a plain Popen; reads below go through a thread
            [sys.executable, "-m", "bots.cli", "shell"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
            env={
                **base,
                **env,
                "ANTHROPIC_API_KEY": "k",
                "ANTHROPIC_BASE_URL": fake.url,
                "TERM": "xterm",
                "COLUMNS": "100",
            },
        )
        os.close(slave)
        screen = ""

        async def read_until(needle: str, limit_s: float = 30) -> str:
            nonlocal screen
            loop = asyncio.get_running_loop()
            deadline = loop.time() + limit_s
            while needle not in re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen):
                assert loop.time() < deadline, f"never saw {needle!r} in {screen!r}"
                ready = await asyncio.to_thread(_read_some, master)
                screen += ready
            return screen

        try:
            await read_until("you ›")
            os.write(master, b"How do deploys work?\r")
            await read_until("after review.")
            await read_until("you ›")  # the prompt returns after the answer
            os.write(master, b"/quit\r")
            code = await asyncio.to_thread(proc.wait, 20)
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
    assert code == 0
    assert fake.last_request["messages"][-1]["content"] == "How do deploys work?"


def _read_some(fd: int) -> str:
    import select

    ready, _, _ = select.select([fd], [], [], 0.5)
    if not ready:
        return ""
    try:
        return os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return ""


async def test_local_usage_and_budget_commands(env: dict[str, str]) -> None:
    """The CLI reaches the same admin layer: budgets set and shown, usage reported."""
    set_month = await chatbot("roles", "budget", "month", "2m", env=env)
    assert set_month.code == 0 and "monthly token budget is now 2,000,000 tokens" in set_month.out, set_month.out
    shown = await chatbot("roles", "budget", env=env)
    assert "0 of 2,000,000 tokens this month" in shown.out, shown.out
    usage = await chatbot("roles", "usage", "7", env=env)
    assert usage.code == 0 and "No tokens used since" in usage.out, usage.out
    bad = await chatbot("roles", "budget", "month", "lots", env=env)
    assert bad.code == 1 and "not a number of tokens" in bad.out  # and nothing changed:
    assert "0 of 2,000,000 tokens this month" in (await chatbot("roles", "budget", env=env)).out
