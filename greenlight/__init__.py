"""The `greenlight` command: the deploy engine from a terminal or CI, without Telegram."""
