"""What a phase receives must not leak the registry password when it is printed."""

from deploy.context import Context
from deploy.deployment import Deployment
from deploy.events import ListSink
from deploy.spec import parse_spec

PASSWORD = "s3cret-registry-password"


def test_context_repr_never_shows_the_registry_password() -> None:
    spec = parse_spec(
        {
            "app": "shop",
            "image": "ghcr.example/acme/shop",
            "registry": {"url": "https://ghcr.example", "username": "bot"},
            "environments": {
                "production": {
                    "public_url": "https://shop.example.com",
                    "ssh": {"key": "k", "known_hosts": "kh"},
                    "hosts": [{"name": "web1", "address": "10.0.0.5"}],
                }
            },
        }
    )
    env = spec.environment("production")
    deployment = Deployment(
        id="production-v1.0.1-20260101_000000", env=env.name, version="v1.0.1", who="alice"
    )
    ctx = Context(spec, env, deployment, ListSink(), registry_password=PASSWORD)
    assert ctx.registry_password == PASSWORD
    assert "web1" in repr(ctx)  # the repr is still useful
    assert PASSWORD not in repr(ctx) and PASSWORD not in str(ctx)
