"""A client of GitHub's REST API for what the bot needs: a GitHub Deployment per
Greenlight deployment with its statuses, and a release's notes (the release by tag,
or else the commits between two tags).

GitHub being down must never block or fail a deployment, so every call is bounded:
network errors, timeouts and 5xx are retried with exponential backoff, rate limits
are waited out when the wait is short, and then the client gives up with
`GitHubUnavailable`. A refusal that another try cannot change (401, 404, 422) raises
`GitHubError` at once. When to retry is decided by `bot.github.policy.decide`, a
pure function of one attempt's outcome, so the policy is testable as data.

The token reaches only the `Authorization` header of each request: never a log line,
an exception or a repr.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from bot.github.policy import Outcome, decide

__all__ = [
    "Commit",
    "Comparison",
    "DeploymentState",
    "GitHubClient",
    "GitHubError",
    "GitHubUnavailable",
    "Release",
]

log = logging.getLogger("greenlight.bot.github")

API_VERSION = "2022-11-28"
DESCRIPTION_LIMIT = 140  # characters GitHub takes in a deployment status description
REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

DeploymentState = Literal[
    "error", "failure", "inactive", "in_progress", "queued", "pending", "success"
]
Sleep = Callable[[float], Awaitable[object]]
M = TypeVar("M", bound=BaseModel)


class GitHubError(Exception):
    """GitHub refused a call in a way another try would not change."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class GitHubUnavailable(GitHubError):
    """GitHub did not answer, or rate-limits for longer than the client waits."""


class Release(BaseModel):
    """A published release; `name` and `body` are "" where GitHub has none."""

    tag_name: str
    name: str
    body: str
    html_url: str
    author_login: str | None
    draft: bool
    prerelease: bool

    @field_validator("name", "body", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value


class Commit(BaseModel):
    sha: str
    message: str
    author_login: str | None  # None when the commit's email matches no GitHub account


class Comparison(BaseModel):
    """The commits from one tag to another; GitHub lists at most 250 of them, so
    `total_commits` can be larger than `len(commits)`."""

    html_url: str
    commits: list[Commit]
    total_commits: int


# GitHub's JSON as far as the models above need it.
class _User(BaseModel):
    login: str


class _ReleaseAnswer(BaseModel):
    tag_name: str
    name: str | None = None
    body: str | None = None
    html_url: str
    author: _User | None = None
    draft: bool = False
    prerelease: bool = False


class _GitCommit(BaseModel):
    message: str


class _CommitAnswer(BaseModel):
    sha: str
    commit: _GitCommit
    author: _User | None = None


class _ComparisonAnswer(BaseModel):
    html_url: str
    total_commits: int
    commits: list[_CommitAnswer] = Field(default_factory=list)


class _Created(BaseModel):
    id: int


class _BearerToken(httpx.Auth):
    """The token goes into each request's header as it leaves, and nowhere else."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


def _part(value: str) -> str:
    # No ref is "", "." or "..", and the last two would be read as path steps.
    if value in ("", ".", ".."):
        raise ValueError(f"not a name GitHub knows: {value!r}")
    return quote(value, safe="")


def _repo_path(repo: str) -> str:
    owner, _, name = repo.partition("/")
    # "." and ".." pass the pattern but would walk out of /repos/.
    if not REPO.match(repo) or {owner, name} & {".", ".."}:
        raise ValueError(f"a repository reads owner/name, not {repo!r}")
    return f"/repos/{_part(owner)}/{_part(name)}"


def _refusal_text(response: httpx.Response) -> str:
    """GitHub's `message`, with its `errors` list summed up: "Validation Failed
    (ref: missing field)"."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return response.reason_phrase or "no explanation"
    text = str(body.get("message") or response.reason_phrase)
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        text += f" ({'; '.join(_error_text(error) for error in errors)})"
    return text


def _json_list(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _error_text(error: object) -> str:
    if not isinstance(error, dict):
        return str(error)
    if error.get("message"):
        return str(error["message"])
    code = str(error.get("code", "invalid")).replace("_", " ")
    return f"{error['field']}: {code}" if error.get("field") else code


class GitHubClient:
    """GitHub's REST API at `api_base` (https://api.github.com, or a GitHub
    Enterprise's /api/v3), one `httpx.AsyncClient` for the client's life."""

    def __init__(
        self,
        api_base: str,
        token: SecretStr,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        longest_wait: float = 60.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.longest_wait = longest_wait
        self._sleep = sleep
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=self.api_base,
            auth=_BearerToken(token),
            timeout=httpx.Timeout(timeout),
            # A renamed repository answers 301; httpx drops the token if the
            # redirect leaves GitHub's host.
            follow_redirects=True,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "greenlight",
            },
        )

    def __repr__(self) -> str:
        return f"GitHubClient({self.api_base!r})"

    async def __aenter__(self) -> GitHubClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_deployment(
        self,
        repo: str,
        *,
        ref: str,
        environment: str,
        payload: dict[str, str],
        description: str,
        production: bool,
    ) -> int:
        """A new GitHub Deployment of `ref`; its id."""
        body = {
            "ref": ref,
            "environment": environment,
            "payload": payload,
            "description": description,
            # Greenlight has checked the release already; GitHub must neither merge
            # the default branch into it nor wait for commit statuses.
            "auto_merge": False,
            "required_contexts": [],
            "production_environment": production,
            "transient_environment": False,
        }
        path = f"{_repo_path(repo)}/deployments"

        async def landed() -> httpx.Response | None:
            listed = await self._look(path, {"ref": ref, "environment": environment})
            if listed is None:
                return None
            for deployment in _json_list(listed):
                if deployment.get("payload") == payload and isinstance(deployment.get("id"), int):
                    return await self._look(f"{path}/{deployment['id']}")
            return None

        response = await self._call("POST", path, body, landed=landed)
        return self._parsed(response, _Created).id

    async def create_status(
        self,
        repo: str,
        deployment_id: int,
        *,
        state: DeploymentState,
        log_url: str | None,
        environment_url: str | None,
        description: str,
    ) -> None:
        """A deployment status; `description` is cut to GitHub's 140 characters."""
        if len(description) > DESCRIPTION_LIMIT:
            description = description[: DESCRIPTION_LIMIT - 1] + "…"
        body: dict[str, Any] = {
            "state": state,
            "description": description,
            # Greenlight marks the deployment it replaced inactive itself, when the
            # new one is live, not when GitHub sees a success.
            "auto_inactive": False,
        }
        if log_url is not None:
            body["log_url"] = log_url
        if environment_url is not None:
            body["environment_url"] = environment_url
        path = f"{_repo_path(repo)}/deployments/{int(deployment_id)}/statuses"

        async def landed() -> httpx.Response | None:
            listed = await self._look(path)  # newest first
            newest = _json_list(listed)[:1] if listed is not None else []
            if newest and (newest[0].get("state"), newest[0].get("description")) == (
                state,
                description,
            ):
                return listed
            return None

        await self._call("POST", path, body, landed=landed)

    async def release_by_tag(self, repo: str, tag: str) -> Release | None:
        """The release of `tag`, or None when there is none."""
        path = f"{_repo_path(repo)}/releases/tags/{_part(tag)}"
        response = await self._call("GET", path, may_be_absent=True)
        if response.status_code == 404:
            return None
        answer = self._parsed(response, _ReleaseAnswer)
        return Release(
            tag_name=answer.tag_name,
            name=answer.name,
            body=answer.body,
            html_url=answer.html_url,
            author_login=answer.author.login if answer.author else None,
            draft=answer.draft,
            prerelease=answer.prerelease,
        )

    async def compare(self, repo: str, base: str, head: str) -> Comparison | None:
        """The commits from `base` to `head`, or None when either is unknown."""
        path = f"{_repo_path(repo)}/compare/{_part(base)}...{_part(head)}"
        response = await self._call("GET", path, may_be_absent=True)
        if response.status_code == 404:
            return None
        answer = self._parsed(response, _ComparisonAnswer)
        return Comparison(
            html_url=answer.html_url,
            total_commits=answer.total_commits,
            commits=[
                Commit(
                    sha=commit.sha,
                    message=commit.commit.message,
                    author_login=commit.author.login if commit.author else None,
                )
                for commit in answer.commits
            ],
        )

    async def _look(self, path: str, params: dict[str, str] | None = None) -> httpx.Response | None:
        """One GET, not retried: an answer, or None for anything else. For checks
        whose failure only means sending again."""
        try:
            response = await self._http.get(path, params=params)
        except httpx.TransportError:
            return None
        return response if response.is_success else None

    def _redacted(self, text: str) -> str:
        # GitHub never echoes a token, but a proxy's error page might.
        secret = self._token.get_secret_value()
        return text.replace(secret, "<redacted>") if secret else text

    def _parsed(self, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as error:
            where = f"{response.request.method} {response.request.url.path}"
            raise GitHubError(
                self._redacted(
                    f"GitHub answered {where} with an unexpected body: "
                    f"{error.error_count()} problem(s), first {error.errors()[0]['loc']}"
                ),
                response.status_code,
            ) from None

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        may_be_absent: bool = False,
        landed: Callable[[], Awaitable[httpx.Response | None]] | None = None,
    ) -> httpx.Response:
        """One call, retried as `decide` says. A refusal raises `GitHubError`, but a
        404 is returned as it is when `may_be_absent`. Before a POST goes again after
        an attempt whose effect is unknown, `landed` looks for what that attempt
        made: an answer standing for the lost one, or None to send again."""
        where = f"{method} {path}"
        for attempt in range(1, self.attempts + 1):
            response: httpx.Response | None = None
            try:
                response = await self._http.request(method, path, json=body)
                outcome = Outcome(
                    response.status_code,
                    response.headers,
                    f"{response.status_code} {response.reason_phrase}".strip(),
                )
            except httpx.TimeoutException as error:
                sent = not isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout)
                outcome = Outcome(
                    None, problem=f"no answer within {self.timeout:g} s", effect_unknown=sent
                )
            except httpx.TransportError as error:
                said = str(error).rstrip(".")
                problem = f"{type(error).__name__}: {said}" if said else type(error).__name__
                sent = not isinstance(error, httpx.ConnectError)
                outcome = Outcome(None, problem=problem, effect_unknown=sent)
            decision = decide(
                outcome,
                attempt,
                attempts=self.attempts,
                longest_wait=self.longest_wait,
                now=time.time(),
            )
            if decision.action == "give_up":
                log.warning("GitHub: %s: giving up: %s", where, self._redacted(decision.reason))
                raise GitHubUnavailable(self._redacted(decision.reason), outcome.status)
            if decision.action == "retry":
                log.warning(
                    "GitHub: %s: %s; attempt %d of %d, next in %.1f s",
                    where,
                    self._redacted(decision.reason),
                    attempt,
                    self.attempts,
                    decision.wait,
                )
                await self._sleep(decision.wait)
                if outcome.effect_unknown and landed is not None:
                    found = await landed()
                    if found is not None:
                        log.warning(
                            "GitHub: %s: the lost attempt had landed; not sent again", where
                        )
                        return found
                continue
            assert response is not None
            if response.is_success:
                return response
            if response.status_code == 404 and may_be_absent:
                return response
            raise GitHubError(
                self._redacted(
                    f"GitHub answered {response.status_code} on {where}: {_refusal_text(response)}"
                ),
                response.status_code,
            )
        raise AssertionError("unreachable: the last attempt answers or gives up")
