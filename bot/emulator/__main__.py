"""`python -m bot.emulator --port N --token T`: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bot.emulator.server import DEFAULT_TOKEN, start_emulator


async def _serve(port: int, token: str, username: str, pacing: bool) -> None:
    emulator = await start_emulator(port, token, username, pacing)
    print(f"Bot API emulator at {emulator.url} (token {token})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Telegram Bot API emulator")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--username", default="greenlight_bot")
    parser.add_argument("--no-pacing", action="store_true", help="do not enforce flood limits")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.token, args.username, not args.no_pacing))


if __name__ == "__main__":
    main()
