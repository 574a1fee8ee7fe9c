"""A real Weaviate server for the test session: WEAVIATE_URL if set, else the pinned build on loopback.

A server that cannot be built or started fails the tests with its log; it never skips them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@dataclass
class WeaviateServer:
    url: str
    grpc_port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    binary: str = ""

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start(self, ready_within_s: float = 90.0) -> None:
        """(Re)start the server process with the same ports and data, and wait until it is ready."""
        assert self.log is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1], "--scheme", "http"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self, ready_within_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(server: WeaviateServer, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            pytest.fail(f"the Weaviate server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/v1/.well-known/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the Weaviate server was not ready within {within_s:.0f} s:\n{server.log_tail()}")


def build_binary() -> str:
    build = subprocess.run([str(ROOT / "scripts" / "weaviate"), "build"], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"could not build the Weaviate server:\n{build.stderr[-4000:]}")
    return build.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def weaviate_server() -> Iterator[WeaviateServer]:
    if os.environ.get("WEAVIATE_URL"):
        yield WeaviateServer(os.environ["WEAVIATE_URL"], int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")))
        return
    data = Path(tempfile.mkdtemp(prefix="weaviate-test-"))
    http, grpc = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PERSISTENCE_DATA_PATH": str(data / "data"),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "",
        "DISABLE_TELEMETRY": "true",
        "PROMETHEUS_MONITORING_ENABLED": "false",
        "GRPC_PORT": str(grpc),
        "CLUSTER_HOSTNAME": "node1",
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(free_port()),
        "CLUSTER_DATA_BIND_PORT": str(free_port()),
        "RAFT_PORT": str(free_port()),
        "RAFT_INTERNAL_RPC_PORT": str(free_port()),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "QUERY_DEFAULTS_LIMIT": "25",
        "LOG_LEVEL": "warning",
    }
    server = WeaviateServer(f"http://127.0.0.1:{http}", grpc, log=data / "weaviate.log", env=env, binary=build_binary())
    server.start()
    try:
        yield server
    finally:
        server.stop()
