"""`chatbot doctor` against real services: Convex (its deployed functions), Weaviate (its schema), the model,
and the Slack and Discord tokens (auth.test, /users/@me) on their loopback fakes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from core.stores.base import StoreError
from core.stores.convex import ConvexStore
from core.stores.convex_version import FUNCTIONS_DIR, source_hash
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.slack.test_server import child_env
from tests.support.convex_server import ConvexServer
from tests.support.weaviate_server import WeaviateServer


async def doctor(data_dir: Path, env: dict[str, str]) -> tuple[int, dict[str, tuple[bool, str]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "doctor",
        cwd=data_dir, env=child_env(data_dir, **env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert not err.strip(), err.decode()
    rows = {}
    for line in out.decode().splitlines():
        status, name, detail = line.split(maxsplit=2)
        rows[name] = (status == "ok", detail)
    assert proc.returncode is not None
    return proc.returncode, rows


async def test_doctor_checks_every_configured_service(
    data_dir: Path,
    fake_anthropic: FakeAnthropic,
    convex_server: ConvexServer,
    weaviate_server: WeaviateServer,
) -> None:
    async with FakeSlack() as slack, FakeDiscord() as discord_fake:
        env = {
            "CONVEX_URL": convex_server.url,
            "CONVEX_SERVICE_SECRET": convex_server.secret,
            "WEAVIATE_URL": weaviate_server.url,
            "WEAVIATE_GRPC_PORT": str(weaviate_server.grpc_port),
            "ANTHROPIC_API_KEY": "sk-ant-doctor",
            "ANTHROPIC_BASE_URL": fake_anthropic.url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_API_URL": slack.api_url,
            "DISCORD_TOKEN": discord_fake.token,
            "DISCORD_API_URL": discord_fake.api_url,
        }
        code, rows = await doctor(data_dir, env)
        assert code == 0, rows
        assert list(rows) == ["store", "retriever", "llm", "functions", "schema", "slack", "discord"]
        assert all(ok for ok, _ in rows.values()), rows
        assert "match this checkout" in rows["functions"][1]
        assert "ChatbotChunk" in rows["schema"][1]
        assert "team T0FAKE" in rows["slack"][1] and slack.calls_to("auth.test")
        assert rows["discord"][1].startswith("DISCORD_TOKEN: bot")

        fake_anthropic.unknown_models.add("nope")
        code, rows = await doctor(
            data_dir, {**env, "SLACK_BOT_TOKEN": "xoxb-wrong", "DISCORD_TOKEN": "wrong", "CHATBOT_MODEL": "nope"}
        )
        assert code == 1
        assert not rows["llm"][0] and rows["store"][0] and rows["schema"][0]
        assert not rows["slack"][0] and "invalid_auth" in rows["slack"][1]
        assert not rows["discord"][0] and "refused DISCORD_TOKEN" in rows["discord"][1]
        assert "xoxb-wrong" not in str(rows)


async def test_doctor_says_when_the_deployed_functions_are_not_this_checkouts(
    convex_server: ConvexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ConvexStore(convex_server.url, convex_server.secret)
    try:
        assert "match this checkout" in await store.diagnose()
        monkeypatch.setattr("core.stores.convex.source_hash", lambda: "0" * 64)  # an edited checkout
        with pytest.raises(StoreError, match="not this checkout's"):
            await store.diagnose()
    finally:
        await store.close()


def test_the_generated_fingerprint_is_this_checkouts() -> None:
    """scripts/codegen.mjs writes what version:version serves; Python computes the same from the sources."""
    generated = (FUNCTIONS_DIR / "_generated" / "version.js").read_text()
    assert f'"{source_hash()}"' in generated, "convex/functions changed: run `cd convex && node scripts/codegen.mjs`"
