"""The GitHub client against the GitHub stand-in: deployments and their statuses with
GitHub's headers, release notes, and what a GitHub that fails, rate-limits, is slow
or is down comes to (bounded retries, then a clear `GitHubUnavailable`), with the
token nowhere but in the Authorization header. The retry policy is also pinned as
data."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.github.client import Commit, GitHubClient, GitHubError, GitHubUnavailable, Release
from bot.github.policy import Decision, Outcome, decide
from tests.github_standin import GitHubStandIn, running_github

TOKEN = "ghp_PLANTED0token0Greenlight0must0never0show"  # planted: searched for below
REVOKED = "ghp_PLANTED1revoked0token0never0shown0either"
REPO = "acme/shop"
GREENLIGHT_ID = "production-v1.0.1-20261201_093000"
NOW = 1_796_112_000.0  # 2026-12-01 08:00:00 UTC


@pytest.fixture
async def github() -> AsyncIterator[GitHubStandIn]:
    async with running_github(TOKEN) as standin:
        standin.add_repo(REPO)
        yield standin


class Waits(list[float]):
    """A sleep for the client that records each wait; `real` ones are slept too."""

    def __init__(self, real: bool = False) -> None:
        super().__init__()
        self.real = real

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(seconds if self.real else 0)


def client_for(
    github: GitHubStandIn, waits: Waits | None = None, token: str = TOKEN, **options: Any
) -> GitHubClient:
    return GitHubClient(
        github.url, SecretStr(token), sleep=Waits() if waits is None else waits, **options
    )


async def deploy(client: GitHubClient) -> int:
    return await client.create_deployment(
        REPO,
        ref="v1.0.1",
        environment="production",
        payload={"greenlight_id": GREENLIGHT_ID},
        description="Greenlight: v1.0.1 to production",
        production=True,
    )


async def post(client: GitHubClient, deployment_id: int, state: Any) -> None:
    await client.create_status(
        REPO,
        deployment_id,
        state=state,
        log_url="https://t.me/c/100500/42",
        environment_url="https://shop.example.com",
        description=f"Greenlight: {state}",
    )


def utc_clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


# A deployment and its statuses -------------------------------------------------------


async def test_a_deployment_and_its_statuses_reach_github_with_its_headers(
    github: GitHubStandIn,
) -> None:
    async with client_for(github) as client:
        deployment_id = await deploy(client)
        for state in ("in_progress", "success"):
            await post(client, deployment_id, state)

    deployment = github.deployment_for(REPO, greenlight_id=GREENLIGHT_ID)
    assert deployment.id == deployment_id
    assert (deployment.ref, deployment.environment) == ("v1.0.1", "production")
    assert deployment.production_environment and not deployment.transient_environment
    assert github.statuses(REPO, deployment_id) == ["in_progress", "success"]
    assert deployment.statuses[-1].environment_url == "https://shop.example.com"
    assert deployment.statuses[-1].log_url == "https://t.me/c/100500/42"

    assert [r.status for r in github.requests] == [201, 201, 201]
    assert github.without_accept() == []
    for request in github.requests:
        assert request.headers["authorization"] == "<redacted>"  # and the stand-in took it
        assert request.headers["x-github-api-version"] == "2022-11-28"
        assert request.headers["user-agent"] == "greenlight"
    created = github.requests[0].body
    assert isinstance(created, dict)
    assert created["auto_merge"] is False and created["required_contexts"] == []


async def test_a_long_status_description_is_cut_to_githubs_140_characters(
    github: GitHubStandIn,
) -> None:
    async with client_for(github) as client:
        deployment_id = await deploy(client)
        await client.create_status(
            REPO,
            deployment_id,
            state="failure",
            log_url=None,
            environment_url=None,
            description="smoke: GET /checkout answered 502 " * 10,
        )
    (status,) = github.repos[REPO].deployments[deployment_id].statuses
    assert len(status.description) == 140 and status.description.endswith("…")


async def test_two_5xx_are_retried_and_each_status_arrives_once(github: GitHubStandIn) -> None:
    waits = Waits()
    async with client_for(github, waits) as client:
        deployment_id = await deploy(client)
        github.fail(2, status=502, path=f"/repos/{REPO}/deployments/{deployment_id}/statuses")
        await post(client, deployment_id, "in_progress")
        await post(client, deployment_id, "success")

    assert waits == [0.5, 1.0]
    assert github.statuses(REPO, deployment_id) == ["in_progress", "success"]
    assert [r.status for r in github.requests] == [201, 502, 502, 201, 201]


async def test_a_github_failing_for_good_gives_up_after_the_attempts(
    github: GitHubStandIn,
) -> None:
    waits = Waits()
    github.fail(100, status=502)
    async with client_for(github, waits, attempts=4) as client:
        with pytest.raises(GitHubUnavailable) as raised:
            await deploy(client)

    assert str(raised.value) == "GitHub did not answer after 4 attempts: 502 Bad Gateway"
    assert waits == [0.5, 1.0, 2.0]
    assert len(github.requests) == 4
    assert github.repos[REPO].deployments == {}


async def test_a_deployment_whose_answer_was_lost_is_found_not_made_twice(
    github: GitHubStandIn,
) -> None:
    github.lose_answers(1, path=f"/repos/{REPO}/deployments")
    waits = Waits()
    async with client_for(github, waits) as client:
        deployment_id = await deploy(client)

    assert list(github.repos[REPO].deployments) == [deployment_id]
    assert [(r.method, r.status) for r in github.requests] == [
        ("POST", 0),  # made, but the answer never came back
        ("GET", 200),
        ("GET", 200),
    ]
    assert github.requests[1].query == {"ref": "v1.0.1", "environment": "production"}
    assert waits == [0.5]


async def test_a_status_whose_answer_was_lost_is_not_posted_twice(github: GitHubStandIn) -> None:
    async with client_for(github) as client:
        deployment_id = await deploy(client)
        await post(client, deployment_id, "in_progress")
        github.lose_answers(1, path=f"/repos/{REPO}/deployments/{deployment_id}/statuses")
        await post(client, deployment_id, "success")
        github.lose_answers(1, path=f"/repos/{REPO}/deployments/{deployment_id}/statuses")
        github.fail(1, status=502, path=f"/repos/{REPO}/deployments/{deployment_id}/statuses")
        await post(client, deployment_id, "inactive")  # 502, then made but lost

    statuses = [r for r in github.requests if r.method == "POST" and "statuses" in r.path]
    assert [r.status for r in statuses] == [201, 0, 502, 0]

    assert github.statuses(REPO, deployment_id) == ["in_progress", "success", "inactive"]


# Rate limits -----------------------------------------------------------------------


async def test_a_rate_limit_ending_in_a_second_is_waited_out(github: GitHubStandIn) -> None:
    # The stand-in refuses whatever comes before the reset, so an early retry shows.
    github.rate_limit(5, reset_in=1)
    waits = Waits(real=True)
    started = time.monotonic()
    async with client_for(github, waits) as client:
        deployment_id = await deploy(client)

    assert 0.9 <= time.monotonic() - started < 3.0
    assert len(waits) == 1
    assert [r.status for r in github.requests] == [403, 201]
    assert github.deployment_for(REPO, greenlight_id=GREENLIGHT_ID).id == deployment_id


async def test_a_rate_limit_ending_far_ahead_gives_up_at_once_naming_the_reset(
    github: GitHubStandIn,
) -> None:
    github.rate_limit(reset_in=3600)
    waits = Waits()
    async with client_for(github, waits, longest_wait=60) as client:
        with pytest.raises(GitHubUnavailable) as raised:
            await deploy(client)

    (refused,) = github.answered(403)
    reset = float(refused.answer_headers["x-ratelimit-reset"])
    assert refused.answer_headers["x-ratelimit-remaining"] == "0"
    assert str(raised.value) == (
        f"GitHub is rate-limiting until {utc_clock(reset)} (403, x-ratelimit-remaining 0)"
    )
    assert waits == []
    assert len(github.requests) == 1


async def test_a_secondary_rate_limit_is_waited_out_as_retry_after_says(
    github: GitHubStandIn,
) -> None:
    github.secondary_limit(5, retry_after=1)
    waits = Waits(real=True)
    async with client_for(github, waits) as client:
        assert await client.release_by_tag(REPO, "v9.9.9") is None

    assert waits == [1.0]
    assert [r.status for r in github.requests] == [429, 404]


# Refusals another try cannot change --------------------------------------------------


async def test_a_bad_token_is_a_401_at_once_without_retries(github: GitHubStandIn) -> None:
    waits = Waits()
    async with client_for(github, waits, token=REVOKED) as client:
        with pytest.raises(GitHubError) as raised:
            await deploy(client)

    assert not isinstance(raised.value, GitHubUnavailable)
    assert raised.value.status == 401
    assert str(raised.value) == (
        f"GitHub answered 401 on POST /repos/{REPO}/deployments: Bad credentials"
    )
    assert waits == [] and len(github.requests) == 1


async def test_the_standin_refuses_what_github_refuses(github: GitHubStandIn) -> None:
    headers = {"Authorization": f"token {TOKEN}", "Accept": "application/vnd.github+json"}
    base = f"{github.url}/repos/{REPO}/deployments"
    async with httpx.AsyncClient(headers=headers) as http:
        created = await http.post(base, json={"ref": "v1.0.1", "payload": "{}"})
        deployment = created.json()
        statuses = f"{base}/{deployment['id']}/statuses"
        bad_state = await http.post(statuses, json={"state": "done"})
        too_long = await http.post(statuses, json={"state": "success", "description": "x" * 141})
        no_ref = await http.post(base, json={"environment": "production"})
        unknown = await http.post(f"{base}/999/statuses", json={"state": "success"})
        other_repo = await http.get(f"{github.url}/repos/acme/other/releases/tags/v1")
        old_version = await http.get(base, headers={"X-GitHub-Api-Version": "2021-01-01"})
        no_token = await http.get(base, headers={"Authorization": ""})
        plain = await http.get(base, headers={"Accept": "application/json"})

    assert created.status_code == 201
    assert deployment["environment"] == "production" and deployment["payload"] == {}
    assert deployment["statuses_url"] == f"{base}/{deployment['id']}/statuses"
    assert bad_state.status_code == 422
    assert bad_state.json()["message"] == "Validation Failed"
    assert bad_state.json()["errors"][0]["field"] == "state"
    assert too_long.status_code == 422
    assert no_ref.status_code == 422
    assert no_ref.json()["errors"] == [
        {"resource": "Deployment", "field": "ref", "code": "missing_field"}
    ]
    assert (unknown.status_code, other_repo.status_code) == (404, 404)
    assert other_repo.json()["message"] == "Not Found"
    assert old_version.status_code == 400
    assert no_token.status_code == 401
    assert plain.status_code == 200 and github.without_accept() == [github.requests[-1]]
    assert created.headers["x-ratelimit-limit"] == "5000"
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in (created, bad_state)]
    assert remaining[0] > remaining[1]
    assert github.statuses(REPO, deployment["id"]) == []


async def test_a_state_github_does_not_know_is_its_422_in_words(github: GitHubStandIn) -> None:
    waits = Waits()
    async with client_for(github, waits) as client:
        deployment_id = await deploy(client)
        with pytest.raises(GitHubError) as raised:
            await post(client, deployment_id, "done")

    assert raised.value.status == 422
    assert str(raised.value) == (
        f"GitHub answered 422 on POST /repos/{REPO}/deployments/{deployment_id}/statuses: "
        "Validation Failed (state is not included in the list)"
    )
    assert waits == []


# A slow or absent GitHub -----------------------------------------------------------


async def test_a_github_slower_than_the_timeout_is_retried_then_given_up(
    github: GitHubStandIn,
) -> None:
    github.slow(0.6)
    waits = Waits()
    async with client_for(github, waits, timeout=0.2, attempts=2) as client:
        started = time.monotonic()
        with pytest.raises(GitHubUnavailable) as raised:
            await client.release_by_tag(REPO, "v1.0.1")

    assert str(raised.value) == "GitHub did not answer after 2 attempts: no answer within 0.2 s"
    assert time.monotonic() - started < 1.0
    assert waits == [0.5]
    assert len(github.requests) == 2


async def test_a_github_that_is_down_is_given_up_on_and_used_again_when_back(
    github: GitHubStandIn,
) -> None:
    github.add_release(REPO, "v1.0.1", name="v1.0.1", body="Fixes the checkout")
    waits = Waits()
    async with client_for(github, waits, attempts=3) as client:
        assert await client.release_by_tag(REPO, "v1.0.1") is not None  # a kept-alive connection
        await github.down()
        with pytest.raises(GitHubUnavailable) as raised:
            await client.release_by_tag(REPO, "v1.0.1")
        await github.up()
        assert await client.release_by_tag(REPO, "v1.0.1") is not None

    assert str(raised.value).startswith("GitHub did not answer after 3 attempts: ")
    assert waits == [0.5, 1.0]


# Release notes ---------------------------------------------------------------------


async def test_a_release_is_found_by_its_tag_even_an_odd_one(github: GitHubStandIn) -> None:
    tag = "v1.0.1+build/7 #rc"
    github.add_release(REPO, tag, name="Spring sale", body="- faster checkout", author="dana")
    github.add_release(REPO, "v1.0.0", prerelease=True)  # no name, no notes
    github.add_release(REPO, "v1.1.0", draft=True)
    async with client_for(github) as client:
        release = await client.release_by_tag(REPO, tag)
        bare = await client.release_by_tag(REPO, "v1.0.0")
        draft = await client.release_by_tag(REPO, "v1.1.0")
        missing = await client.release_by_tag(REPO, "v2.0.0")

    assert release == Release(
        tag_name=tag,
        name="Spring sale",
        body="- faster checkout",
        html_url=f"https://github.com/{REPO}/releases/tag/{tag}",
        author_login="dana",
        draft=False,
        prerelease=False,
    )
    assert bare is not None and (bare.name, bare.body, bare.prerelease) == ("", "", True)
    assert draft is None and missing is None  # by tag, GitHub finds published releases only
    assert github.requests[0].path == f"/repos/{REPO}/releases/tags/v1.0.1%2Bbuild%2F7%20%23rc"


async def test_the_commits_between_two_tags(github: GitHubStandIn) -> None:
    github.add_commits(
        REPO,
        "v1.0.0",
        "v1.0.1",
        [("a" * 40, "Faster checkout\n\nCloses #12", "dana"), ("b" * 40, "Fix typo", None)],
    )
    async with client_for(github) as client:
        comparison = await client.compare(REPO, "v1.0.0", "v1.0.1")
        unknown = await client.compare(REPO, "v1.0.0", "v9")

    assert comparison is not None
    assert comparison.html_url == f"https://github.com/{REPO}/compare/v1.0.0...v1.0.1"
    assert comparison.total_commits == 2
    assert comparison.commits == [
        Commit(sha="a" * 40, message="Faster checkout\n\nCloses #12", author_login="dana"),
        Commit(sha="b" * 40, message="Fix typo", author_login=None),
    ]
    assert unknown is None


def test_a_repository_must_read_owner_slash_name_and_a_tag_be_a_name() -> None:
    async def ask(repo: str, tag: str = "v1") -> None:
        async with GitHubClient("http://127.0.0.1:9", SecretStr(TOKEN)) as client:
            await client.release_by_tag(repo, tag)

    for repo in ("shop", "acme/shop/extra", "../shop", "acme/..", "acme/sh op"):
        with pytest.raises(ValueError, match="owner/name"):
            asyncio.run(ask(repo))
    for tag in ("", ".", ".."):
        with pytest.raises(ValueError, match="not a name"):
            asyncio.run(ask(REPO, tag))


# The token -------------------------------------------------------------------------


async def test_the_token_appears_in_no_error_log_line_or_repr(
    github: GitHubStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with client_for(github, attempts=2) as client:
        github.fail(2, status=503)
        github.rate_limit(reset_in=3600, path=f"/repos/{REPO}/releases")
        for call in (deploy(client), client.release_by_tag(REPO, "v1"), post(client, 99, "done")):
            with pytest.raises(GitHubError) as raised:
                await call
            errors.append(raised.value)
        await github.down()
        with pytest.raises(GitHubUnavailable) as raised:
            await deploy(client)
        errors.append(raised.value)
        seen = [repr(client), str(vars(client))]
    async with client_for(github, token=REVOKED, attempts=1) as wrong:
        await github.up()
        with pytest.raises(GitHubError) as raised:
            await deploy(wrong)
        errors.append(raised.value)

    assert [type(e).__name__ for e in errors] == [
        "GitHubUnavailable",
        "GitHubUnavailable",
        "GitHubError",
        "GitHubUnavailable",
        "GitHubError",
    ]
    for error in errors:
        seen += [str(error), repr(error), "".join(traceback.format_exception(error))]
    seen += [caplog.text] + [str(record.args) for record in caplog.records]
    assert "attempt 1 of 2, next in 0.5 s" in caplog.text  # retries are logged, at WARNING
    assert {r.levelname for r in caplog.records if r.name == "greenlight.bot.github"} == {"WARNING"}
    for text in seen:
        assert TOKEN not in text and REVOKED not in text
    assert "Bearer" not in caplog.text


# The retry policy, as data ---------------------------------------------------------

RATE_LIMITED = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}
FAR_RESET = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 3600)}


@pytest.mark.parametrize(
    ("outcome", "attempt", "decision"),
    [
        (Outcome(201), 1, Decision("answer")),
        (Outcome(404), 1, Decision("answer")),
        (Outcome(422), 1, Decision("answer")),
        (Outcome(401), 1, Decision("answer")),
        (Outcome(403), 1, Decision("answer")),  # no rate-limit headers: a permission refusal
        (Outcome(502, problem="502 Bad Gateway"), 1, Decision("retry", 0.5, "502 Bad Gateway")),
        (Outcome(500, problem="500 x"), 2, Decision("retry", 1.0, "500 x")),
        (Outcome(None, problem="no answer"), 3, Decision("retry", 2.0, "no answer")),
        (
            Outcome(None, problem="no answer"),
            4,
            Decision("give_up", reason="GitHub did not answer after 4 attempts: no answer"),
        ),
        (
            Outcome(403, RATE_LIMITED),
            1,
            Decision("retry", 30.0, "rate-limited (403, x-ratelimit-remaining 0)"),
        ),
        (
            Outcome(429, RATE_LIMITED),
            1,
            Decision("retry", 30.0, "rate-limited (429, x-ratelimit-remaining 0)"),
        ),
        (
            Outcome(403, FAR_RESET),
            1,
            Decision(
                "give_up",
                reason="GitHub is rate-limiting until 09:00:00 UTC (403, x-ratelimit-remaining 0)",
            ),
        ),
        (
            Outcome(429, {"retry-after": "7"}),
            1,
            Decision("retry", 7.0, "rate-limited (429, retry-after 7)"),
        ),
        (
            Outcome(403, {"retry-after": "61"}),
            1,
            Decision(
                "give_up", reason="GitHub is rate-limiting until 08:01:01 UTC (403, retry-after 61)"
            ),
        ),
        (Outcome(429), 1, Decision("retry", 60.0, "rate-limited (429 without retry-after)")),
        (
            Outcome(429, {"retry-after": "1"}),
            4,
            Decision(
                "give_up",
                reason="GitHub was still rate-limiting after 4 attempts (429, retry-after 1)",
            ),
        ),
        (
            Outcome(403, {"x-ratelimit-reset": str(int(NOW) - 5), "x-ratelimit-remaining": "0"}),
            1,
            Decision("retry", 0.0, "rate-limited (403, x-ratelimit-remaining 0)"),
        ),
    ],
)
def test_the_retry_policy(outcome: Outcome, attempt: int, decision: Decision) -> None:
    assert decide(outcome, attempt, attempts=4, longest_wait=60.0, now=NOW) == decision


def test_a_backoff_longer_than_the_longest_wait_gives_up_instead() -> None:
    outcome = Outcome(503, problem="503 Service Unavailable")
    assert decide(outcome, 3, attempts=10, longest_wait=1.5, now=NOW) == Decision(
        "give_up", reason="GitHub did not answer after 3 attempts: 503 Service Unavailable"
    )
