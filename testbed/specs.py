"""Spec variants of the generated `.testbed/greenlight.yml`, for tests and benchmarks.

Needs PyYAML (the project's venv has it), unlike the rest of `testbed`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import paths


def base(app: str | None = None) -> dict[str, Any]:
    """The generated spec of the sample app, or of another app of the bed (`ledger`)."""
    import yaml

    source = paths.apps_dir() / f"{app}.yml" if app else paths.spec_file()
    return dict(yaml.safe_load(source.read_text()))


def variant(
    hosts: tuple[str, ...],
    out: Path,
    app: str | None = None,
    envs: tuple[str, ...] = ("production",),
    **overrides: Any,
) -> Path:
    """A spec whose environments `envs` (production by default; `staging`, or both) run
    on some of the bed's hosts, with top-level sections merged with `overrides` (a
    section an environment sets itself, as staging does its app_dir, ports and proxy,
    stays the environment's). Other environments are left as generated.

    The public URL is the load balancer only when every host of the bed is in the
    environment; otherwise the first host's own proxy stands in for it (the balancer
    would send part of the traffic to hosts that run nothing).
    """
    import yaml

    doc = json.loads(json.dumps(base(app)))
    for env in doc["environments"].values():  # the spec is written elsewhere
        env["ssh"] = {"key": str(paths.client_key()), "known_hosts": str(paths.known_hosts())}
    for name in envs:
        env = doc["environments"][name]
        everyone = {h["name"]: h for h in env["hosts"]}
        env["hosts"] = [everyone[host] for host in hosts]
        if len(hosts) != len(everyone):
            env["public_url"] = env["hosts"][0]["proxy_url"]
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    out.write_text(yaml.safe_dump(doc))
    return out


def proxy_url(name: str, app: str | None = None, env: str = "production") -> str:
    """Host `name`'s own proxy for the app's environment."""
    host = next(h for h in base(app)["environments"][env]["hosts"] if h["name"] == name)
    return str(host["proxy_url"])
