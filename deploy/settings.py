"""Process settings: secrets and URLs from the environment, never from the spec file.

The spec's own path ($GREENLIGHT_CONFIG) is resolved by `deploy.spec.load_spec`."""

from __future__ import annotations

import getpass

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GREENLIGHT_", extra="ignore")

    registry_password: SecretStr | None = None
    who: str | None = None

    def operator(self) -> str:
        return self.who or getpass.getuser()
