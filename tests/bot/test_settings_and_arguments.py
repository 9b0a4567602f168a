"""The bot's edges without Telegram: settings from the environment, and how command
arguments are read against the specs' app and environment names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.arguments import Arguments, BadArguments, parse
from bot.settings import Role, SettingsError, load_settings
from tests.jobs.test_api import make_spec

TOKEN = "123456:do-not-print-me"
TWO_APPS = {"shop": make_spec(), "ledger": make_spec("ledger")}
ONE_APP = {"shop": make_spec()}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("GREENLIGHT_OPS_CHAT", "GREENLIGHT_PEOPLE", "GREENLIGHT_FOUR_EYES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GREENLIGHT_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("GREENLIGHT_OPS_CHAT", "-100500")
    return monkeypatch


def test_people_and_roles_come_from_json(env: pytest.MonkeyPatch) -> None:
    env.setenv("GREENLIGHT_PEOPLE", '{"1001": ["deployer"], "1003": ["admin"]}')
    settings = load_settings()
    assert settings.ops_chat == -100500
    assert settings.roles_of(1001) == {Role.deployer}
    assert settings.roles_of(1003) == set(Role)  # admin implies every role
    assert settings.roles_of(42) == set()
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        ("GREENLIGHT_OPS_CHAT", None, "GREENLIGHT_OPS_CHAT: is required"),
        ("GREENLIGHT_OPS_CHAT", "ops", "GREENLIGHT_OPS_CHAT: Input should be a valid integer"),
        ("GREENLIGHT_PEOPLE", "{not json", "GREENLIGHT_PEOPLE: not valid JSON"),
        ("GREENLIGHT_PEOPLE", '{"1001": ["boss"]}', "GREENLIGHT_PEOPLE: Input should be"),
        ("GREENLIGHT_PEOPLE", '{"1001": []}', "GREENLIGHT_PEOPLE: Value error, 1001 has no role"),
        ("GREENLIGHT_PEOPLE", '{"ann": ["admin"]}', "GREENLIGHT_PEOPLE: Input should be a valid"),
        ("GREENLIGHT_FOUR_EYES", "false", "GREENLIGHT_FOUR_EYES: Value error, false is not"),
        ("GREENLIGHT_BOT_TOKEN", None, "GREENLIGHT_BOT_TOKEN: is required"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    env: pytest.MonkeyPatch, variable: str, value: str | None, error: str
) -> None:
    if value is None:
        env.delenv(variable)
    else:
        env.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(error)
    assert "\n" not in str(caught.value) and TOKEN not in str(caught.value)


def test_greenlight_bot_says_what_is_missing_without_a_traceback(env: pytest.MonkeyPatch) -> None:
    env.delenv("GREENLIGHT_OPS_CHAT")
    root = Path(__file__).resolve().parents[2]
    env.setenv("PYTHONPATH", str(root))
    done = subprocess.run(
        [sys.executable, "-m", "greenlight", "bot"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "greenlight bot: GREENLIGHT_OPS_CHAT: is required\n"


@pytest.mark.parametrize(
    ("command", "words", "parsed"),
    [
        ("deploy", "v1.0.1", Arguments(version="v1.0.1")),
        ("deploy", "shop v1.0.1 staging", Arguments(app="shop", env="staging", version="v1.0.1")),
        ("rollback", "", Arguments()),
        ("rollback", "staging v1.0.0", Arguments(env="staging", version="v1.0.0")),
        ("history", "staging 5", Arguments(env="staging", count=5)),
        ("lock", "staging a  long reason", Arguments(env="staging", reason="a long reason")),
        ("lock", "freeze for the sale", Arguments(reason="freeze for the sale")),
        ("unlock", "shop production", Arguments(app="shop", env="production")),
    ],
)
def test_arguments_with_one_app(command: str, words: str, parsed: Arguments) -> None:
    assert parse(command, words, ONE_APP) == parsed


@pytest.mark.parametrize(
    ("command", "words", "problem"),
    [
        ("deploy", "v1.0.1", "name the app first: ledger, shop"),
        ("deploy", "ledger", "say which version to deploy"),
        ("deploy", "ledger v1.0.1 prod", "unknown environment 'prod' for ledger"),
        ("cancel", "", "name the app first: ledger, shop"),
        ("cancel", "ledger staging now", "unexpected 'now'"),
        ("history", "shop 0", "N must be a number from 1 to 50, not '0'"),
        # a look-alike is spelled out, so the refusal shows what is wrong with it
        ("history", "shop ５", "N must be a number from 1 to 50, not '\\uff15'"),
        ("lock", "shop staging", "say why: a lock needs a reason others can read"),
    ],
)
def test_arguments_with_two_apps_must_name_one(command: str, words: str, problem: str) -> None:
    with pytest.raises(BadArguments) as caught:
        parse(command, words, TWO_APPS)
    assert str(caught.value).startswith(problem)


def test_arguments_name_the_app_when_there_are_two() -> None:
    assert parse("deploy", "ledger v2.0.0", TWO_APPS) == Arguments(app="ledger", version="v2.0.0")
