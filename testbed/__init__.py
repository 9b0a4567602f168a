"""Greenlight's local test bed (standard library only; runs with the system python3).

From pytest fixtures:

    import testbed
    info = testbed.load_info()            # .testbed/testbed.json as a dict
    testbed.hosts.reset()                 # or reset(["h1", "h2"])
    testbed.hosts.host_down("h2"); testbed.hosts.host_up("h2")
    testbed.up(hosts=3); testbed.down(); testbed.status()
"""

from __future__ import annotations

from typing import Any

from . import hosts, paths
from .util import TestbedError

__all__ = ["TestbedError", "down", "hosts", "load_info", "paths", "status", "up"]


def up(hosts: int | None = None) -> dict[str, Any]:
    from .bed import up as _up

    return _up(hosts)


def down(purge: bool = False) -> None:
    from .bed import down as _down

    _down(purge)


def status() -> dict[str, Any]:
    from .bed import status as _status

    return _status()


def load_info() -> dict[str, Any]:
    from .bed import load_info as _load_info

    return _load_info()
