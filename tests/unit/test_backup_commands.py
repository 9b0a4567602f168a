"""The backup scripts, run for real through sh: a backup is readable by its owner only."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.commands import backup
from deploy.commands.layout import Layout, Slot
from deploy.executor import LocalExecutor
from deploy.spec import HookSpec, HostSpec

run = LocalExecutor().run


@pytest.fixture
def slot(tmp_path: Path) -> Slot:
    app = tmp_path / "app"
    app.mkdir()
    layout = Layout("shop", str(app), "compose.yml", "nginx/upstream.conf", "backups")
    host = HostSpec(name="h1", address="local")
    return Slot(layout, host, "blue", 8001, "img@sha256:1", "v1.0.0", "d1")


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The usual login umask, under which files are world-readable unless the script
    says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho '[]'\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_backup_and_container_state_are_private(slot: Slot, fake_docker: None) -> None:
    # The hook prints the dump and also writes a file of its own beside it.
    hook = HookSpec(command=["sh", "-c", 'echo data; echo more > "$GREENLIGHT_BACKUP_DIR/extra"'])
    directory = "backups/pre-deploy-v1.0.1-20260101_000000"
    await run(backup.dump(slot, hook, directory, "dump"))
    await run(backup.save_containers(slot, directory))
    folder = Path(slot.layout.app_dir, directory)
    assert (folder / "dump").read_text() == "data\n"
    assert (folder / "containers.json").read_text() == "[]\n"
    assert mode(folder) == 0o700
    assert mode(folder.parent) == 0o700
    for name in ("dump", "containers.json", "extra"):
        assert mode(folder / name) == 0o600, name


async def test_a_directory_left_open_by_an_earlier_attempt_is_closed(slot: Slot) -> None:
    folder = Path(slot.layout.app_dir, "backups/pre-deploy-v1.0.1-20260101_000000")
    folder.mkdir(parents=True, mode=0o755)
    await run(backup.dump(slot, HookSpec(command=["echo", "data"]), str(folder), "dump"))
    assert mode(folder) == 0o700
    assert mode(folder / "dump") == 0o600
