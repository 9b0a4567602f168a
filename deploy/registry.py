"""Resolve an image tag to its manifest digest with the registry's HTTP API v2.

Deploying by digest means every host runs exactly the bytes that were checked, even
if someone pushes the tag again mid-deploy.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import httpx

from deploy.probes import tls
from deploy.spec import Spec, is_loopback, repository

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    pass


def registry_url(spec: Spec) -> str:
    if spec.registry.url:
        return spec.registry.url.rstrip("/")
    host = spec.registry_host.rsplit(":", 1)[0]
    return f"{'http' if is_loopback(host) else 'https'}://{spec.registry_host}"


async def resolve_digest(
    spec: Spec, tag: str, password: str | None = None, image: str | None = None
) -> str:
    """The digest of `image:tag` (the spec's main image by default); RegistryError says
    plainly what went wrong."""
    image = image or spec.main_image
    repo = repository(image)
    base = registry_url(spec)
    registry_host = httpx.URL(base).host
    # The spec refuses this too; a spec built in code must not slip past it.
    if base.startswith("http://") and not is_loopback(registry_host) and not spec.registry.insecure:
        raise RegistryError(
            f"registry {base} is plain HTTP, so the password and the digest would cross the "
            "network unprotected; use https://, or set registry.insecure: true in the spec"
        )
    trusted_hosts = {registry_host, *spec.registry.auth_hosts}
    url = f"{base}/v2/{repo}/manifests/{tag}"
    auth = (spec.registry.username, password) if spec.registry.username and password else None
    headers = {"Accept": MANIFEST_TYPES}
    try:
        async with httpx.AsyncClient(timeout=spec.registry.timeout, verify=tls()) as client:
            response = await client.head(
                url, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT
            )
            if response.status_code == 401:
                token = await _bearer_token(client, response, auth, base, trusted_hosts)
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                    response = await client.head(url, headers=headers)
    except httpx.HTTPError as exc:
        raise RegistryError(f"registry {base} is unreachable: {type(exc).__name__}") from None
    if response.status_code == 404:
        raise RegistryError(f"{image}:{tag} does not exist in the registry")
    if response.status_code in (401, 403):
        raise RegistryError(f"registry {base} refused access to {repo}")
    if response.status_code != 200:
        raise RegistryError(f"registry {base} answered {response.status_code} for {tag}")
    digest = str(response.headers.get("Docker-Content-Digest", ""))
    if not DIGEST.match(digest):
        raise RegistryError(f"registry {base} gave no valid digest for {tag}")
    return digest


async def _bearer_token(
    client: httpx.AsyncClient,
    challenge: httpx.Response,
    auth: tuple[str, str] | None,
    base: str,
    trusted_hosts: Collection[str],
) -> str | None:
    """The token flow of the distribution spec (GHCR, Docker Hub): ask the realm for a token."""
    header = challenge.headers.get("WWW-Authenticate", "")
    if not header.lower().startswith("bearer "):
        return None
    params = dict(_CHALLENGE.findall(header))
    realm = params.pop("realm", None)
    if not realm:
        return None
    # The realm is whatever URL the registry's answer names: the password goes there
    # only over TLS, and only to a host the spec trusts with it.
    problem = _realm_problem(realm, trusted_hosts) if auth else None
    if problem:
        raise RegistryError(f"registry {base} asks for the password {problem}")
    response = await client.get(realm, params=params, auth=auth or httpx.USE_CLIENT_DEFAULT)
    if response.status_code != 200:
        return None
    body = response.json()
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None


def _realm_problem(realm: str, trusted_hosts: Collection[str]) -> str | None:
    """Why the registry password must not be sent to this token realm, or None."""
    try:
        url = httpx.URL(realm)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        return "at a token service URL that is not http(s); refusing to send it"
    if url.scheme == "http" and not is_loopback(url.host):
        return f"at http://{url.host}, without TLS; refusing to send it"
    if url.host not in trusted_hosts:
        return (
            f"at {url.host}, which is not the registry's host; refusing to send it "
            f"(add {url.host} to registry.auth_hosts in the spec if it is the registry's "
            "token service)"
        )
    return None
