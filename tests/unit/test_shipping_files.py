"""What a team runs Greenlight with: `compose.bot.yml` (and the test bed's override)
validates, as `docker compose config` reads it; the image installs a locked set of
runtime dependencies only. The docker CLI with compose v2 is all this needs, no engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_config(tmp_path: Path, *files: str, **env: str) -> dict[str, Any]:
    """The compose model as `docker compose config` resolves it, every profile on."""
    for name in ("specs", "keys"):
        (tmp_path / name).mkdir(exist_ok=True)
    for name in ("keys/id_ed25519", "keys/known_hosts", "bot.env"):
        (tmp_path / name).touch()
    settings = {
        "GREENLIGHT_ENV_FILE": str(tmp_path / "bot.env"),
        "GREENLIGHT_SPECS": str(tmp_path / "specs"),
        "GREENLIGHT_SSH_KEY": str(tmp_path / "keys/id_ed25519"),
        "GREENLIGHT_KNOWN_HOSTS": str(tmp_path / "keys/known_hosts"),
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GREENLIGHT_", "REDIS"))}
    words = [w for f in files for w in ("-f", str(ROOT / f))]
    done = subprocess.run(
        ["docker", "compose", *words, "--profile", "dashboard", "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=clean | settings | env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture
def model(tmp_path: Path) -> dict[str, Any]:
    return compose_config(tmp_path, "compose.bot.yml")


def test_the_compose_file_validates_with_redis_the_bot_workers_and_the_dashboard(
    model: dict[str, Any],
) -> None:
    services = model["services"]
    assert set(services) == {"redis", "bot", "worker", "dashboard"}
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = " ".join(redis["command"])
    assert "--appendonly yes --appendfsync everysec" in command
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert [v["source"] for v in redis["volumes"]] == ["redis-data"]
    assert "redis-data" in model["volumes"]
    assert "ports" not in redis  # only the project's own services reach it
    for name in ("bot", "worker"):
        service = services[name]
        assert service["image"] == "greenlight:latest"
        assert service["command"] == [name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["restart"] == "unless-stopped"
        assert service["init"] is True
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["healthcheck"]["test"] == ["CMD", "greenlight", "healthcheck", name]
        mounts = {v["target"]: v for v in service["volumes"]}
        assert set(mounts) == {
            "/etc/greenlight/specs",
            "/etc/greenlight/ssh/id_ed25519",
            "/etc/greenlight/ssh/known_hosts",
        }
        assert all(m["read_only"] and m["type"] == "bind" for m in mounts.values())
    assert services["dashboard"]["profiles"] == ["dashboard"]
    assert services["dashboard"]["build"]["target"] == "dashboard"


def test_workers_scale_and_have_time_for_a_warm_shutdown(model: dict[str, Any]) -> None:
    worker = model["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    # `7m`: the longest phase (a 300 s stability window, the drain) runs to its end.
    assert worker["stop_grace_period"] == "7m0s"


def test_every_published_port_is_on_loopback(model: dict[str, Any]) -> None:
    published = [
        (name, port)
        for name, service in model["services"].items()
        for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} == {"bot", "dashboard"}
    assert all(port["host_ip"] == "127.0.0.1" for _, port in published), published


def test_secrets_come_from_the_env_file_not_the_compose_file(tmp_path: Path) -> None:
    (tmp_path / "bot.env").write_text("GREENLIGHT_BOT_TOKEN=123:from-the-env-file\n")
    model = compose_config(tmp_path, "compose.bot.yml")
    for name in ("bot", "worker"):
        assert model["services"][name]["environment"]["GREENLIGHT_BOT_TOKEN"] == (
            "123:from-the-env-file"
        )
    text = (ROOT / "compose.bot.yml").read_text()
    # A setting named like a secret is only ever an interpolation (`${NAME:-}`).
    assert not re.search(r"^\s*\w*(TOKEN|PASSWORD|SECRET)\w*:\s+[^$\s]", text, re.M)


def test_the_test_bed_override_puts_every_service_on_the_host_network(tmp_path: Path) -> None:
    model = compose_config(
        tmp_path, "compose.bot.yml", "compose.bot.testbed.yml", GREENLIGHT_REDIS_PORT="6391"
    )
    services = model["services"]
    for service in services.values():
        assert service["network_mode"] == "host"
        assert not service.get("ports")
        assert service.get("build", {}).get("network", "host") == "host"
    assert "--bind 127.0.0.1 --port 6391" in " ".join(services["redis"]["command"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "-p", "6391", "ping"]
    for name in ("bot", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://127.0.0.1:6391/0"
    assert services["bot"]["environment"]["GREENLIGHT_HTTP_HOST"] == "127.0.0.1"


def pins(lock: Path) -> dict[str, str]:
    """name -> version of every requirement in a lock file, each with its hashes."""
    text = lock.read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)((?:[^\n]*\\\n)+[^\n]*)", text, re.M)
    for name, _, rest in entries:
        assert "--hash=sha256:" in rest, f"{lock.name}: {name} has no hash"
    requirements = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(requirements) == len(entries), f"{lock.name}: a requirement without an exact pin"
    return {name.lower().replace("_", "-"): version for name, version, _ in entries}


def test_the_image_installs_the_runtime_dependencies_from_a_locked_set() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins(ROOT / "requirements.lock")
    wanted = {re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in project["dependencies"]}
    assert wanted <= set(locked), wanted - set(locked)
    dev = {re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in project["optional-dependencies"]["dev"]}
    assert not dev & set(locked)
    assert set(pins(ROOT / "requirements-build.lock")) == {"setuptools"}
    assert "rq-dashboard" in pins(ROOT / "requirements-dashboard.lock")
    dockerfile = (ROOT / "Dockerfile").read_text()
    for lock in ("requirements.lock", "requirements-build.lock", "requirements-dashboard.lock"):
        assert f"--require-hashes --no-deps -r /src/{lock}" in dockerfile


def test_each_worker_exports_metrics_on_the_project_network_but_not_on_the_beds_host_network(
    tmp_path: Path,
) -> None:
    worker = compose_config(tmp_path, "compose.bot.yml")["services"]["worker"]
    assert (worker["environment"]["GREENLIGHT_METRICS_HOST"], "ports" in worker) == (
        "0.0.0.0",  # noqa: S104 (inside the container; no port is published)
        False,
    )
    assert worker["environment"]["GREENLIGHT_METRICS_PORT"] == "9100"
    moved = compose_config(tmp_path, "compose.bot.yml", GREENLIGHT_WORKER_METRICS_PORT="9300")
    assert moved["services"]["worker"]["environment"]["GREENLIGHT_METRICS_PORT"] == "9300"
    # Replicas on the host's network would fight over one port: no exporter by default.
    files = ("compose.bot.yml", "compose.bot.testbed.yml")
    bed = compose_config(tmp_path, *files)["services"]["worker"]["environment"]
    assert (bed["GREENLIGHT_METRICS_HOST"], bed["GREENLIGHT_METRICS_PORT"]) == ("127.0.0.1", "")
