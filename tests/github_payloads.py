"""Webhook deliveries as GitHub sends them: the documented payload shapes of `release`
and `workflow_run` (trimmed to realistic size, fields Greenlight does not read
included), the headers, and the signature computed from the raw body."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import aiohttp

from bot.github.intake import PATH


def account(login: str, user_id: int = 1) -> dict[str, Any]:
    return {
        "login": login,
        "id": user_id,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def repository(full_name: str) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": name,
        "full_name": full_name,
        "private": True,
        "owner": account(owner, 2),
        "html_url": f"https://github.com/{full_name}",
        "default_branch": "main",
    }


def release(
    repo: str,
    tag: str,
    *,
    action: str = "published",
    release_id: int = 101,
    name: str | None = None,
    body: str = "## What's changed\n* Faster checkout (#42)\n* Fix the cart total (#43)",
    author: str = "rita",
    draft: bool = False,
    prerelease: bool = False,
    sender: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action": action,
        "release": {
            "url": f"https://api.github.com/repos/{repo}/releases/{release_id}",
            "html_url": f"https://github.com/{repo}/releases/tag/{tag}",
            "id": release_id,
            "node_id": "MDc6UmVsZWFzZTE=",
            "tag_name": tag,
            "target_commitish": "main",
            "name": name if name is not None else f"Release {tag}",
            "body": body,
            "draft": draft,
            "prerelease": prerelease,
            "created_at": "2026-12-01T10:00:00Z",
            "published_at": "2026-12-01T10:00:05Z",
            "author": account(author, 3),
            "assets": [],
        },
        "repository": repository(repo),
        "sender": account(sender or author, 3),
    }
    if action == "edited":
        payload["changes"] = {"body": {"from": "an earlier text"}}
    return payload


def workflow_run(
    repo: str,
    *,
    sha: str = "4f1e2d3c5b6a798877665544332211ffeeddccbb",
    branch: str = "main",
    conclusion: str | None = "success",
    action: str = "completed",
    name: str = "Build",
    path: str = ".github/workflows/build.yml",
    started: str = "2026-12-01T09:58:07Z",
    sender: str = "carla",
) -> dict[str, Any]:
    return {
        "action": action,
        "workflow_run": {
            "id": 30433642,
            "name": name,
            "node_id": "MDEyOldvcmtmbG93IFJ1bjI2OTI4OQ==",
            "head_branch": branch,
            "head_sha": sha,
            "path": path,
            "run_number": 562,
            "event": "push",
            "status": "completed" if action == "completed" else "in_progress",
            "conclusion": conclusion if action == "completed" else None,
            "workflow_id": 159038,
            "html_url": f"https://github.com/{repo}/actions/runs/30433642",
            "created_at": started,
            "updated_at": "2026-12-01T10:03:11Z",
            "run_started_at": started,
            "head_commit": {
                "id": sha,
                "message": "Speed up the checkout",
                "timestamp": "2026-12-01T09:57:01Z",
            },
        },
        "workflow": {"id": 159038, "name": name, "path": path, "state": "active"},
        "repository": repository(repo),
        "sender": account(sender, 4),
    }


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(
    event: str, body: bytes, secret: str | None, delivery: str | None = None
) -> dict[str, str]:
    found = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/a1b2c3d",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
    }
    if secret is not None:
        found["X-Hub-Signature-256"] = signature(secret, body)
    return found


async def deliver(
    session: aiohttp.ClientSession,
    base: str,
    event: str,
    payload: Any,
    secret: str | None,
    *,
    delivery: str | None = None,
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST one delivery; GitHub's own headers, signed with `secret` (None: unsigned)."""
    raw = body if body is not None else json.dumps(payload).encode()
    sent = headers(event, raw, secret, delivery) | (extra or {})
    async with session.post(f"{base}{PATH}", data=raw, headers=sent) as response:
        try:
            answer = await response.json(content_type=None)
        except ValueError:
            answer = {}
        return response.status, answer
