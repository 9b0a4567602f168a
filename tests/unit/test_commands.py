"""Command builders are data: argv lists, quoted once, wrapped in a timeout."""

import asyncio
import shlex
from dataclasses import replace

import pytest

from deploy.commands import Command, command, compose, display, docker, proxy, render
from deploy.commands.layout import Layout, Slot
from deploy.errors import CommandFailed, CommandTimedOut
from deploy.executor import LocalExecutor
from deploy.spec import HookSpec, HostSpec, ProxySpec
from deploy.state import parse_live

LAYOUT = Layout("shop", "srv/shop", "compose.yml", "nginx/upstream.conf", "backups")
HOST = HostSpec(name="web1", address="10.0.0.5", app_address="127.0.0.1")
SLOT = Slot(LAYOUT, HOST, "green", 8002, "reg/acme/shop@sha256:" + "a" * 64, "v1.0.1", "prod-x")


def test_compose_up_runs_in_the_app_dir_with_the_colour_project() -> None:
    cmd = compose.up(SLOT, wait_timeout=90)
    assert cmd.argv[:6] == ("docker", "compose", "--ansi", "never", "up", "--detach")
    assert "--wait" in cmd.argv and "--pull" in cmd.argv
    assert cmd.argv[cmd.argv.index("--wait-timeout") + 1] == "90"
    assert cmd.cwd == "srv/shop"
    assert cmd.env["COMPOSE_PROJECT_NAME"] == "shop-green"
    assert cmd.env["GREENLIGHT_IMAGE"].endswith("@sha256:" + "a" * 64)
    assert cmd.env["GREENLIGHT_PORT"] == "8002"
    assert cmd.timeout > 90


def test_stop_keeps_containers_and_down_removes_them() -> None:
    assert compose.stop(SLOT).argv[4] == "stop"
    assert compose.down(SLOT).argv[4:] == ("down", "--remove-orphans")


def test_hook_is_the_users_argv_with_the_colour_environment() -> None:
    hook = HookSpec(command=["docker", "compose", "exec", "-T", "web", "migrate"], timeout=50)
    cmd = compose.hook(SLOT, "migrate", hook)
    assert cmd.argv == tuple(hook.command)
    assert cmd.env["COMPOSE_PROJECT_NAME"] == "shop-green"
    assert cmd.timeout == 50


def test_image_proof_asks_for_every_image_of_the_release() -> None:
    cmd = docker.running_images(SLOT)
    assert cmd.argv[-1:] == (SLOT.image,)
    assert cmd.env["COMPOSE_PROJECT_NAME"] == "shop-green" and cmd.cwd == "srv/shop"
    frontend = "reg/acme/shop-frontend@sha256:" + "f" * 64
    both = replace(SLOT, images={"web": SLOT.image, "frontend": frontend})
    assert docker.running_images(both).argv[-2:] == (SLOT.image, frontend)
    assert both.env()["GREENLIGHT_IMAGE_FRONTEND"] == frontend
    assert both.env()["GREENLIGHT_IMAGE_WEB"] == both.env()["GREENLIGHT_IMAGE"] == SLOT.image


def test_pull_is_by_digest() -> None:
    assert docker.pull(SLOT.image, 300).argv == ("docker", "pull", "--quiet", SLOT.image)


def test_render_quotes_every_word_and_wraps_in_timeout() -> None:
    cmd = command(
        "echo", "a b", "$(id)", step="x", timeout=7, cwd="dir with space", env={"K": "v;w"}
    )
    line = render(cmd)
    assert line.startswith("cd 'dir with space' && exec timeout -k 5 7 env 'K=v;w' echo")
    assert shlex.split(line.split("&& ", 1)[1])[-2:] == ["a b", "$(id)"]


HOSTILE_WORDS = [
    "$(touch pwned)",
    "`touch pwned`",
    "a;touch pwned",
    "'",
    '"',
    "\\",
    "*",
    "\n",
    "a b",
    "${HOME}",
    "|touch pwned",
    "&& touch pwned",
    "-rf",
    "~",
]


@pytest.mark.parametrize("word", HOSTILE_WORDS, ids=ascii)
async def test_hostile_words_reach_the_program_verbatim(word: str, tmp_path) -> None:
    """Run through a real shell: the word arrives as one argument, nothing is executed."""
    cmd = command("printf", "[%s]", word, step="echo", cwd=str(tmp_path))
    result = await LocalExecutor().run(cmd)
    assert "\n".join(result.tail) == f"[{word}]"
    assert not (tmp_path / "pwned").exists()


def test_env_names_and_nul_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid environment variable name"):
        command("true", step="x", env={"A;B": "1"})
    with pytest.raises(ValueError, match="NUL"):
        command("echo", "a\x00b", step="x")
    with pytest.raises(ValueError):
        Command((), step="x")


def test_upstream_text_round_trips_through_the_marker() -> None:
    text = proxy.upstream_text(
        "server {address}:{port};",
        color="green",
        address="127.0.0.2",
        port=8002,
        version="v1.0.1",
        deployment="production-v1.0.1-20260101_000000",
        epoch=7,
    )
    assert text.splitlines()[1] == "server 127.0.0.2:8002;"
    live = parse_live(text)
    assert live is not None
    assert (live.color, live.version, live.epoch) == ("green", "v1.0.1", 7)
    assert parse_live("server 127.0.0.1:9 down;\n") is None


def test_the_switch_carries_the_specs_test_and_reload_argv_as_words() -> None:
    spec = ProxySpec(test=["nginx", "-t", "-p", "p"], reload=["nginx", "-s", "reload"])
    cmd = proxy.point(LAYOUT, spec, "upstream", 3, "{}")
    assert cmd.argv[-8:] == ("4", "nginx", "-t", "-p", "p", "nginx", "-s", "reload")
    assert cmd.stdin == "upstream"


def test_display_hides_scripts_but_shows_arguments() -> None:
    cmd = proxy.clear_switch(LAYOUT, 3)
    assert display(cmd) == "sh -c <finish switch script> srv/shop/.greenlight 3"


async def test_timeout_kills_a_command_that_overruns_and_says_it_timed_out() -> None:
    cmd = command("sleep", "30", step="sleep", timeout=0.5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(CommandTimedOut, match=r"sleep failed \(timed out after 0.5 s\)"):
        await LocalExecutor().run(cmd)
    assert asyncio.get_running_loop().time() - started < 5


async def test_a_quick_kill_is_an_exit_status_not_a_timeout() -> None:
    # exit 137 in 10 ms (an OOM kill, say) is not the 300 s budget running out
    cmd = command("sh", "-c", "kill -9 $$", step="migrate hook", timeout=300)
    with pytest.raises(CommandFailed, match=r"migrate hook failed \(exit 137\)") as err:
        await LocalExecutor().run(cmd)
    assert not isinstance(err.value, CommandTimedOut)


async def test_terminal_control_sequences_are_stripped_from_output() -> None:
    result = await LocalExecutor().run(
        command("printf", "\x1b[2Kweb-1  | \x1b[32mok\x1b[0m\n", step="x")
    )
    assert result.tail == ["web-1  | ok"]
