"""End-to-end fixtures: the real test bed (sshd, dockerd, compose, nginx, registry).

`make test` brings the bed up (`scripts/testbed up --hosts 3`) before pytest runs;
these tests fail, never skip, when it is not there.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import testbed
from testbed import specs
from testbed.load import Load, LoadResult

ROOT = Path(__file__).resolve().parents[2]

# Short windows so the suite stays fast; `slow` keeps the test bed's own 10 s window.
FAST = {"stability": {"duration": 1, "interval": 0.5}, "drain": 0.5}
# The generated spec has production wait for a second person's approval; tests that
# queue production deployments for other reasons say so with this.
UNAPPROVED = {"approval": "none"}


@dataclass
class Run:
    code: int
    output: str

    def has(self, pattern: str) -> bool:
        return re.search(pattern, self.output) is not None


@dataclass
class Bed:
    info: dict[str, Any]
    tmp: Path
    base: dict[str, Any] = field(default_factory=specs.base)

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return self.base["environments"]["production"]["hosts"]

    def host(self, name: str) -> dict[str, Any]:
        return next(h for h in self.hosts if h["name"] == name)

    def app_dir(self, name: str) -> Path:
        return Path(next(h for h in self.info["hosts"] if h["name"] == name)["app_dir"])

    def spec(self, hosts: tuple[str, ...] = ("h1",), name: str = "spec", **overrides: Any) -> Path:
        """A spec for a subset of the bed's hosts, with top-level sections overridden."""
        return specs.variant(hosts, self.tmp / f"{name}.yml", **overrides)

    def greenlight(self, *args: str, config: Path, timeout: float = 300) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "greenlight", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=cli_env(),
        )
        return Run(done.returncode, done.stdout + done.stderr)

    def start(self, *args: str, config: Path) -> Background:
        return Background([sys.executable, "-m", "greenlight", *args, "--config", str(config)])

    def status(self, config: Path) -> dict[str, Any]:
        run = self.greenlight("status", "--json", config=config)
        return dict(json.loads(run.output))

    def live(self, config: Path) -> dict[str, str | None]:
        return {h["name"]: (h["live"] or {}).get("version") for h in self.status(config)["hosts"]}

    def load(self, host: str, clients: int = 16) -> Load:
        """Continuous traffic through one host's proxy, in a separate process."""
        url = self.host(host)["proxy_url"].rstrip("/") + "/"
        out = self.tmp / f"load-{host}-{time.monotonic_ns()}.csv"
        return Load(url, out, clients=clients, duration=240)

    def loads(self, stack: ExitStack, hosts: tuple[str, ...]) -> list[Load]:
        """Traffic through every host's proxy at once, 16 clients in all."""
        share = max(4, 16 // len(hosts))
        return [stack.enter_context(self.load(h, clients=share)) for h in hosts]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GREENLIGHT_CONFIG", None)
    env["GREENLIGHT_WHO"] = "e2e"
    return env


class Background:
    """A greenlight command running while the test does something else."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=cli_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"never saw {pattern!r}; output so far:\n{''.join(self.seen)}")

    def finish(self, timeout: float = 300) -> Run:
        code = self.process.wait(timeout=timeout)
        time.sleep(0.1)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return Run(code, "".join(self.seen))


@pytest.fixture(scope="session")
def bed_info() -> dict[str, Any]:
    try:
        info = testbed.load_info()
    except Exception as exc:  # the bed is a precondition, not an optional extra
        pytest.fail(f"the test bed is not up ({exc}); run `scripts/testbed up --hosts 3`")
    if len(info["hosts"]) < 3:
        pytest.fail("the end-to-end tests need 3 simulated hosts: scripts/testbed up --hosts 3")
    return info


@pytest.fixture
def bed(bed_info: dict[str, Any], tmp_path: Path) -> Iterator[Bed]:
    """A bed whose hosts are reset to empty before the test."""
    testbed.hosts.reset()
    yield Bed(bed_info, tmp_path)
    for host in bed_info["hosts"]:
        testbed.hosts.host_up(host["name"])


def assert_served(result: LoadResult, *, broken: str | None = None) -> None:
    """Zero failed requests; with `broken`, failures may only be answers of that release."""
    failures = [s for s in result.failures if not (broken and s.version == broken)]
    assert not failures, f"{result.describe()}; first failures: {failures[:5]}"
    assert len(result.samples) > 100, result.describe()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e needs the test bed: `pytest -m "not e2e"` is the fast suite."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)
