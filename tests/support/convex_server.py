"""The real Convex functions behind a loopback HTTP API (convex/testserver), for the test session.

Node or the server missing fails the tests with the server's output; it never skips them.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

CONVEX_DIR = Path(__file__).parents[2] / "convex"


@dataclass
class ConvexServer:
    url: str
    secret: str

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
