"""The server script and fixture: failures fail loudly with their logs, and the server listens on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from tests.support.weaviate_server import WeaviateServer, build_binary, free_port, launch


def test_a_missing_go_toolchain_fails_the_build_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache, so a build is needed
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no Go here
    with pytest.raises(pytest.fail.Exception, match="Go is needed to build the Weaviate server"):
        build_binary()


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    build_binary()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = WeaviateServer(f"http://127.0.0.1:{port}", free_port(), tmp_path)
        with pytest.raises(pytest.fail.Exception, match=r"(?s)exited with 1.*address already in use"):
            server.start(ready_within_s=60)


def test_the_server_listens_on_loopback(tmp_path: Path) -> None:
    server = launch(tmp_path / "weaviate")
    try:
        assert server.process is not None
        listening = [
            c.laddr
            for c in psutil.Process(server.process.pid).net_connections(kind="inet")
            if c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)
        ]
    finally:
        server.stop()
    ports = {
        name: int(port)
        for name, port in (line.split("=", 1) for line in (tmp_path / "weaviate" / "ports").read_text().split())
    }
    assert {a.port for a in listening} == set(ports.values())  # no fixed ports (pprof 6060, metrics 2112)
    # Weaviate 1.35 binds its public gRPC and internal data ports as ":port" (no bind option); everything
    # else (REST, gossip over TCP and UDP, raft, raft RPC) must be on loopback.
    everywhere = {ports["GRPC_PORT"], ports["DATA_PORT"]}
    assert all(a.ip == "127.0.0.1" for a in listening if a.port not in everywhere)
