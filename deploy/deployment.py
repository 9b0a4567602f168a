"""The deployment record: everything the phases learn, in one serializable model.

Phases read and update it; the CLI keeps it in memory, the jobs layer saves it in
Redis between phase jobs, so a phase never trusts process memory from another.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from deploy.spec import Color
from deploy.state import ColorRecord, now

Outcome = Literal["pending", "live", "rolled_back", "not_switched", "refused", "unknown"]

EXIT_CODES: dict[Outcome, int] = {
    "live": 0,
    "rolled_back": 1,
    "not_switched": 1,
    "refused": 2,
    "unknown": 3,
    "pending": 3,
}


class BackupRecord(BaseModel):
    path: str
    size: int
    sha256: str
    total_kb: int


class FailureReport(BaseModel):
    phase: str
    message: str
    host: str | None = None
    step: str | None = None
    command: str | None = None
    exit_status: int | None = None
    output: list[str] = Field(default_factory=list)
    container_logs: list[str] = Field(default_factory=list)
    app_fault: bool = False
    # When the stability window saw its first failing answer (epoch seconds), if it did.
    first_error_at: float | None = None

    def lines(self) -> list[str]:
        head = f"{self.phase} failed" + (f" on {self.host}" if self.host else "")
        out = [f"{head}: {self.message}"]
        if self.command:
            status = f" (exit {self.exit_status})" if self.exit_status is not None else ""
            out.append(f"command{status}: {self.command}")
        if self.output:
            out.append("last output:")
            out += [f"  {line}" for line in self.output]
        if self.container_logs:
            out.append("container logs:")
            out += [f"  {line}" for line in self.container_logs]
        return out


class HostProgress(BaseModel):
    name: str
    epoch: int | None = None
    locked: bool = False
    planned: bool = False
    live_before: ColorRecord | None = None
    # What the target colour held before, when good: put back (stopped) if we fail.
    idle_before: ColorRecord | None = None
    upstream_before: str = ""
    target: Color | None = None
    staged: bool = False
    verified: bool = False
    switched: bool = False
    rolled_back: bool = False
    backup: BackupRecord | None = None


class Deployment(BaseModel):
    id: str
    kind: Literal["deploy", "rollback"] = "deploy"
    app: str = ""
    env: str
    version: str
    # The image tag when it is not the version's own: a CI build's `sha-1a2b3c4`.
    tag: str = ""
    who: str
    # Identifies this run to its host locks; the id alone repeats within a second.
    token: str = Field(default_factory=lambda: uuid.uuid4().hex)
    digest: str = ""
    image: str = ""
    # A release of several images: name -> ref@digest, each pulled and checked by digest.
    images: dict[str, str] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None
    switched_at: datetime | None = None
    hosts: dict[str, HostProgress] = Field(default_factory=dict)
    phases: dict[str, float] = Field(default_factory=dict)
    # The cursor: phases that finished, in order (`phases` also times failed ones). A
    # driver that runs one phase per job resumes after the last one here.
    completed: list[str] = Field(default_factory=list)
    # What the deployment was planned from: a later phase refuses another spec.
    spec_hash: str = ""
    # Seconds each phase may take, from the spec's own timeouts (job timeouts too).
    budgets: dict[str, float] = Field(default_factory=dict)
    outcome: Outcome = "pending"
    failure: FailureReport | None = None
    # The seed's emergency switch: the test hook is not run, and history says so.
    skip_tests: bool = False
    notes: list[str] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    @property
    def previous_version(self) -> str | None:
        versions = {h.live_before.version for h in self.hosts.values() if h.live_before}
        return versions.pop() if len(versions) == 1 else None
