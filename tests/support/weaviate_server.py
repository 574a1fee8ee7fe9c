"""A real Weaviate server for the test session: WEAVIATE_URL if set, else the pinned build on loopback.

The server is built (or reused from the cache) and run by `scripts/weaviate`; this module only
chooses its REST and gRPC ports, waits for it, and stops it. A server that cannot be built or
started fails the tests with its log; it never skips them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "weaviate"


@dataclass
class WeaviateServer:
    url: str
    grpc_port: int
    directory: Path | None = None  # None: an external server (WEAVIATE_URL) this session does not manage
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path | None:
        return self.directory / "weaviate.log" if self.directory else None

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def start(self, ready_within_s: float = 120.0) -> None:
        """(Re)start the server with the same ports and data, and wait until it is ready."""
        assert self.directory is not None and self.log is not None, "an external server is not started here"
        http_port = self.url.rsplit(":", 1)[1]
        env = {**os.environ, "WEAVIATE_HTTP_PORT": http_port, "WEAVIATE_GRPC_PORT": str(self.grpc_port)}
        with self.log.open("ab") as log:
            # `run` execs the server, so this process is the server itself and stop() reaches it.
            self.process = subprocess.Popen(
                [str(SCRIPT), "run", str(self.directory)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(ready_within_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _wait_ready(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"the Weaviate server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/.well-known/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        pytest.fail(f"the Weaviate server was not ready within {within_s:.0f} s:\n{self.log_tail()}")


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together while choosing)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def build_binary() -> str:
    """Build or reuse the pinned binary (the first build takes many minutes); fail the test if it cannot."""
    build = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"could not build the Weaviate server:\n{build.stderr[-4000:]}")
    return build.stdout.strip().splitlines()[-1]


def launch(directory: Path) -> WeaviateServer:
    """Build (or reuse) and start a server of its own with data in `directory`, on free loopback ports."""
    build_binary()  # separately, so a failed build is reported as one, with its log
    directory.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = free_ports(2)
    server = WeaviateServer(f"http://127.0.0.1:{http_port}", grpc_port, directory)
    server.start()
    return server


@pytest.fixture(scope="session")
def weaviate_server() -> Iterator[WeaviateServer]:
    if os.environ.get("WEAVIATE_URL"):
        yield WeaviateServer(os.environ["WEAVIATE_URL"], int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")))
        return
    directory = Path(tempfile.mkdtemp(prefix="weaviate-test-"))
    server = launch(directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
