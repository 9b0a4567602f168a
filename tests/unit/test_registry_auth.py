"""Registries that want a token (GHCR, Docker Hub) are out of reach here, so a stand-in
speaks their protocol over real HTTP: 401 with a Bearer challenge, a token endpoint
behind basic auth, then the manifest with the token.

The challenge names the token endpoint (the realm), so a registry could name any host:
the password goes only to the registry's own host or one the spec lists, over TLS."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.registry import RegistryError, registry_url, resolve_digest
from deploy.spec import SpecError, parse_spec

DIGEST = "sha256:" + "c" * 64
PASSWORD = "s3cret-registry-password"


class StandIn(ThreadingHTTPServer):
    # Where the challenge sends clients for a token; {port} is this server's port.
    realm = "http://127.0.0.1:{port}/token"
    # The Authorization header of every request that reached the token endpoint.
    token_requests: list[str | None]


class TokenRegistry(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # the token endpoint
        self.server.token_requests.append(self.headers.get("Authorization"))
        expected = "Basic " + base64.b64encode(f"bot:{PASSWORD}".encode()).decode()
        if not self.path.startswith("/token?") or self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        assert "scope=repository%3Aacme%2Fshop%3Apull" in self.path
        body = json.dumps({"token": "tok-123"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:  # the manifest endpoint
        port = self.server.server_address[1]
        if self.headers.get("Authorization") != "Bearer tok-123":
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="{self.server.realm.format(port=port)}",service="registry",'
                'scope="repository:acme/shop:pull"',
            )
            self.end_headers()
            return
        if self.path != "/v2/acme/shop/manifests/v1.0.1":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Docker-Content-Digest", DIGEST)
        self.end_headers()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn(("127.0.0.1", 0), TokenRegistry)
    server.token_requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def registry(stand_in: StandIn) -> str:
    return f"http://127.0.0.1:{stand_in.server_address[1]}"


def spec_for(url: str, **registry: object):
    return parse_spec(
        {
            "app": "shop",
            "image": "ghcr.example/acme/shop",
            "registry": {"url": url, "username": "bot", **registry},
            "environments": {
                "production": {
                    "public_url": "http://127.0.0.1",
                    "ssh": {"key": "k", "known_hosts": "kh"},
                    "hosts": [{"name": "h1", "address": "127.0.0.2"}],
                }
            },
        }
    )


async def test_token_flow_resolves_the_digest(registry: str) -> None:
    assert await resolve_digest(spec_for(registry), "v1.0.1", PASSWORD) == DIGEST


async def test_wrong_password_is_refused_without_echoing_it(registry: str) -> None:
    with pytest.raises(RegistryError) as err:
        await resolve_digest(spec_for(registry), "v1.0.1", "wrong-password")
    assert "refused access to acme/shop" in str(err.value)
    assert "wrong-password" not in str(err.value) and PASSWORD not in str(err.value)


async def test_unreachable_registry_is_named() -> None:
    with pytest.raises(RegistryError, match=r"registry http://127.0.0.1:9 is unreachable"):
        await resolve_digest(spec_for("http://127.0.0.1:9"), "v1.0.1")


def test_registry_scheme_defaults_to_https_except_on_loopback() -> None:
    spec = spec_for("https://x").model_copy(
        update={"registry": spec_for("https://x").registry.model_copy(update={"url": None})}
    )
    assert registry_url(spec) == "https://ghcr.example"
    local = spec.model_copy(update={"image": "127.0.0.1:5000/acme/shop"})
    assert registry_url(local) == "http://127.0.0.1:5000"


async def test_password_goes_to_a_token_service_on_another_host_only_when_listed(
    stand_in: StandIn, registry: str
) -> None:
    stand_in.realm = "http://localhost:{port}/token"  # same server, another host name
    with pytest.raises(RegistryError) as err:
        await resolve_digest(spec_for(registry), "v1.0.1", PASSWORD)
    assert str(err.value) == (
        f"registry {registry} asks for the password at localhost, which is not the "
        "registry's host; refusing to send it (add localhost to registry.auth_hosts in the "
        "spec if it is the registry's token service)"
    )
    assert PASSWORD not in str(err.value)
    assert stand_in.token_requests == []
    listed = spec_for(registry, auth_hosts=["LocalHost"])
    assert await resolve_digest(listed, "v1.0.1", PASSWORD) == DIGEST
    assert len(stand_in.token_requests) == 1


async def test_password_never_goes_to_a_token_service_without_tls(
    stand_in: StandIn, registry: str
) -> None:
    # The stand-in's usual realm is plain HTTP on loopback, which stays on this machine;
    # a plain HTTP realm anywhere else is refused even when its host is listed.
    spec = spec_for(registry, auth_hosts=["auth.example.invalid"])
    for realm in ["http://auth.example.invalid/token", "ftp://auth.example.invalid/token"]:
        stand_in.realm = realm
        with pytest.raises(RegistryError) as err:
            await resolve_digest(spec, "v1.0.1", PASSWORD)
        assert "refusing to send it" in str(err.value), realm
        assert PASSWORD not in str(err.value)
    assert stand_in.token_requests == []


def test_plain_http_to_a_remote_registry_needs_the_insecure_opt_in() -> None:
    with pytest.raises(SpecError) as err:
        spec_for("http://registry.example.com")
    assert str(err.value) == (
        "registry.url: plain http:// to registry.example.com sends the password and the "
        "digest unprotected; use https://, or set registry.insecure: true"
    )
    spec = spec_for("http://registry.example.com", insecure=True)
    assert registry_url(spec) == "http://registry.example.com"
    assert spec_for("http://127.0.0.1:5000").registry.insecure is False  # loopback is fine


async def test_resolve_refuses_plain_http_without_the_opt_in_even_if_the_spec_skipped_it() -> None:
    built = spec_for("http://registry.example.com", insecure=True)
    spec = built.model_copy(
        update={"registry": built.registry.model_copy(update={"insecure": False})}
    )
    with pytest.raises(RegistryError) as err:
        await resolve_digest(spec, "v1.0.1", PASSWORD)
    assert "is plain HTTP" in str(err.value) and "registry.insecure: true" in str(err.value)
    assert PASSWORD not in str(err.value)


@pytest.mark.parametrize(
    ("url", "extra", "expected"),
    [
        ("registry.example.com", {}, "registry.url: must be an http:// or https:// URL"),
        ("https://bot:hunter2@registry.example.com", {}, "registry.url: must not hold"),
        (
            "https://registry.example.com",
            {"auth_hosts": ["https://auth.example.com"]},
            "registry.auth_hosts: must be host names",
        ),
    ],
)
def test_registry_settings_name_the_key(url: str, extra: dict[str, object], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_for(url, **extra)
    assert str(err.value).startswith(expected)
    assert "hunter2" not in str(err.value)
