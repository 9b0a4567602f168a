"""Logging for every Greenlight process (`greenlight bot`, `greenlight worker`, the CLI):
text or JSON lines on stderr, with the deployment a line is about, secrets redacted.

`GREENLIGHT_LOG_FORMAT` is `text` (the default) or `json`; `GREENLIGHT_LOG_LEVEL` is a
level name (INFO by default). A line names its deployment when the call passes
`extra={"deployment": id}`, or when it is logged while a phase job works on one
(`working_on`). The redactor is the caller's: the engine's `Redactor` with the secret
values the process knows, or the bot's `Scrubber`, which also knows their shapes.

It lives in the engine, the lowest layer, because the jobs layer sets the deployment
a job works on and every layer's entry point configures it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Literal, TextIO

from pydantic import BaseModel, SecretStr

Redact = Callable[[str], str]
Format = Literal["text", "json"]

# The deployment the running code works on, for lines that do not name one.
_deployment: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "greenlight_deployment", default=None
)
# Record attributes worth a JSON key when a call sets them with `extra=`.
EXTRA_KEYS = ("deployment", "event", "phase", "host", "app", "env")
# Libraries that log every request or connection at INFO (the stability window alone
# makes hundreds of requests): their warnings only, unless the level is DEBUG.
CHATTY = ("httpx", "httpcore", "asyncssh")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(greenlight_where)s %(message)s"


class LogSettingError(ValueError):
    """GREENLIGHT_LOG_FORMAT or GREENLIGHT_LOG_LEVEL has a value we do not know."""


@contextlib.contextmanager
def working_on(deployment: str) -> Iterator[None]:
    """Lines logged inside name `deployment` (a phase job wraps its work in this)."""
    token = _deployment.set(deployment)
    try:
        yield
    finally:
        _deployment.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    found: dict[str, object] = {}
    for key in EXTRA_KEYS:
        value = getattr(record, key, None)
        if value is not None:
            found[key] = str(value)
    if "deployment" not in found and (current := _deployment.get()) is not None:
        found["deployment"] = current
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    deployment and the other `EXTRA_KEYS` when known, and the traceback if any."""

    def __init__(self, redact: Redact) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        line |= {k: self.redact(str(v)) for k, v in _fields(record).items()}
        if record.exc_info:
            line["exception"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = self.redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with `[deployment]` after the logger name when known; the whole
    line (traceback included) passes the redactor."""

    def __init__(self, redact: Redact) -> None:
        super().__init__(TEXT_FORMAT)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        deployment = _fields(record).get("deployment")
        record.greenlight_where = f" [{deployment}]" if deployment is not None else ""
        return self.redact(super().format(record))


def log_format(environ: Mapping[str, str] | None = None) -> Format:
    value = (environ if environ is not None else os.environ).get("GREENLIGHT_LOG_FORMAT", "")
    value = value.strip().lower() or "text"
    if value not in ("text", "json"):
        raise LogSettingError(f"GREENLIGHT_LOG_FORMAT: text or json, not {value!r}")
    return "json" if value == "json" else "text"


def log_level(default: str = "INFO", environ: Mapping[str, str] | None = None) -> int:
    value = (environ if environ is not None else os.environ).get("GREENLIGHT_LOG_LEVEL", "")
    name = (value.strip() or default).upper()
    level = logging.getLevelNamesMapping().get(name)
    if level is None:
        raise LogSettingError(f"GREENLIGHT_LOG_LEVEL: a level such as INFO, not {value!r}")
    return level


def configure(
    redact: Redact,
    *,
    default_level: str = "INFO",
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one writing to `stream` (stderr) in the
    configured format. Raises LogSettingError for a setting it does not know."""
    fmt = log_format(environ)
    level = log_level(default_level, environ)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
    return handler


def secret_values(*settings: BaseModel) -> list[str]:
    """Every SecretStr value set in these settings: what the redactor must know."""
    found = []
    for model in settings:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
    return found


def known_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values every process may hold in its environment, whatever its own
    settings are (a worker's env file often carries the bot token too)."""
    names = ("GREENLIGHT_BOT_TOKEN", "GREENLIGHT_REGISTRY_PASSWORD", "GREENLIGHT_WEBHOOK_SECRET")
    found = os.environ if environ is None else environ
    return [found[name] for name in names if found.get(name)]
