"""Resolve an image tag to its manifest digest with the registry's HTTP API v2.

Deploying by digest means every host runs exactly the bytes that were checked, even
if someone pushes the tag again mid-deploy.
"""

from __future__ import annotations

import ipaddress
import re

import httpx

from deploy.probes import tls
from deploy.spec import Spec

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
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return f"{'http' if loopback else 'https'}://{spec.registry_host}"


async def resolve_digest(spec: Spec, tag: str, password: str | None = None) -> str:
    """The digest of `image:tag`; RegistryError says plainly what went wrong."""
    base = registry_url(spec)
    url = f"{base}/v2/{spec.repository}/manifests/{tag}"
    auth = (spec.registry.username, password) if spec.registry.username and password else None
    headers = {"Accept": MANIFEST_TYPES}
    try:
        async with httpx.AsyncClient(timeout=spec.registry.timeout, verify=tls()) as client:
            response = await client.head(
                url, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT
            )
            if response.status_code == 401:
                token = await _bearer_token(client, response, auth)
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                    response = await client.head(url, headers=headers)
    except httpx.HTTPError as exc:
        raise RegistryError(f"registry {base} is unreachable: {type(exc).__name__}") from None
    if response.status_code == 404:
        raise RegistryError(f"{spec.image}:{tag} does not exist in the registry")
    if response.status_code in (401, 403):
        raise RegistryError(f"registry {base} refused access to {spec.repository}")
    if response.status_code != 200:
        raise RegistryError(f"registry {base} answered {response.status_code} for {tag}")
    digest = str(response.headers.get("Docker-Content-Digest", ""))
    if not DIGEST.match(digest):
        raise RegistryError(f"registry {base} gave no valid digest for {tag}")
    return digest


async def _bearer_token(
    client: httpx.AsyncClient, challenge: httpx.Response, auth: tuple[str, str] | None
) -> str | None:
    """The token flow of the distribution spec (GHCR, Docker Hub): ask the realm for a token."""
    header = challenge.headers.get("WWW-Authenticate", "")
    if not header.lower().startswith("bearer "):
        return None
    params = dict(_CHALLENGE.findall(header))
    realm = params.pop("realm", None)
    if not realm:
        return None
    response = await client.get(realm, params=params, auth=auth or httpx.USE_CLIENT_DEFAULT)
    if response.status_code != 200:
        return None
    body = response.json()
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None
