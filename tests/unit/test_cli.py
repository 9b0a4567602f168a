"""`greenlight deploy` on an environment with `address: local` says, on stderr, that
commands run on this machine. The pipeline itself is stood in for: only the CLI's own
words are under test here."""

from pathlib import Path
from typing import Any

import pytest
import yaml

import deploy.pipeline
from deploy.deployment import Deployment
from greenlight.cli import main

NOTICE = "greenlight: ctl (address: local) run commands on this machine, without SSH"


def write_spec(tmp_path: Path, hosts: list[dict[str, str]]) -> str:
    env: dict[str, Any] = {
        "public_url": "http://127.0.0.1",
        "ssh": {"key": "k", "known_hosts": "kh"},
        "hosts": hosts,
        "allow_local": True,
    }
    path = tmp_path / "greenlight.yml"
    doc = {"app": "shop", "image": "127.0.0.1:5000/acme/shop", "environments": {"dev": env}}
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture(autouse=True)
def finished_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    async def live(spec: Any, env: Any, version: str, who: str, *a: Any, **k: Any):
        return Deployment(id="d", env="dev", version=version, who=who, outcome="live")

    monkeypatch.setattr(deploy.pipeline, "deploy", live)


def test_deploying_to_a_local_host_says_so_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_spec(tmp_path, [{"name": "ctl", "address": "local"}])
    assert main(["deploy", "v1.0.1", "--config", config, "--who", "alice"]) == 0
    assert capsys.readouterr().err.splitlines() == [NOTICE]


def test_deploying_over_ssh_prints_no_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_spec(tmp_path, [{"name": "web1", "address": "127.0.0.2"}])
    assert main(["deploy", "v1.0.1", "--config", config, "--who", "alice"]) == 0
    assert capsys.readouterr().err == ""
