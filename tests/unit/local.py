"""A spec whose one host is this machine (`address: local`): engine code that runs
commands, without SSH, for unit tests."""

from typing import Any

from deploy.spec import Spec, parse_spec


def local_spec(**env: Any) -> Spec:
    return parse_spec(
        {
            "app": "shop",
            "image": "registry.example.com/acme/shop",
            "stability": {"duration": 300, "interval": 10},
            "environments": {
                "production": {
                    "public_url": "http://127.0.0.1:9",
                    "ssh": {"key": "k", "known_hosts": "kh"},
                    "allow_local": True,
                    "hosts": [{"name": "h1", "address": "local"}],
                    **env,
                }
            },
        }
    )
