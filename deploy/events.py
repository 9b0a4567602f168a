"""Progress events: one typed model per kind, and the sinks that receive them.

The engine never prints or talks to chat; it hands events to a sink. The CLI prints
them, the jobs layer appends them to a Redis stream, tests collect them in a list.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from deploy.deployment import FailureReport
from deploy.probes import Figures


class Kind(StrEnum):
    deploy_started = "deploy_started"
    deploy_finished = "deploy_finished"
    phase_started = "phase_started"
    phase_finished = "phase_finished"
    phase_failed = "phase_failed"
    step = "step"
    output = "output"
    metrics = "metrics"
    rollback_started = "rollback_started"
    rollback_finished = "rollback_finished"
    warning = "warning"
    request = "request"


Scalar = str | int | float | bool


class _Event(BaseModel):
    """What every event carries; each kind adds its own typed payload."""

    model_config = ConfigDict(extra="forbid")

    deployment: str
    message: str = ""
    phase: str | None = None
    host: str | None = None
    at: float = Field(default_factory=time.time)


class DeployStarted(_Event):
    kind: Literal[Kind.deploy_started] = Kind.deploy_started
    app: str = ""
    env: str
    version: str
    who: str
    hosts: list[str]
    skip_tests: bool = False


class DeployFinished(_Event):
    kind: Literal[Kind.deploy_finished] = Kind.deploy_finished
    outcome: str
    exit_code: int
    phases: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    failure: FailureReport | None = None
    skip_tests: bool = False


class PhaseStarted(_Event):
    kind: Literal[Kind.phase_started] = Kind.phase_started


class PhaseFinished(_Event):
    kind: Literal[Kind.phase_finished] = Kind.phase_finished
    seconds: float


class PhaseFailure(_Event):
    kind: Literal[Kind.phase_failed] = Kind.phase_failed
    report: FailureReport
    seconds: float | None = None


class Step(_Event):
    """A step done on the way; `facts` are its figures (bytes backed up, MB free...)."""

    kind: Literal[Kind.step] = Kind.step
    facts: dict[str, Scalar] = Field(default_factory=dict)


class Output(_Event):
    """One line a remote command printed."""

    kind: Literal[Kind.output] = Kind.output


class Metrics(_Event):
    """One interval of the stability window."""

    kind: Literal[Kind.metrics] = Kind.metrics
    interval: int
    figures: Figures


class RollbackStarted(_Event):
    kind: Literal[Kind.rollback_started] = Kind.rollback_started
    # Seconds from the stability window's first failing answer to this decision, when
    # the window is what failed.
    detected_in: float | None = None


class RollbackFinished(_Event):
    kind: Literal[Kind.rollback_finished] = Kind.rollback_finished
    seconds: float | None = None


class Warned(_Event):
    kind: Literal[Kind.warning] = Kind.warning


class RequestChanged(_Event):
    """The request's life around the engine's phases, from the jobs layer: requested,
    awaiting approval, queued (approved), awaiting promotion, rejected, cancelled,
    recovered... `state` is the request's new state, `by` who moved it there."""

    kind: Literal[Kind.request] = Kind.request
    state: str
    app: str
    env: str
    version: str
    by: str | None = None


Event = Annotated[
    DeployStarted
    | DeployFinished
    | PhaseStarted
    | PhaseFinished
    | PhaseFailure
    | Step
    | Output
    | Metrics
    | RollbackStarted
    | RollbackFinished
    | Warned
    | RequestChanged,
    Field(discriminator="kind"),
]
EVENTS: TypeAdapter[Event] = TypeAdapter(Event)


def event(kind: Kind, **fields: Any) -> Event:
    """The typed event of that kind; a field the kind does not have is an error."""
    return EVENTS.validate_python({"kind": kind, **fields})


class EventSink(Protocol):
    async def emit(self, event: Event) -> None: ...


class ListSink:
    """Keeps every event; for tests and for building reports."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)


class Redactor:
    """Replaces known secret values in any text that leaves the engine."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def deep(self, value: Any) -> Any:
        """The same for every string inside lists and dicts (figures, reports)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        return value
