"""A mutation whose answer is lost on the way back is retried by ConvexStore, and Convex applies it once.

Between the store and the Convex test server sits a loopback proxy that forwards every request but,
for the first call of a chosen function, drops the connection after the server has answered: the
write landed, the bot saw a transport error. This is the case request ids exist for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.messages import Actor, Platform, WorkspaceRef
from core.roles import Role
from core.stores.convex import ConvexStore
from tests.fakes.loopback import serve
from tests.support.convex_server import slack_verifies

WS = WorkspaceRef(Platform.SLACK, "T-retries")
OWNER = Actor("U-owner")


class LossyProxy:
    """Forwards to `upstream`; the first call of each path in `lose` gets its connection cut after it ran."""

    def __init__(self, upstream: str, lose: set[str]) -> None:
        self.upstream = upstream
        self.lose = set(lose)
        self.calls: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = str(json.loads(body).get("path", "")) if body else ""
        self.calls[path] += 1
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.upstream}{request.path}", data=body, headers={"content-type": "application/json"}) as up,
        ):
            answer = await up.read()
            status = up.status
        if path in self.lose:
            self.lose.discard(path)
            assert request.transport is not None
            request.transport.close()  # the server has applied it; the client never hears back
            raise ConnectionResetError("answer lost")
        return web.Response(body=answer, status=status, content_type="application/json")


@pytest.fixture
async def lossy(convex_server: Any) -> AsyncIterator[tuple[LossyProxy, ConvexStore]]:
    convex_server.reset()
    proxy = LossyProxy(convex_server.url, set())
    app = web.Application()
    app.router.add_post("/api/{kind}", proxy.handle)
    runner, url = await serve(app)
    store = ConvexStore(url, convex_server.secret, timeout=5)
    try:
        async with slack_verifies(convex_server, team_id=WS.external_id) as slack:
            slack.add_user(OWNER.user_id, is_owner=True)  # Convex asks Slack who owns the workspace
            yield proxy, store
    finally:
        await store.close()
        await runner.cleanup()


async def test_lost_answer_of_a_role_change_is_retried_and_applied_once(
    lossy: tuple[LossyProxy, ConvexStore],
) -> None:
    proxy, store = lossy
    proxy.lose.add("workspaces:setRole")
    await store.set_role(WS, OWNER, "U-x", Role.CURATOR)
    assert proxy.calls["workspaces:setRole"] == 2, "the store retried after the lost answer"
    member = await store.membership(WS, "U-x")
    assert member is not None and member.role == Role.CURATOR
    entries = await store.audit_entries(WS, OWNER)
    assert [e.action for e in entries].count("role.set") == 1, "the retry wrote no second audit row"


async def test_lost_answer_of_a_quota_use_counts_once_and_returns_the_first_answer(
    lossy: tuple[LossyProxy, ConvexStore],
) -> None:
    proxy, store = lossy
    proxy.lose.add("workspaces:consumeQuota")
    assert await store.consume_quota(WS, "U1", "day", 2) is True
    assert proxy.calls["workspaces:consumeQuota"] == 2
    assert await store.consume_quota(WS, "U1", "day", 2) is True  # the second of two: the retry was not counted
    assert await store.consume_quota(WS, "U1", "day", 2) is False
