"""What the test bed remembers between runs: the largest host count used so far."""

from __future__ import annotations

import json
import os
from typing import Any

from . import paths


def _file():  # type: ignore[no-untyped-def]
    return paths.root() / "state.json"


def load() -> dict[str, Any]:
    try:
        data = json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(data: dict[str, Any]) -> None:
    target = _file()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".state.json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, target)


def host_count() -> int:
    """Hosts that exist: the largest --hosts ever given (0 before the first `up`)."""
    return int(load().get("hosts", 0))
