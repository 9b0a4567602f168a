"""A stand-in of GitHub's REST API for tests: aiohttp on a free loopback port, speaking
GitHub's HTTP and JSON and refusing what GitHub refuses.

It serves what the bot uses (deployments and their statuses, a release by tag, the
compare of two tags) for the repositories a test registers, and checks each request
as GitHub does: the token (`Bearer` or `token`), the API version header, the JSON
bodies (422 "Validation Failed" with an `errors` list). Every answer carries the
rate-limit headers. Faults are injected for the next requests (5xx, the primary and
the secondary rate limit, slowness, a GitHub that is down), and every request is
recorded, with its Authorization header redacted, for assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web

API_VERSIONS = ("2022-11-28",)
ACCEPT = "application/vnd.github+json"
STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
RATE_LIMIT = 5000
DOCS = "https://docs.github.com/rest"
CLOCK_SLACK = 0.05  # seconds
COMPARE_COMMIT_LIMIT = 250  # GitHub lists at most this many commits in a compare
JsonObject = dict[str, Any]


class Refusal(Exception):
    """An error answer in GitHub's shape."""

    def __init__(self, status: int, message: str, errors: list[JsonObject] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: JsonObject = {"message": message, "documentation_url": DOCS}
        if errors is not None:
            self.body["errors"] = errors
        self.headers: dict[str, str] = {}


def not_found() -> Refusal:
    return Refusal(404, "Not Found")


def invalid(resource: str, field_name: str, code: str, message: str | None = None) -> Refusal:
    error: JsonObject = {"resource": resource, "field": field_name, "code": code}
    if message is not None:
        error["message"] = message
    return Refusal(422, "Validation Failed", [error])


def timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RecordedRequest:
    method: str
    path: str  # as sent, still percent-encoded, without the query
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case; authorization is "<redacted>"
    body: object | None
    status: int = 0  # what the stand-in answered; 0 when the answer never left
    answer_headers: dict[str, str] = field(default_factory=dict)  # names in lower case


@dataclass
class Status:
    id: int
    state: str
    description: str
    log_url: str
    environment_url: str
    created_at: str


@dataclass
class Deployment:
    id: int
    ref: str
    sha: str
    task: str
    environment: str
    payload: object
    description: str | None
    production_environment: bool
    transient_environment: bool
    created_at: str
    statuses: list[Status] = field(default_factory=list)


@dataclass
class Release:
    id: int
    tag: str
    name: str | None
    body: str | None
    author: str
    html_url: str
    draft: bool
    prerelease: bool
    published_at: str


@dataclass
class Repository:
    full_name: str
    deployments: dict[int, Deployment] = field(default_factory=dict)
    releases: dict[str, Release] = field(default_factory=dict)
    comparisons: dict[tuple[str, str], list[tuple[str, str, str | None]]] = field(
        default_factory=dict
    )


@dataclass
class Fault:
    """Refuse up to `left` requests under `path` (all when None), while `until`
    (epoch) has not passed when it is set."""

    left: int
    path: str | None  # a prefix of the path as sent (percent-encoded)
    answer: Callable[[], Refusal] | None = None
    until: float | None = None

    def applies(self, path: str, now: float) -> bool:
        # The slack spares a client that slept exactly as told the jitter of clocks.
        if self.left <= 0 or (self.until is not None and now >= self.until - CLOCK_SLACK):
            return False
        return self.path is None or path.startswith(self.path)


@dataclass
class Call:
    """One API request as a route handler sees it."""

    repo: Repository
    body: object
    args: list[str]  # the path's variable parts, percent-decoded
    query: dict[str, str]


def user(login: str) -> JsonObject:
    number = int(hashlib.sha1(login.encode()).hexdigest()[:6], 16)  # noqa: S324 (an id)
    return {
        "login": login,
        "id": number,
        "type": "Bot" if login.endswith("[bot]") else "User",
        "html_url": f"https://github.com/{login}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{number}",
    }


def sha_of(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (a stand-in commit id)


class GitHubStandIn:
    """The state behind the stand-in, and the handles a test steers it by."""

    def __init__(self, token: str, creator: str = "greenlight-bot") -> None:
        self.token = token
        self.creator = creator
        self.url = ""  # set once serving
        self.repos: dict[str, Repository] = {}
        self.requests: list[RecordedRequest] = []
        self.delay = 0.0
        self.is_down = False
        self._faults: list[Fault] = []
        self._losses: list[Fault] = []
        self._ids = 0
        self._used = 0
        self._window_reset = math.ceil(time.time()) + 3600
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = 0

    # What a test sets up ---------------------------------------------------------

    def add_repo(self, repo: str) -> Repository:
        return self.repos.setdefault(repo, Repository(repo))

    def add_release(
        self,
        repo: str,
        tag: str,
        *,
        name: str | None = None,
        body: str | None = None,
        author: str = "release-manager",
        html_url: str | None = None,
        prerelease: bool = False,
        draft: bool = False,
    ) -> Release:
        release = Release(
            id=self._next_id(),
            tag=tag,
            name=name,
            body=body,
            author=author,
            html_url=html_url or f"https://github.com/{repo}/releases/tag/{tag}",
            draft=draft,
            prerelease=prerelease,
            published_at=timestamp(time.time()),
        )
        self.repos[repo].releases[tag] = release
        return release

    def add_commits(
        self, repo: str, base: str, head: str, commits: list[tuple[str, str, str | None]]
    ) -> None:
        """The commits (sha, message, author login or None) from `base` to `head`."""
        self.repos[repo].comparisons[(base, head)] = list(commits)

    # Faults, each for the next `n` requests (under `path` when given) ------------

    def fail(self, n: int = 1, status: int = 502, path: str | None = None) -> None:
        messages = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable"}
        message = messages.get(status, "Server Error")
        self._faults.append(Fault(n, path, lambda: Refusal(status, message)))

    def rate_limit(self, n: int = 1, reset_in: float = 60.0, path: str | None = None) -> None:
        """The primary rate limit is spent until `reset_in` seconds from now: requests
        before then get GitHub's 403, at most `n` of them."""
        reset = math.ceil(time.time() + reset_in)

        def refusal() -> Refusal:
            answer = Refusal(
                403,
                "API rate limit exceeded for user ID 1. If you reach out to GitHub "
                "Support for help, please include the request ID.",
            )
            answer.headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
            return answer

        self._faults.append(Fault(n, path, refusal, until=reset))

    def secondary_limit(self, n: int = 1, retry_after: int = 60, path: str | None = None) -> None:
        """A secondary rate limit for `retry_after` seconds: requests before then get
        a 429 with `retry-after`, at most `n` of them."""

        def refusal() -> Refusal:
            answer = Refusal(
                429,
                "You have exceeded a secondary rate limit. Please wait a few minutes "
                "before you try again.",
            )
            answer.headers = {"retry-after": str(retry_after)}
            return answer

        self._faults.append(Fault(n, path, refusal, until=time.time() + retry_after))

    def lose_answers(self, n: int = 1, path: str | None = None) -> None:
        """The next `n` requests take effect, but the connection drops before their
        answer leaves (a proxy timing out in front of GitHub)."""
        self._losses.append(Fault(n, path))

    def slow(self, seconds: float) -> None:
        """Every answer from now on comes `seconds` late (0 for prompt again)."""
        self.delay = seconds

    async def down(self) -> None:
        """Refuse new connections and drop the ones open (keep-alive) unanswered."""
        self.is_down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:
                connection.force_close()

    async def up(self) -> None:
        self.is_down = False
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
            await self._site.start()

    # What a test asserts on ------------------------------------------------------

    def statuses(self, repo: str, deployment_id: int) -> list[str]:
        return [status.state for status in self.repos[repo].deployments[deployment_id].statuses]

    def deployment_for(self, repo: str, **payload: str) -> Deployment:
        """The one deployment whose payload holds every key=value given."""
        found = [
            deployment
            for deployment in self.repos[repo].deployments.values()
            if isinstance(deployment.payload, dict)
            and all(deployment.payload.get(key) == value for key, value in payload.items())
        ]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} deployments of {repo} carry {payload}")
        return found[0]

    def answered(self, status: int) -> list[RecordedRequest]:
        return [request for request in self.requests if request.status == status]

    def without_accept(self) -> list[RecordedRequest]:
        """Requests that did not ask for GitHub's media type (GitHub serves them,
        but may change what they get)."""
        return [r for r in self.requests if r.headers.get("accept") != ACCEPT]

    # Serving ---------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _rate_headers(self) -> dict[str, str]:
        now = time.time()
        if now >= self._window_reset:
            self._window_reset, self._used = math.ceil(now) + 3600, 0
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(max(RATE_LIMIT - self._used, 0)),
            "x-ratelimit-reset": str(self._window_reset),
            "x-ratelimit-used": str(self._used),
            "x-ratelimit-resource": "core",
        }

    def _take(self, path: str, faults: list[Fault]) -> Fault | None:
        """The first fault that applies to a request for `path`, counted as used."""
        now = time.time()
        for fault in faults:
            if fault.applies(path, now):
                fault.left -= 1
                return fault
        faults[:] = [f for f in faults if f.left > 0 and (f.until or math.inf) > now]
        return None

    def _check_request(self, request: web.Request) -> None:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            raise Refusal(401, "Requires authentication")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token") or given != self.token:
            raise Refusal(401, "Bad credentials")
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in API_VERSIONS:
            raise Refusal(
                400,
                f"API version {version} is not supported. Supported versions: "
                + ", ".join(API_VERSIONS),
            )

    async def _serve(self, request: web.Request) -> web.Response:
        raw_path = request.raw_path.partition("?")[0]
        headers = {
            name.lower(): "<redacted>" if name.lower() == "authorization" else value
            for name, value in request.headers.items()
        }
        body: object | None = None
        if request.can_read_body:
            text = await request.text()
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                body = text
        record = RecordedRequest(request.method, raw_path, dict(request.query), headers, body)
        self.requests.append(record)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.is_down:  # taken before down() and answered after
            return self._dropped(request)
        try:
            fault = self._take(raw_path, self._faults)
            if fault is not None and fault.answer is not None:
                raise fault.answer()
            self._check_request(request)
            self._used += 1
            response = self._route(request, raw_path, body)
        except Refusal as refusal:
            response = web.json_response(refusal.body, status=refusal.status)
            response.headers.update(self._rate_headers())
            response.headers.update(refusal.headers)
        else:
            if self._take(raw_path, self._losses) is not None:
                return self._dropped(request)  # done, but nobody hears of it
            response.headers.update(self._rate_headers())
        response.headers["X-GitHub-Media-Type"] = "github.v3; format=json"
        record.status = response.status
        record.answer_headers = {name.lower(): value for name, value in response.headers.items()}
        return response

    def _dropped(self, request: web.Request) -> web.Response:
        """Close the connection so that the answer returned never leaves."""
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=503)

    def _route(self, request: web.Request, raw_path: str, body: object) -> web.Response:
        parts = [unquote(part) for part in raw_path.split("/")[1:]]
        if len(parts) < 3 or parts[0] != "repos":
            raise not_found()
        repo = self.repos.get(f"{parts[1]}/{parts[2]}")
        if repo is None:
            raise not_found()
        rest = parts[3:]
        for method, pattern, handler in ROUTES:
            if request.method != method or len(rest) != len(pattern):
                continue
            pairs = list(zip(pattern, rest, strict=True))
            if all(want in ("*", got) for want, got in pairs):
                args = [got for want, got in pairs if want == "*"]
                return handler(self, Call(repo, body, args, dict(request.query)))
        raise not_found()

    # The API -----------------------------------------------------------------------

    def _repo_url(self, repo: Repository) -> str:
        return f"{self.url}/repos/{repo.full_name}"

    def _deployment_json(self, repo: Repository, deployment: Deployment) -> JsonObject:
        url = f"{self._repo_url(repo)}/deployments/{deployment.id}"
        return {
            "url": url,
            "id": deployment.id,
            "node_id": f"DE_{deployment.id}",
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": deployment.payload,
            "original_environment": deployment.environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": user(self.creator),
            "created_at": deployment.created_at,
            "updated_at": deployment.created_at,
            "statuses_url": f"{url}/statuses",
            "repository_url": self._repo_url(repo),
            "transient_environment": deployment.transient_environment,
            "production_environment": deployment.production_environment,
        }

    def _status_json(self, repo: Repository, deployment: Deployment, status: Status) -> JsonObject:
        url = f"{self._repo_url(repo)}/deployments/{deployment.id}"
        return {
            "url": f"{url}/statuses/{status.id}",
            "id": status.id,
            "node_id": f"DES_{status.id}",
            "state": status.state,
            "creator": user(self.creator),
            "description": status.description,
            "environment": deployment.environment,
            "target_url": status.log_url,
            "log_url": status.log_url,
            "environment_url": status.environment_url,
            "created_at": status.created_at,
            "updated_at": status.created_at,
            "deployment_url": url,
            "repository_url": self._repo_url(repo),
        }

    def _api_create_deployment(self, call: Call) -> web.Response:
        repo, given = call.repo, _object(call.body)
        ref = given.get("ref")
        if ref is None:
            raise invalid("Deployment", "ref", "missing_field")
        _typed(given, "Deployment", ref=str, environment=str, description=(str, type(None)))
        _typed(
            given,
            "Deployment",
            task=str,
            auto_merge=bool,
            required_contexts=list,
            payload=(dict, str),
            production_environment=bool,
            transient_environment=bool,
        )
        contexts = given.get("required_contexts", [])
        if not all(isinstance(context, str) for context in contexts):
            raise invalid("Deployment", "required_contexts", "invalid")
        payload = given.get("payload", {})
        if isinstance(payload, str) and payload:
            try:
                payload = json.loads(payload)
            except json.JSONDecodeError:
                raise invalid("Deployment", "payload", "invalid") from None
        environment = given.get("environment", "production")
        deployment = Deployment(
            id=self._next_id(),
            ref=ref,
            sha=sha_of(ref),
            task=given.get("task", "deploy"),
            environment=environment,
            payload=payload,
            description=given.get("description"),
            production_environment=given.get("production_environment", environment == "production"),
            transient_environment=given.get("transient_environment", False),
            created_at=timestamp(time.time()),
        )
        repo.deployments[deployment.id] = deployment
        return web.json_response(self._deployment_json(repo, deployment), status=201)

    def _api_list_deployments(self, call: Call) -> web.Response:
        wanted = {
            key: call.query[key] for key in ("ref", "environment", "task") if key in call.query
        }
        newest_first = [
            deployment
            for deployment in sorted(call.repo.deployments.values(), key=lambda d: -d.id)
            if all(getattr(deployment, key) == value for key, value in wanted.items())
        ]
        page = newest_first[: min(int(call.query.get("per_page", "30")), 100)]
        return web.json_response([self._deployment_json(call.repo, d) for d in page])

    def _api_get_deployment(self, call: Call) -> web.Response:
        deployment = _deployment(call.repo, call.args[0])
        return web.json_response(self._deployment_json(call.repo, deployment))

    def _api_create_status(self, call: Call) -> web.Response:
        repo, deployment = call.repo, _deployment(call.repo, call.args[0])
        given = _object(call.body)
        state = given.get("state")
        if state is None:
            raise invalid("DeploymentStatus", "state", "missing_field")
        if state not in STATES:
            raise invalid(
                "DeploymentStatus", "state", "custom", "state is not included in the list"
            )
        _typed(
            given,
            "DeploymentStatus",
            description=str,
            log_url=str,
            target_url=str,
            environment_url=str,
            environment=str,
            auto_inactive=bool,
        )
        description = given.get("description", "")
        if len(description) > 140:
            raise invalid(
                "DeploymentStatus",
                "description",
                "custom",
                "description is too long (maximum is 140 characters)",
            )
        status = Status(
            id=self._next_id(),
            state=state,
            description=description,
            log_url=str(given.get("log_url") or given.get("target_url") or ""),
            environment_url=given.get("environment_url", ""),
            created_at=timestamp(time.time()),
        )
        deployment.statuses.append(status)
        if state == "success" and given.get("auto_inactive", True):
            self._mark_earlier_inactive(repo, deployment)
        return web.json_response(self._status_json(repo, deployment, status), status=201)

    def _mark_earlier_inactive(self, repo: Repository, deployment: Deployment) -> None:
        """GitHub's `auto_inactive`: earlier non-transient, non-production deployments
        of the same environment get an inactive status."""
        for earlier in repo.deployments.values():
            if (
                earlier.id < deployment.id
                and earlier.environment == deployment.environment
                and not earlier.transient_environment
                and not earlier.production_environment
                and (not earlier.statuses or earlier.statuses[-1].state != "inactive")
            ):
                earlier.statuses.append(
                    Status(self._next_id(), "inactive", "", "", "", timestamp(time.time()))
                )

    def _api_list_statuses(self, call: Call) -> web.Response:
        deployment = _deployment(call.repo, call.args[0])
        newest_first = reversed(deployment.statuses)
        return web.json_response(
            [self._status_json(call.repo, deployment, s) for s in newest_first]
        )

    def _api_release_by_tag(self, call: Call) -> web.Response:
        repo, release = call.repo, call.repo.releases.get(call.args[0])
        if release is None or release.draft:  # GitHub finds published releases only
            raise not_found()
        base = f"{self._repo_url(repo)}/releases/{release.id}"
        return web.json_response(
            {
                "url": base,
                "html_url": release.html_url,
                "assets_url": f"{base}/assets",
                "upload_url": f"{base}/assets{{?name,label}}",
                "tarball_url": f"{self._repo_url(repo)}/tarball/{release.tag}",
                "zipball_url": f"{self._repo_url(repo)}/zipball/{release.tag}",
                "id": release.id,
                "node_id": f"RE_{release.id}",
                "tag_name": release.tag,
                "target_commitish": "main",
                "name": release.name,
                "body": release.body,
                "draft": release.draft,
                "prerelease": release.prerelease,
                "created_at": release.published_at,
                "published_at": None if release.draft else release.published_at,
                "author": user(release.author),
                "assets": [],
            }
        )

    def _api_compare(self, call: Call) -> web.Response:
        repo = call.repo
        base, dots, head = call.args[0].partition("...")
        commits = repo.comparisons.get((base, head)) if dots else None
        if commits is None:
            raise not_found()
        listed = commits[:COMPARE_COMMIT_LIMIT]
        web_base = f"https://github.com/{repo.full_name}"
        return web.json_response(
            {
                "url": f"{self._repo_url(repo)}/compare/{base}...{head}",
                "html_url": f"{web_base}/compare/{base}...{head}",
                "permalink_url": f"{web_base}/compare/{sha_of(base)}...{sha_of(head)}",
                "status": "ahead",
                "ahead_by": len(commits),
                "behind_by": 0,
                "total_commits": len(commits),
                "commits": [
                    {
                        "url": f"{self._repo_url(repo)}/commits/{sha}",
                        "sha": sha,
                        "node_id": f"C_{sha[:12]}",
                        "html_url": f"{web_base}/commit/{sha}",
                        "commit": {
                            "message": message,
                            "author": {
                                "name": author or "Someone",
                                "email": f"{author or 'someone'}@example.com",
                                "date": timestamp(time.time()),
                            },
                            "comment_count": 0,
                        },
                        "author": user(author) if author else None,
                        "committer": user(author) if author else None,
                        "parents": [],
                    }
                    for sha, message, author in listed
                ],
                "files": [],
            }
        )


def _object(body: object) -> JsonObject:
    if not isinstance(body, dict):
        raise Refusal(400, "Problems parsing JSON")
    return body


def _typed(given: JsonObject, resource: str, **types: type | tuple[type, ...]) -> None:
    for name, wanted in types.items():
        if name in given and not isinstance(given[name], wanted):
            raise invalid(resource, name, "invalid")


def _deployment(repo: Repository, number: str) -> Deployment:
    deployment = repo.deployments.get(int(number)) if number.isdigit() else None
    if deployment is None:
        raise not_found()
    return deployment


Route = tuple[str, tuple[str, ...], Callable[[GitHubStandIn, Call], web.Response]]
ROUTES: list[Route] = [
    ("POST", ("deployments",), GitHubStandIn._api_create_deployment),
    ("GET", ("deployments",), GitHubStandIn._api_list_deployments),
    ("GET", ("deployments", "*"), GitHubStandIn._api_get_deployment),
    ("POST", ("deployments", "*", "statuses"), GitHubStandIn._api_create_status),
    ("GET", ("deployments", "*", "statuses"), GitHubStandIn._api_list_statuses),
    ("GET", ("releases", "tags", "*"), GitHubStandIn._api_release_by_tag),
    ("GET", ("compare", "*"), GitHubStandIn._api_compare),
]


@asynccontextmanager
async def running_github(token: str) -> AsyncIterator[GitHubStandIn]:
    """A stand-in accepting `token`, on a free loopback port for the block."""
    standin = GitHubStandIn(token)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", standin._serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    standin._runner, standin._site = runner, site
    standin._port = runner.addresses[0][1]
    standin.url = f"http://127.0.0.1:{standin._port}"
    try:
        yield standin
    finally:
        await runner.cleanup()
