"""The bot's settings, from the environment (and `.env`): who may do what, and where.

Every setting fails at start with one line naming the variable; the token is a
SecretStr, so it never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import re
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError as UnreadableSetting

WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


class Role(StrEnum):
    deployer = "deployer"
    approver = "approver"
    admin = "admin"  # implies every other role


_CHAT_ID = re.compile(r"-?[0-9]{1,20}")
_CHANNEL_USERNAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{4,31}")


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    token: SecretStr = Field(alias="GREENLIGHT_BOT_TOKEN")
    telegram_api: str = Field("https://api.telegram.org", alias="GREENLIGHT_TELEGRAM_API")
    ops_chat: int = Field(alias="GREENLIGHT_OPS_CHAT")
    log_chat: int | None = Field(None, alias="GREENLIGHT_LOG_CHAT")
    channel: int | str | None = Field(None, alias="GREENLIGHT_CHANNEL")
    people: dict[int, frozenset[Role]] = Field(default_factory=dict, alias="GREENLIGHT_PEOPLE")
    four_eyes: bool = Field(True, alias="GREENLIGHT_FOUR_EYES")
    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")
    config: str | None = Field(None, alias="GREENLIGHT_CONFIG")
    # /status answers at once from Redis, then waits at most this long for the hosts.
    status_timeout: float = Field(5.0, gt=0, le=60, alias="GREENLIGHT_STATUS_TIMEOUT")
    # Webhook mode when a URL is set (Telegram POSTs updates there); long polling otherwise.
    webhook_url: str | None = Field(None, alias="GREENLIGHT_WEBHOOK_URL")
    webhook_secret: SecretStr | None = Field(
        None, alias="GREENLIGHT_WEBHOOK_SECRET", validate_default=True
    )
    # The bot's own HTTP server: /health, the webhook; loopback unless told otherwise.
    http_host: str = Field("127.0.0.1", alias="GREENLIGHT_HTTP_HOST")
    http_port: int = Field(8090, ge=0, le=65_535, alias="GREENLIGHT_HTTP_PORT")
    # GitHub: with a secret, POST /webhooks/github takes releases and CI runs; with a
    # token, every deployment of a repository's app is reported to GitHub (Deployments)
    # and cards and announcements carry the release notes.
    github_secret: SecretStr | None = Field(None, alias="GREENLIGHT_GITHUB_SECRET")
    github_token: SecretStr | None = Field(None, alias="GREENLIGHT_GITHUB_TOKEN")
    github_api: str = Field("https://api.github.com", alias="GREENLIGHT_GITHUB_API")
    # The log URL of a GitHub deployment status, `{deployment}` replaced by its id; by
    # default the progress message in the ops chat.
    log_url: str | None = Field(None, alias="GREENLIGHT_LOG_URL")

    @field_validator("log_chat", mode="before")
    @classmethod
    def _log_chat_id(cls, value: object) -> object:
        # An empty variable (`GREENLIGHT_LOG_CHAT=` in a .env) means no log chat.
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, str) and not _CHAT_ID.fullmatch(value):
            raise ValueError(f"a numeric chat id such as -1001234567890, not {value!r}")
        return value

    @field_validator("channel", mode="before")
    @classmethod
    def _channel_id_or_username(cls, value: object) -> int | str | None:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip()
        if not text:
            return None
        if _CHAT_ID.fullmatch(text):
            return int(text)
        if _CHANNEL_USERNAME.fullmatch(text):
            return text
        raise ValueError(
            f"a numeric chat id or an @username (5 to 32 letters, digits or _), not {text!r}"
        )

    @field_validator("people")
    @classmethod
    def _someone_has_a_role(cls, people: dict[int, frozenset[Role]]) -> dict[int, frozenset[Role]]:
        for user, roles in people.items():
            if not roles:
                raise ValueError(f"{user} has no role (deployer, approver, admin)")
        return people

    @field_validator("four_eyes")
    @classmethod
    def _four_eyes_only(cls, four_eyes: bool) -> bool:
        # The jobs API always refuses a requester's own approval; a switch that
        # cannot turn that off must not pretend to.
        if not four_eyes:
            raise ValueError("false is not supported: the jobs API always wants a second person")
        return four_eyes

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("https", "http"):
            raise ValueError("must be an https:// URL Telegram can reach")
        return url or None

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, secret: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if secret is None:
            if info.data.get("webhook_url"):
                raise ValueError("is required when GREENLIGHT_WEBHOOK_URL is set")
            return None
        if not info.data.get("webhook_url"):  # it would be ignored: long polling needs none
            raise ValueError("is set but GREENLIGHT_WEBHOOK_URL is not; set both, or neither")
        # Telegram's rule for secret_token; the value itself is never repeated.
        if not WEBHOOK_SECRET.fullmatch(secret.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return secret

    @field_validator("github_secret", "github_token", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("github_api", "log_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and (urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc):
            raise ValueError(f"must be an http(s):// URL, not {url[:100]!r}")
        return url or None

    def roles_of(self, user_id: int) -> frozenset[Role]:
        """A listed person's roles, admin expanded to all of them; empty for strangers."""
        roles = self.people.get(user_id, frozenset())
        return frozenset(Role) if Role.admin in roles else roles


class SettingsError(Exception):
    """One line naming the variable that is missing or wrong."""


def load_settings(**overrides: object) -> BotSettings:
    try:
        return BotSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = str(first["loc"][0]) if first["loc"] else "settings"
        known = BotSettings.model_fields.get(variable)  # a default checked: the field's name
        variable = known.alias if known and known.alias else variable
        message = "is required" if first["type"] == "missing" else first["msg"]
        raise SettingsError(f"{variable}: {message}") from None
    except UnreadableSetting as exc:  # a JSON value that does not parse
        field = str(exc).split('"')[1] if '"' in str(exc) else ""
        info = BotSettings.model_fields.get(field)
        variable = info.alias if info and info.alias else "settings"
        raise SettingsError(f"{variable}: not valid JSON") from None
