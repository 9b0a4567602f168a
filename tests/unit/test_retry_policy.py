"""Which commands survive a dropped SSH connection, after which errors, and how long
the executor waits between attempts. The policy is pure; the behaviour against a real
sshd is pinned in tests/e2e/test_dropped_connections.py."""

import asyncssh
import pytest

from deploy.commands import Command, backup, compose, docker, proxy
from deploy.commands import host as host_commands
from deploy.commands import state as state_commands
from deploy.commands.layout import Layout, Slot
from deploy.errors import (
    CommandFailed,
    CommandTimedOut,
    ConnectionDropped,
    HostError,
    HostKeyRejected,
    HostUnreachable,
)
from deploy.executor import ATTEMPTS, Result, connect_failure, retry_delay
from deploy.spec import HookSpec, HostSpec, ProxySpec

LAYOUT = Layout("shop", "srv/shop", "compose.yml", "nginx/upstream.conf", "backups")
HOST = HostSpec(name="web1", address="10.0.0.5", app_address="127.0.0.1")
SLOT = Slot(LAYOUT, HOST, "green", 8002, "reg/acme/shop@sha256:" + "a" * 64, "v1.0.1", "prod-x")
HOOK = HookSpec(command=["docker", "compose", "exec", "-T", "web", "migrate"])
WHERE = "deploy@10.0.0.5:22"

SAFE_TO_REPEAT = {
    "read deploy state": state_commands.read(LAYOUT),
    "facts": host_commands.facts("srv/shop"),
    "compose ps": compose.status(SLOT),
    "container logs": compose.logs(SLOT),
    "pull": docker.pull(SLOT.image, 300),
    "verify image": docker.running_images(SLOT),
    "save container state": backup.save_containers(SLOT, "backups/pre"),
    "measure backup": backup.describe("srv/shop", "backups/pre", "db.json"),
    "prune backups": backup.prune("srv/shop", "backups", 30),
    "release our lock": state_commands.release_lock(LAYOUT, "token"),
}
NOT_SAFE_TO_REPEAT = {
    "take the lock": state_commands.acquire_lock(LAYOUT, "token", "{}"),
    "fence the epoch": state_commands.fence(LAYOUT, "token"),
    "break a lock": state_commands.break_lock(LAYOUT),
    "record a colour": state_commands.write_color(LAYOUT, "green", "{}"),
    "record a verdict": state_commands.write_verdict(LAYOUT, "v1.0.1", "{}"),
    "append history": state_commands.append_history(LAYOUT, "prod-x", "{}"),
    "switch proxy": proxy.point(LAYOUT, ProxySpec(), "server x;", 3, "{}"),
    "finish switch": proxy.clear_switch(LAYOUT, 3),
    "compose up": compose.start(SLOT, 60),
    "compose create": compose.create(SLOT),
    "compose stop": compose.stop(SLOT),
    "compose down": compose.down(SLOT),
    "stop later": compose.stop_later(SLOT, 60),
    "migrate hook": compose.hook(SLOT, "migrate", HOOK),
    "backup hook": backup.dump(SLOT, HOOK, "backups/pre", "db.json"),
}


@pytest.mark.parametrize("cmd", SAFE_TO_REPEAT.values(), ids=SAFE_TO_REPEAT.keys())
def test_reads_pulls_and_measures_are_repeated_after_a_drop(cmd: Command) -> None:
    assert cmd.idempotent
    assert retry_delay(cmd, ConnectionDropped("web1", "connection lost"), 1) == 0.5


@pytest.mark.parametrize("cmd", NOT_SAFE_TO_REPEAT.values(), ids=NOT_SAFE_TO_REPEAT.keys())
def test_commands_that_change_state_fail_at_the_first_drop(cmd: Command) -> None:
    assert not cmd.idempotent
    assert retry_delay(cmd, ConnectionDropped("web1", "connection lost"), 1) is None


def test_the_pauses_double_and_the_attempts_are_bounded() -> None:
    read = state_commands.read(LAYOUT)
    dropped = ConnectionDropped("web1", "connection lost")
    delays = [retry_delay(read, dropped, attempt) for attempt in range(1, ATTEMPTS + 2)]
    assert delays == [0.5, 1.0, 2.0, 4.0, None, None]
    assert ATTEMPTS == 5 and sum(d for d in delays if d) < 15


def failed(cmd: Command, status: int, duration: float = 0.1) -> CommandFailed:
    return CommandFailed("web1", cmd, Result(status, ["no such file"], duration))


@pytest.mark.parametrize(
    "error",
    [
        HostKeyRejected("web1", f"host key of {WHERE} is not trusted by known_hosts"),
        HostUnreachable("web1", f"{WHERE} refused our SSH key"),
        HostUnreachable("web1", "no answer during read deploy state for 45 s"),
        failed(state_commands.read(LAYOUT), 1),
        CommandTimedOut("web1", state_commands.read(LAYOUT), Result(124, [], 30.0)),
    ],
    ids=["host key", "ssh key", "no answer", "exit 1", "own timeout"],
)
def test_a_rejected_key_a_silent_host_and_the_commands_own_failure_are_final(
    error: HostError,
) -> None:
    assert retry_delay(state_commands.read(LAYOUT), error, 1) is None


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 22)"),
        TimeoutError(),
        asyncssh.ConnectionLost("Connection lost"),
        OSError(104, "Connection reset by peer"),
    ],
    ids=["refused", "timed out", "lost", "reset"],
)
def test_a_refused_or_lost_connection_is_worth_another_attempt(exc: BaseException) -> None:
    error = connect_failure("web1", WHERE, "known_hosts", exc)
    assert isinstance(error, ConnectionDropped)
    assert error.reason.startswith(f"cannot connect to {WHERE}: ")


def test_a_key_the_other_side_rejects_is_not() -> None:
    untrusted = connect_failure(
        "web1", WHERE, "known_hosts", asyncssh.HostKeyNotVerifiable("Host key is not trusted")
    )
    refused = connect_failure("web1", WHERE, "known_hosts", asyncssh.PermissionDenied("denied"))
    assert isinstance(untrusted, HostKeyRejected)
    assert untrusted.reason == f"host key of {WHERE} is not trusted by known_hosts"
    assert refused.reason == f"{WHERE} refused our SSH key"
    for error in (untrusted, refused):
        assert not isinstance(error, ConnectionDropped)
        assert retry_delay(state_commands.read(LAYOUT), error, 1) is None
