"""What a deployment's progress message shows, built from the event stream.

`apply` is pure: a view and one event (and the request's record, when the event
changed the request) give the next view. The consumer in `bot.progress` stores views
in Redis, so a restarted bot carries on from the same picture.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from deploy.events import (
    DeployFinished,
    DeployStarted,
    Event,
    Metrics,
    PhaseFailure,
    PhaseFinished,
    PhaseStarted,
    RequestChanged,
    RollbackFinished,
    RollbackStarted,
)
from deploy.pipeline import DEPLOY_PHASES, ROLLBACK_PHASES
from deploy.probes import Figures
from jobs.records import FINAL, DeploymentRecord, Origin

PhaseState = Literal["pending", "running", "done", "failed"]
METRICS_KEPT = 2_000  # intervals of one stability window kept for the outcome hook
# Until a request is decided its approval card speaks for it; the progress message
# (which that card becomes) starts once it is queued, refused, rejected or cancelled.
BEFORE_PROGRESS = frozenset({"requested", "awaiting_approval"})


class PhaseView(BaseModel):
    name: str
    state: PhaseState = "pending"
    seconds: float | None = None


class ProgressView(BaseModel):
    deployment: str
    kind: str = "deploy"
    app: str = ""
    env: str = ""
    version: str = ""
    requested_by: str = ""
    approved_by: str | None = None
    origin: Origin | None = None  # the release or CI run that asked (without its notes)
    # Display names for `tg:<id>` people, where the bot saw them (an @username).
    names: dict[str, str] = Field(default_factory=dict)
    state: str = "requested"
    by: str | None = None  # who moved the request to its last state
    note: str = ""
    phases: list[PhaseView] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    interval: int | None = None
    figures: Figures | None = None
    metrics: list[Metrics] = Field(default_factory=list)
    failure: str = ""
    finished: DeployFinished | None = None
    # Where the message is, once there is one; `handle` names it in button payloads.
    chat_id: int | None = None
    message_id: int | None = None
    handle: int | None = None
    # `changes` counts what the view learned; `shown` is the change the chat shows.
    changes: int = 0
    shown: int = 0
    outcome_reported: bool = False
    last_entry: str = "0-0"

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def speaks(self) -> bool:
        """Whether the progress message should say anything yet."""
        return self.state not in BEFORE_PROGRESS


# The events that change what the message says; the rest (steps, output lines,
# warnings) are for the logs and cost the consumer no more than an acknowledgement.
SHOWN = (
    RequestChanged,
    DeployStarted,
    PhaseStarted,
    PhaseFinished,
    PhaseFailure,
    Metrics,
    RollbackStarted,
    RollbackFinished,
    DeployFinished,
)


def new_view(deployment: str, record: DeploymentRecord | None) -> ProgressView:
    view = ProgressView(deployment=deployment)
    if record is not None:
        view = refresh(view, record)
        plan = ROLLBACK_PHASES if record.kind == "rollback" else DEPLOY_PHASES
        view.phases = [PhaseView(name=name) for name, _ in plan]
    return view


def refresh(view: ProgressView, record: DeploymentRecord) -> ProgressView:
    """What the request's record knows better than the events: the people, the version."""
    view.kind, view.app, view.env = record.kind, record.app, record.env
    view.version = record.version
    view.requested_by, view.approved_by = record.requested_by, record.approved_by
    if record.origin is not None:  # the notes stay on the card; the link is enough here
        view.origin = record.origin.model_copy(update={"notes": ""})
    if record.deployment is not None and not view.hosts:
        view.hosts = list(record.deployment.hosts)
    return view


def later(entry: str, than: str) -> bool:
    """Stream ids compare as (milliseconds, sequence)."""
    a, b = entry.split("-"), than.split("-")
    return (int(a[0]), int(a[1])) > (int(b[0]), int(b[1]))


def apply(view: ProgressView, event: Event, record: DeploymentRecord | None = None) -> bool:
    """Fold `event` into `view`; True when the message would read differently."""
    if record is not None:
        refresh(view, record)
    match event:
        case RequestChanged():
            view.state, view.by = event.state, event.by
            view.app, view.env, view.version = event.app, event.env, event.version
            last = record.transitions[-1] if record and record.transitions else None
            view.note = last.note if last and last.state == event.state else ""
        case DeployStarted():
            view.hosts = list(event.hosts)
            view.app = event.app or view.app
            view.version = event.version
        case PhaseStarted() if event.phase:
            _phase(view, event.phase).state = "running"
        case PhaseFinished() if event.phase:
            phase = _phase(view, event.phase)
            phase.state, phase.seconds = "done", event.seconds
        case PhaseFailure() if event.phase:
            _phase(view, event.phase).state = "failed"
            view.failure = event.report.lines()[0]
        case Metrics():
            view.interval, view.figures = event.interval, event.figures
            view.metrics = [*view.metrics, event][-METRICS_KEPT:]
        case RollbackStarted():
            _phase(view, "rollback").state = "running"
        case RollbackFinished():
            phase = _phase(view, "rollback")
            phase.state, phase.seconds = "done", event.seconds
        case DeployFinished():
            view.finished = event
            for phase in view.phases:
                phase.seconds = event.phases.get(phase.name, phase.seconds)
                if phase.state == "running":  # it ended with the deployment
                    phase.state = "failed" if event.failure else "done"
            if event.failure and not view.failure:
                view.failure = event.failure.lines()[0]
        case _:
            return False  # steps, output lines and warnings are for the logs
    return True


def _phase(view: ProgressView, name: str) -> PhaseView:
    for phase in view.phases:
        if phase.name == name:
            return phase
    phase = PhaseView(name=name)
    view.phases.append(phase)
    return phase
