"""Process settings: secrets and URLs from the environment, never from the spec file."""

from __future__ import annotations

import getpass
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GREENLIGHT_", extra="ignore")

    config: Path = Path("greenlight.yml")
    registry_password: SecretStr | None = None
    who: str | None = None

    def operator(self) -> str:
        return self.who or getpass.getuser()

    def secrets(self) -> list[str]:
        return [self.registry_password.get_secret_value()] if self.registry_password else []
