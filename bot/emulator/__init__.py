"""A local Telegram Bot API server for tests and rehearsals (see README.md)."""

from bot.emulator.server import DEFAULT_TOKEN, Emulator, running_emulator, start_emulator

__all__ = ["DEFAULT_TOKEN", "Emulator", "running_emulator", "start_emulator"]
