"""What only the SQLite store can show: its file, its thread, other processes on the same file.

Everything both stores must do lives in tests/contract/test_store_contract.py; the rules here that
Convex does not follow yet are listed in the report of the change that added them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from core.messages import Actor, MessageRole, Platform, PlatformFacts, ReplyStatus, WorkspaceRef
from core.roles import Role
from core.stores.base import Delta, PermissionDenied, StoreError, StoreUnavailable
from core.stores.sqlite import SqliteStore

WS = WorkspaceRef(Platform.SLACK, "T-sqlite")
OWNER = Actor("U-owner", PlatformFacts(is_owner=True))
ADMIN = Actor("U-admin", PlatformFacts(is_admin=True))

ROOT = Path(__file__).resolve().parents[2]

# Each process opens its own store on the shared file, says it is ready, waits for the start line
# (so all of them race at once) and claims the same keys, half of them in reverse order.
CLAIMER = """
import asyncio, json, sys
from pathlib import Path
from core.stores.sqlite import SqliteStore

async def main() -> None:
    store = await SqliteStore.open(Path(sys.argv[1]))
    keys = [f"event-{i}" for i in range(int(sys.argv[2]))]
    if int(sys.argv[3]) % 2:
        keys.reverse()
    print("ready", flush=True)
    sys.stdin.readline()
    won = [k for k in keys if await store.claim_event(k)]
    await store.close()
    print(json.dumps(won))

asyncio.run(main())
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "store.sqlite")
    try:
        yield store
    finally:
        await store.close()


async def invalid(call: Awaitable[object]) -> None:
    with pytest.raises(StoreError) as info:
        await call
    assert info.value.code == "invalid", info.value


async def test_claims_are_atomic_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    await (await SqliteStore.open(path)).close()  # the schema exists before the race starts
    keys, processes = 300, 4
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLAIMER,
            str(path),
            str(keys),
            str(n),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), timeout=60) == b"ready\n"
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate(b"go\n") for p in procs)), timeout=120)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert all(p.returncode == 0 for p in procs), [err.decode() for _, err in outputs]
    won = [key for out, _ in outputs for key in json.loads(out)]
    assert sorted(won) == sorted(f"event-{i}" for i in range(keys))  # every key once, none twice


async def test_open_creates_folder_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "folder" / "store.sqlite"
    store = await SqliteStore.open(path)
    await store.claim_event("kept")
    await store.close()
    again = await SqliteStore.open(path)  # reopening an existing file keeps its data
    try:
        assert await again.claim_event("kept") is False
    finally:
        await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_calls_run_on_one_worker_thread_not_the_event_loop(store: SqliteStore) -> None:
    names = await asyncio.gather(*(store._worker.read(lambda db: threading.current_thread().name) for _ in range(5)))
    assert set(names) != {threading.current_thread().name}
    assert len(set(names)) == 1 and names[0].startswith("sqlite-store")


async def test_loop_stays_responsive_while_the_store_writes(store: SqliteStore) -> None:
    thread = await store.thread_for(WS, "C1", "busy")
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(heartbeat())
    await asyncio.gather(*(store.add_message(WS, thread, MessageRole.USER, "x" * 10_000) for _ in range(200)))
    beat.cancel()
    assert ticks > 200  # the loop ran other work while the disk writes happened elsewhere


async def test_unknown_and_foreign_ids(store: SqliteStore) -> None:
    assert await store.message(WS, "999999") is None
    await invalid(store.message(WS, "not-a-number"))
    await invalid(store.messages(WS, "j57abc"))
    with pytest.raises(StoreError) as info:
        await store.add_message(WS, "999999", MessageRole.USER, "hi")
    assert info.value.code == "not_found"
    with pytest.raises(StoreError) as info:
        await store.complete_message(WS, "999999", text="x", status=ReplyStatus.COMPLETE)
    assert info.value.code == "not_found"


async def test_oversized_audit_detail_is_rejected_not_cut(store: SqliteStore) -> None:
    await invalid(store.audit(WS, "U1", "refused", "d" * 2_001))
    await store.audit(WS, "U1", "refused", "d" * 2_000)
    entries = await store.audit_entries(WS, ADMIN)
    assert [len(e.detail) for e in entries] == [2_000]


async def test_other_bad_inputs(store: SqliteStore) -> None:
    thread = await store.thread_for(WS, "C1", "t")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await invalid(store.settings(WorkspaceRef(Platform.SLACK, "T" * 201)))
    await invalid(store.settings(WorkspaceRef(Platform.SLACK, "")))
    await invalid(store.append_deltas([Delta(reply, -1, "x", WS.key)]))
    await invalid(store.append_deltas([Delta(reply, 0, "x", WS.key)] * 4_097))
    await invalid(store.messages(WS, thread, limit=0))
    await invalid(store.consume_quota(WS, "U1", "w", -1))
    await invalid(store.update_settings(WS, ADMIN, {}))
    await invalid(store.update_settings(WS, ADMIN, {"quotas": {"emperor": 5}}))
    await invalid(store.set_role(WS, ADMIN, "U-x", 42))  # type: ignore[arg-type]
    await invalid(store.set_blocked(WS, ADMIN, "U-x", "yes"))  # type: ignore[arg-type]
    assert await store.members(WS) == []


async def test_deltas_are_dropped_once_the_reply_is_final(store: SqliteStore) -> None:
    thread = await store.thread_for(WS, "C1", "t")
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await store.append_deltas([Delta(reply, 0, "a", WS.key), Delta(reply, 1, "b", WS.key)])
    await store.complete_message(WS, reply, text="ab", status=ReplyStatus.COMPLETE)
    await store.append_deltas([Delta(reply, 2, "late", WS.key)])  # a flush that lost the race with completion
    assert await store._worker.read(lambda db: db.execute("SELECT COUNT(*) FROM deltas").fetchone()[0]) == 0


async def test_the_default_role_is_at_most_curator_and_no_back_door(store: SqliteStore) -> None:
    # The default role is granted to everyone, the admin included: never admin, for anyone.
    await invalid(store.update_settings(WS, ADMIN, {"default_role": Role.ADMIN}))
    await invalid(store.update_settings(WS, OWNER, {"default_role": Role.ADMIN}))
    # A default made admin before the limit: an admin by default cannot lower it (that demotes its peers).
    await store._worker.transaction(
        lambda db: db.execute("INSERT INTO workspaces (key, settings) VALUES (?, ?)", (WS.key, '{"default_role": 4}'))
    )
    with pytest.raises(PermissionDenied) as info:
        await store.update_settings(WS, Actor("U-by-default"), {"default_role": Role.MEMBER})
    assert info.value.code == "peer_or_higher"
    await store.update_settings(WS, OWNER, {"default_role": Role.MEMBER})
    await store.update_settings(WS, ADMIN, {"default_role": Role.CURATOR})
    assert (await store.settings(WS)).default_role is Role.CURATOR


async def test_nobody_makes_owner_the_default_role(store: SqliteStore) -> None:
    await invalid(store.update_settings(WS, OWNER, {"default_role": Role.OWNER}))
    assert (await store.settings(WS)).default_role is Role.MEMBER


async def test_a_locked_database_is_unavailable_then_recovers(store: SqliteStore) -> None:
    await store._worker.read(lambda db: db.execute("PRAGMA busy_timeout=50"))  # fail fast instead of after 10 s
    holder = sqlite3.connect(store.path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        with pytest.raises(StoreUnavailable):
            await store.claim_event("during")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert await store.claim_event("during") is True  # nothing half-done, the connection is usable again
    assert await store.claim_event("during") is False
