"""The real Convex functions behind a loopback HTTP API (convex/testserver), for the test session.

Node or the server missing fails the tests with the server's output; it never skips them.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from core import stores
from core.messages import Actor, PlatformFacts, WorkspaceRef
from core.stores import convex
from core.stores.convex import ConvexStore
from tests.fakes.slack import TEAM_ID, FakeSlack

CONVEX_DIR = Path(__file__).parents[2] / "convex"


@dataclass
class ConvexServer:
    url: str
    secret: str
    resets: int = 0  # how many times it was emptied (what a client recorded there before is gone)

    def set_env(self, **values: str | None) -> None:
        """Set (or with None, remove) variables of the deployment's environment, as `npx convex env set` does."""
        request = urllib.request.Request(
            f"{self.url}/test/env",
            method="POST",
            data=json.dumps(values).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    def reset(self) -> None:
        """Empty the deployment, so each test starts from nothing."""
        request = urllib.request.Request(f"{self.url}/test/reset", method="POST", data=b"{}")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        self.resets += 1


@asynccontextmanager
async def slack_verifies(server: ConvexServer, *, team_id: str = TEAM_ID) -> AsyncIterator[FakeSlack]:
    """A loopback Slack whose bot token (and API URL) the deployment holds: Convex asks it users.info."""
    async with FakeSlack(team_id=team_id) as slack:
        await asyncio.to_thread(server.set_env, SLACK_BOT_TOKEN=slack.token, SLACK_API_URL=f"{slack.url}/api")
        try:
            yield slack
        finally:
            await asyncio.to_thread(server.set_env, SLACK_BOT_TOKEN=None, SLACK_API_URL=None)


def _wire_facts(facts: PlatformFacts) -> dict[str, Any]:
    return {
        "isOwner": facts.is_owner,
        "isAdmin": facts.is_admin,
        "isGuest": facts.is_guest,
        "roleIds": list(facts.role_ids),
    }


@asynccontextmanager
async def platform_confirms(server: ConvexServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ConvexStore]:
    """A ConvexStore for suites that state their users' platform facts on the Actor, as an adapter does
    for SQLite (the store contract, the case file). The store still sends ids only; on the way out, the
    facts each call's actor (and a role change's target) carries are recorded on the test server as what
    the platform confirmed (/test/facts, as facts:refresh records them after asking Slack or Discord).
    Asking the platform itself is tested against the loopback Slack and Discord in
    tests/contract/test_verified_facts.py."""
    original = convex._actor

    def actor_with_facts(actor: Actor) -> dict[str, Any]:
        return {**original(actor), "_confirmed": _wire_facts(actor.facts)}

    # Every Convex module of the store converts its actors with the one _actor; patch each copy of it
    # (imported first, so none imports the patched one and keeps it after the test).
    for info in pkgutil.iter_modules(stores.__path__, "core.stores."):
        if info.name.startswith("core.stores.convex"):
            importlib.import_module(info.name)
    for module in [m for name, m in sys.modules.items() if name.startswith("core.stores.")]:
        if getattr(module, "_actor", None) is original:
            monkeypatch.setattr(module, "_actor", actor_with_facts)
    store = ConvexStore(server.url, server.secret)
    client = httpx.AsyncClient(base_url=server.url)
    call, set_role, set_blocked = store._call, store.set_role, store.set_blocked

    confirmed: dict[tuple[str, str], tuple[int, float, dict[str, Any]]] = {}

    async def confirm(workspace: str, user: str, facts: dict[str, Any]) -> None:
        # The same facts again on the same server contents, well within their trust period: nothing to record.
        seen = confirmed.get((workspace, user))
        if seen is not None and seen[0] == server.resets and seen[2] == facts and time.monotonic() - seen[1] < 60:
            return
        response = await client.post("/test/facts", json={"workspace": workspace, "user": user, **facts})
        assert response.status_code == 200, response.text
        confirmed[(workspace, user)] = (server.resets, time.monotonic(), facts)

    async def confirming_call(kind: str, path: str, args: dict[str, Any]) -> Any:
        actor = args.get("actor")
        if isinstance(actor, dict) and "_confirmed" in actor:
            args = {**args, "actor": {k: v for k, v in actor.items() if k != "_confirmed"}}
            if isinstance(args.get("workspace"), str):
                await confirm(args["workspace"], actor["userId"], actor["_confirmed"])
        return await call(kind, path, args)

    async def confirming_set_role(ws: WorkspaceRef, actor: Actor, user: str, *rest: Any, **options: Any) -> None:
        await confirm(ws.key, user, _wire_facts(options.get("target_facts") or PlatformFacts()))
        await set_role(ws, actor, user, *rest, **options)

    async def confirming_set_blocked(ws: WorkspaceRef, actor: Actor, user: str, *rest: Any, **options: Any) -> None:
        await confirm(ws.key, user, _wire_facts(options.get("target_facts") or PlatformFacts()))
        await set_blocked(ws, actor, user, *rest, **options)

    monkeypatch.setattr(store, "_call", confirming_call)
    monkeypatch.setattr(store, "set_role", confirming_set_role)
    monkeypatch.setattr(store, "set_blocked", confirming_set_blocked)
    try:
        yield store
    finally:
        await client.aclose()
        await store.close()


@contextmanager
def running_convex_server(fail: Callable[[str], NoReturn] = pytest.fail) -> Iterator[ConvexServer]:
    """Start the loopback Convex server (the tests' session fixture, and the benchmarks, use it)."""
    node = shutil.which("node")
    if node is None:
        fail("Node.js is needed for the Convex test server (scripts/setup-node installs the modules)")
    if not (CONVEX_DIR / "node_modules" / "convex-test").is_dir():
        fail("convex/node_modules is missing: run scripts/setup-node (scripts/test does)")
    secret = secrets.token_hex(16)
    process = subprocess.Popen(
        [node, "--import", "tsx", "testserver/server.ts", "0"],
        cwd=CONVEX_DIR,
        env={"PATH": str(Path(node).parent), "CHATBOT_SERVICE_SECRET": secret, "NODE_NO_WARNINGS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    url = ""
    while not url:
        url = next((line.split("listening on ", 1)[1] for line in lines if "listening on " in line), "")
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            fail("the Convex test server did not start:\n" + "\n".join(lines[-40:]))
        time.sleep(0.05)
    try:
        yield ConvexServer(url, secret)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def convex_server() -> Iterator[ConvexServer]:
    with running_convex_server() as server:
        yield server
