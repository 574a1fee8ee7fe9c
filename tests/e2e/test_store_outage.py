"""A dead store does not drop the user's message: the question waits and is answered once the store is back."""

from __future__ import annotations

import asyncio
import io
import secrets
import shutil
import socket
from pathlib import Path

from bots.shell.shell import StreamSurface
from core.llm.extractive import ExtractiveLLM
from core.messages import Actor, IncomingMessage, MessageRole, Platform, PlatformFacts, ReplyStatus, WorkspaceRef
from core.pacing import EditScheduler
from core.pipeline import STORE_DOWN_NOTICE, Pipeline
from core.retrieval.fts import FtsRetriever
from core.stores.convex import ConvexStore
from tests.support.convex_server import CONVEX_DIR

WS = WorkspaceRef(Platform.SLACK, "T-outage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_question_waits_for_the_store_and_is_then_answered(tmp_path: Path) -> None:
    port, secret = free_port(), secrets.token_hex(8)
    store = ConvexStore(f"http://127.0.0.1:{port}", secret, timeout=2, attempts=1)
    retriever = await FtsRetriever.open(tmp_path / "k.sqlite")
    pipeline = Pipeline(store=store, retriever=retriever, llm=ExtractiveLLM(), store_retry_s=(1, 2, 3, 5, 8, 13))
    out, err = io.StringIO(), io.StringIO()
    author = Actor("U1", PlatformFacts())
    message = IncomingMessage(WS, "C1", "t1", "1700.1", author, "where is the handbook?", mentioned=True)
    server = None
    try:
        outcome = await pipeline.answer(message, StreamSurface(out, err), EditScheduler())
        assert outcome.status == "queued"
        assert STORE_DOWN_NOTICE in err.getvalue()
        assert out.getvalue() == ""

        node = shutil.which("node")
        assert node is not None, "Node.js is needed for the Convex test server"
        server = await asyncio.create_subprocess_exec(
            node,
            "--import",
            "tsx",
            "testserver/server.ts",
            str(port),
            cwd=CONVEX_DIR,
            env={"PATH": str(Path(node).parent), "CHATBOT_SERVICE_SECRET": secret},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 60)
        assert b"listening on" in line, line

        await pipeline.drain(timeout_s=60)
        assert "nothing in the knowledge base matches" in out.getvalue()  # the answer arrived after all
        thread = await store.find_thread(WS, "C1", "t1")
        assert thread is not None
        page = await store.messages(WS, thread)
        assert [(m.role, m.status) for m in reversed(page.items)] == [
            (MessageRole.USER, ReplyStatus.COMPLETE),
            (MessageRole.ASSISTANT, ReplyStatus.COMPLETE),
        ]
        assert page.items[-1].text == "where is the handbook?"
    finally:
        if server is not None:
            server.terminate()
            await server.wait()
        await retriever.close()
        await store.close()
