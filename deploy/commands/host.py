"""Preflight facts about a host, gathered in one round trip."""

from __future__ import annotations

from deploy.commands import Command, data

_FACTS = r"""
mkdir -p "$1" || exit 1
printf 'docker=%s\n' "$(docker version --format '{{.Server.Version}}' 2>&1 | head -n 1)"
printf 'compose=%s\n' "$(docker compose version --short 2>&1 | head -n 1)"
printf 'disk_kb=%s\n' "$(df -Pk "$1" | awk 'NR==2 {print $4}')"
printf 'mem_kb=%s\n' "$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
"""


def facts(app_dir: str) -> Command:
    return data(
        _FACTS,
        app_dir,
        step="check docker, compose, disk and memory",
        timeout=30,
        idempotent=True,
    )
