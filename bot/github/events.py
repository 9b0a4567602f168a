"""GitHub's webhook payloads, and what Greenlight makes of each: pure functions.

`triage` reads a delivery (its event name and JSON body) against the specs and says
what to do: work to queue (a release or a CI build to deploy, a waiting request's
release edited or withdrawn), a delivery to ignore (a draft, another branch, an event
Greenlight does not act on), or one to refuse (a repository no spec names, a tag that
is not a version). Everything a payload carries is checked here, before anything is
queued: the tag as a version, the commit as a hex id, the CI image tag as a docker tag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploy.spec import Spec, app_for_repository
from deploy.versions import InvalidVersion, check_tag, ci_version, parse_version
from jobs.records import NOTES_KEPT, Origin


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Account(_Payload):
    login: str = Field(max_length=100)


class Repository(_Payload):
    full_name: str = Field(max_length=201)
    html_url: str = ""


class Release(_Payload):
    id: int
    tag_name: str = Field(max_length=255)
    name: str | None = None
    body: str | None = None
    draft: bool = False
    prerelease: bool = False
    html_url: str = ""
    author: Account | None = None


class ReleaseEvent(_Payload):
    action: str
    release: Release
    repository: Repository
    sender: Account | None = None


class WorkflowRun(_Payload):
    id: int
    name: str | None = None
    path: str = ""
    head_branch: str | None = None
    head_sha: str
    event: str = ""
    status: str = ""
    conclusion: str | None = None
    html_url: str = ""
    created_at: datetime
    run_started_at: datetime | None = None


class Workflow(_Payload):
    name: str = ""
    path: str = ""


class WorkflowRunEvent(_Payload):
    action: str
    workflow_run: WorkflowRun
    workflow: Workflow | None = None
    repository: Repository
    sender: Account | None = None


# -- what to do ------------------------------------------------------------------------


class Deploy(BaseModel):
    """Ask the jobs API for this deployment and put its card in the ops chat."""

    action: Literal["deploy"] = "deploy"
    app: str
    env: str
    version: str
    tag: str | None = None  # the image tag, when not the version's (CI)
    who: str
    origin: Origin


class Edited(BaseModel):
    """A waiting request's release has new text: the card shows it."""

    action: Literal["edited"] = "edited"
    app: str
    who: str
    origin: Origin


class Withdrawn(BaseModel):
    """A waiting request's release was deleted or unpublished: the request ends."""

    action: Literal["withdrawn"] = "withdrawn"
    app: str
    who: str
    repository: str
    release_id: int
    why: str


Work = Deploy | Edited | Withdrawn


class Ignore(BaseModel):
    reason: str


class Refuse(BaseModel):
    reason: str


Triage = Work | Ignore | Refuse
RELEASE_WITHDRAWN = {"deleted": "deleted", "unpublished": "unpublished"}


def triage(event: str, payload: dict[str, object], specs: dict[str, Spec]) -> Triage:
    """What a delivery of `event` with this body asks of Greenlight."""
    try:
        if event == "release":
            return _release(ReleaseEvent.model_validate(payload), specs)
        if event == "workflow_run":
            return _workflow_run(WorkflowRunEvent.model_validate(payload), specs)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return Refuse(reason=f"not a {event} payload GitHub sends: {where}: {first['msg']}")
    return Ignore(reason=f"{event!r} is not an event Greenlight acts on")


def _release(delivery: ReleaseEvent, specs: dict[str, Spec]) -> Triage:
    repo = delivery.repository.full_name
    spec = app_for_repository(specs, repo)
    if spec is None:
        return Refuse(reason=f"no spec names the repository {repo!r} (github.repository)")
    assert spec.github is not None
    release = delivery.release
    who = _who(delivery.sender)
    if delivery.action in RELEASE_WITHDRAWN:
        return Withdrawn(
            app=spec.app,
            who=who,
            repository=repo,
            release_id=release.id,
            why=f"the release {release.tag_name} was {RELEASE_WITHDRAWN[delivery.action]} on "
            "GitHub",
        )
    if delivery.action == "edited":
        return Edited(app=spec.app, who=who, origin=_release_origin(repo, release))
    if delivery.action != "published":
        # GitHub also sends created, released and prereleased around a publication;
        # acting on `published` alone deploys each release once.
        return Ignore(reason=f"release {delivery.action!r}: Greenlight acts on published")
    trigger = spec.github.release
    if trigger is None:
        return Ignore(reason=f"{spec.app} does not deploy releases (github.release)")
    if release.draft:
        return Ignore(reason=f"the release {release.tag_name} is a draft")
    try:
        version = parse_version(release.tag_name)
    except InvalidVersion as exc:
        return Refuse(reason=f"the release's tag is not a version: {exc}")
    env = trigger.environment
    if release.prerelease:
        if trigger.prereleases == "ignore":
            return Ignore(reason=f"{version} is a prerelease; {spec.app} ignores those")
        env = trigger.prereleases
    return Deploy(
        app=spec.app,
        env=env,
        version=version.tag,
        who=_who(release.author or delivery.sender),
        origin=_release_origin(repo, release),
    )


def _release_origin(repo: str, release: Release) -> Origin:
    return Origin(
        kind="release",
        repository=repo,
        ref=release.tag_name,
        title=release.name or release.tag_name,
        url=release.html_url,
        author=release.author.login if release.author else "",
        notes=(release.body or "")[:NOTES_KEPT],
        release_id=release.id,
    )


def _workflow_run(delivery: WorkflowRunEvent, specs: dict[str, Spec]) -> Triage:
    repo = delivery.repository.full_name
    spec = app_for_repository(specs, repo)
    if spec is None:
        return Refuse(reason=f"no spec names the repository {repo!r} (github.repository)")
    assert spec.github is not None
    trigger = spec.github.ci
    run = delivery.workflow_run
    if trigger is None:
        return Ignore(reason=f"{spec.app} does not deploy CI builds (github.ci)")
    names = {run.name or "", run.path.rsplit("/", 1)[-1], run.path}
    if delivery.workflow is not None:
        names |= {delivery.workflow.name, delivery.workflow.path.rsplit("/", 1)[-1]}
    if trigger.workflow not in names - {""}:
        return Ignore(reason=f"workflow {run.name or run.path!r} is not {trigger.workflow!r}")
    if delivery.action != "completed":
        return Ignore(reason=f"workflow_run {delivery.action!r}: Greenlight acts on completed")
    if run.head_branch != trigger.branch:
        return Ignore(reason=f"a run on {run.head_branch!r}, not {trigger.branch!r}")
    if run.conclusion != "success":
        return Ignore(reason=f"the run's conclusion is {run.conclusion!r}, not success")
    try:
        version = ci_version(run.head_sha, run.run_started_at or run.created_at)
        tag = check_tag(trigger.tag.format(sha=run.head_sha, sha7=run.head_sha[:7]))
    except InvalidVersion as exc:
        return Refuse(reason=str(exc))
    return Deploy(
        app=spec.app,
        env=trigger.environment,
        version=version.tag,
        tag=tag,
        who=_who(delivery.sender),
        origin=Origin(
            kind="ci",
            repository=repo,
            ref=run.head_sha,
            title=run.name or trigger.workflow,
            url=run.html_url,
            author=delivery.sender.login if delivery.sender else "",
        ),
    )


def _who(account: Account | None) -> str:
    return f"github:{account.login}" if account is not None else "github"
