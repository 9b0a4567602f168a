"""Registries that want a token (GHCR, Docker Hub) are out of reach here, so a stand-in
speaks their protocol over real HTTP: 401 with a Bearer challenge, a token endpoint
behind basic auth, then the manifest with the token."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.registry import RegistryError, registry_url, resolve_digest
from deploy.spec import parse_spec

DIGEST = "sha256:" + "c" * 64
PASSWORD = "s3cret-registry-password"


class TokenRegistry(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # the token endpoint
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
                f'Bearer realm="http://127.0.0.1:{port}/token",service="registry",'
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
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def spec_for(url: str):
    return parse_spec(
        {
            "app": "shop",
            "image": "ghcr.example/acme/shop",
            "registry": {"url": url, "username": "bot"},
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
    spec = spec_for("x").model_copy(
        update={"registry": spec_for("x").registry.model_copy(update={"url": None})}
    )
    assert registry_url(spec) == "https://ghcr.example"
    local = spec.model_copy(update={"image": "127.0.0.1:5000/acme/shop"})
    assert registry_url(local) == "http://127.0.0.1:5000"
