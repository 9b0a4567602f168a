"""Progress events: the one type every phase emits, and the sinks that receive them.

The engine never prints or talks to chat; it hands events to a sink. The CLI prints
them, the jobs layer appends them to a Redis stream, tests collect them in a list.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, Field


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


class Event(BaseModel):
    kind: Kind
    deployment: str
    message: str = ""
    phase: str | None = None
    host: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    at: float = Field(default_factory=time.time)


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
