"""A real Redis for the jobs layer's tests: a private redis-server on a free loopback
port, started once per session (the test bed installs redis-server; nothing is mocked)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `scripts/testbed up` (make test does)")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [
            *(binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "everysec"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("the private redis-server did not start")
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def r(redis_server: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server)
    connection.flushall()
    yield connection
    connection.close()
