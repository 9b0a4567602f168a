"""The log lines every process writes, as configured by `greenlight` itself: JSON that
parses, naming the deployment, and never a secret the process knows or one that only
looks like a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from deploy.logs import CHATTY, working_on
from greenlight.cli import configure_logs, main

TOKEN = "123456789:AAHplantedBotTokenValue_0123456789ab"
PASSWORD = "planted-registry-password-0451"


@pytest.fixture(autouse=True)
def root_logger() -> Iterator[None]:
    """configure() replaces the root logger's handlers and quiets chatty libraries: put
    it all back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in CHATTY}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, was in chatty.items():
        logging.getLogger(name).setLevel(was)


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLIGHT_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("GREENLIGHT_OPS_CHAT", "-100500")
    monkeypatch.setenv("GREENLIGHT_REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.setenv("GREENLIGHT_LOG_FORMAT", "json")


def lines(err: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in err.splitlines()]


@pytest.mark.usefixtures("secrets_in_env")
def test_a_worker_logs_json_lines_naming_the_deployment_without_its_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert configure_logs("worker") is None
    log = logging.getLogger("greenlight.events")
    log.info("pulled with %s", PASSWORD, extra={"deployment": "production-v1.0.1-x"})
    with working_on("production-v1.0.2-y"):
        logging.getLogger("asyncssh").warning("a library's line, inside a phase job")
        try:
            raise RuntimeError(f"login to the registry as ci:{PASSWORD} failed")
        except RuntimeError:
            logging.getLogger("rq.worker").exception("the job failed")
    logging.getLogger("rq.worker").debug("below the level: not written")
    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1:8001/ 200 OK")

    err = capsys.readouterr().err
    first, library, failed = lines(err)
    assert first["deployment"] == "production-v1.0.1-x"
    assert first["message"] == "pulled with ***"
    assert (first["level"], first["logger"]) == ("INFO", "greenlight.events")
    assert first["time"].endswith("+00:00")
    assert library["deployment"] == "production-v1.0.2-y"
    assert failed["deployment"] == "production-v1.0.2-y"
    assert "RuntimeError: login to the registry as ci:*** failed" in failed["exception"]
    assert PASSWORD not in err


@pytest.mark.usefixtures("secrets_in_env")
def test_the_bot_redacts_its_token_and_what_looks_like_a_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert configure_logs("bot") is None
    log = logging.getLogger("aiogram.dispatcher")
    log.error("POST https://api.telegram.org/bot%s/getUpdates failed", TOKEN)
    log.warning("a container said DB_PASSWORD=hunter2hunter2 and left")
    err = capsys.readouterr().err
    failed, container = lines(err)
    assert failed["message"] == "POST https://api.telegram.org/bot***/getUpdates failed"
    assert container["message"] == "a container said DB_PASSWORD=*** and left"
    assert "deployment" not in failed
    assert TOKEN not in err and "hunter2" not in err


def test_text_lines_are_the_default_and_name_the_deployment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GREENLIGHT_LOG_FORMAT", raising=False)
    monkeypatch.setenv("GREENLIGHT_REGISTRY_PASSWORD", PASSWORD)
    assert configure_logs("worker") is None
    logging.getLogger("greenlight.events").info(
        "login with %s", PASSWORD, extra={"deployment": "production-v1.0.1-x"}
    )
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(" INFO greenlight.events [production-v1.0.1-x] login with ***")


def test_an_unknown_log_format_is_refused_naming_the_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLIGHT_LOG_FORMAT", "yaml")
    assert main(["audit"]) == 2
    assert "GREENLIGHT_LOG_FORMAT: text or json, not 'yaml'" in capsys.readouterr().err
