"""The jobs layer's Prometheus metrics, and the small functions the code calls.

Each is recorded where it happens: phase durations, rollbacks and detection latency in
the phase job, from the events the engine hands its sink (`EventMetrics`); the end of
every request in `RecordStore.advance`, by whichever process moves it there (a worker
for what the engine concluded, the bot for a rejection); lease refusals in
`Lease.acquire` (the bot's or the CLI's process, which ask for leases). A phase job runs
in an RQ work horse, a fork that lives for one job: `greenlight worker` therefore runs
prometheus-client's multiprocess mode (`jobs.exporter`), and these same definitions
write to its directory there. No gauge is set in a work horse, so nothing needs
`mark_process_dead`.

Labels stay bounded: app, environment, kind, phase, outcome, cause, reason; never a
deployment id or a version.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

from deploy.deployment import FailureReport
from deploy.errors import CANCELLED
from deploy.events import DeployStarted, Event, PhaseFailure, PhaseFinished, RollbackStarted

# Request states after which nothing more happens without a person (`unknown` too).
ENDED = frozenset(
    {"live", "rolled_back", "not_switched", "rejected", "cancelled", "recovered", "refused"}
    | {"unknown"}
)
# Which failing phase caused an automatic rollback. Only a failure once traffic moved
# can: a failed health check or smoke request comes before the switch, tears the new
# colour down and ends `not_switched` (greenlight_deployments_total, and the phase's
# duration with result="failed", say which).
CAUSES = {"monitor": "stability", "switch": "switch", "finalize": "finalize"}
PHASE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
DETECTION_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)

DEPLOYMENTS = Counter(
    "greenlight_deployments",
    "Requests (deployments and rollbacks) that ended, by how they ended.",
    ["app", "env", "kind", "outcome"],
)
PHASE_SECONDS = Histogram(
    "greenlight_phase_duration_seconds",
    "How long each engine phase took, by result (ok, failed, refused).",
    ["app", "env", "phase", "result"],
    buckets=PHASE_BUCKETS,
)
ROLLBACKS = Counter(
    "greenlight_rollbacks",
    "Traffic moved back to the previous release, by cause.",
    ["app", "env", "cause"],
)
DETECTION_SECONDS = Histogram(
    "greenlight_detection_latency_seconds",
    "From the stability window's first failing answer to the rollback decision.",
    ["app", "env"],
    buckets=DETECTION_BUCKETS,
)
LOCK_REFUSALS = Counter(
    "greenlight_lock_refusals",
    "Deployments refused because a lock was held: the Redis lease (busy: another "
    "deployment; locked: a /lock) or a host's deploy lock (held).",
    ["app", "env", "lock", "reason"],
)
QUEUE_WAIT_SECONDS = Histogram(
    "greenlight_queue_wait_seconds",
    "How long a phase job waited in the queue for a free worker.",
    ["app", "env"],
    buckets=WAIT_BUCKETS,
)


def request_ended(app: str, env: str, kind: str, state: str) -> None:
    """A request reached `state`; called once per transition, after it committed."""
    if state not in ENDED:
        return
    DEPLOYMENTS.labels(app, env, kind, state).inc()
    if kind == "rollback" and state == "live":
        ROLLBACKS.labels(app, env, "requested").inc()


def lease_refused(app: str, env: str, reason: str) -> None:
    LOCK_REFUSALS.labels(app, env, "lease", reason).inc()


def host_lock_refused(app: str, env: str) -> None:
    LOCK_REFUSALS.labels(app, env, "host", "held").inc()


def phase_refused(app: str, env: str, phase: str, seconds: float | None) -> None:
    """A refusal emits no event of its own; the phase job reports it here."""
    if seconds is not None:
        PHASE_SECONDS.labels(app, env, phase, "refused").observe(seconds)


def queue_waited(app: str, env: str, enqueued_at: datetime | None) -> None:
    if enqueued_at is None:
        return
    when = enqueued_at if enqueued_at.tzinfo else enqueued_at.replace(tzinfo=UTC)
    QUEUE_WAIT_SECONDS.labels(app, env).observe(
        max(0.0, (datetime.now(UTC) - when).total_seconds())
    )


def rollback_cause(failure: FailureReport | None) -> str:
    """Why traffic went back: the failure that preceded it in this job, or, when there
    was none, a recovery job putting back what a dead worker left."""
    if failure is None:
        return "recovery"
    if failure.message == CANCELLED:
        return "cancelled"
    return CAUSES.get(failure.phase, "other")


class EventMetrics:
    """Metrics from the events one phase job's engine emits, as it emits them."""

    def __init__(self, app: str, env: str) -> None:
        self.app = app
        self.env = env
        self.failure: FailureReport | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, DeployStarted):
            self.app = event.app or self.app
            self.env = event.env or self.env
        elif isinstance(event, PhaseFinished) and event.phase:
            PHASE_SECONDS.labels(self.app, self.env, event.phase, "ok").observe(event.seconds)
        elif isinstance(event, PhaseFailure):
            self.failure = event.report
            if event.phase and event.seconds is not None:
                PHASE_SECONDS.labels(self.app, self.env, event.phase, "failed").observe(
                    event.seconds
                )
        elif isinstance(event, RollbackStarted):
            ROLLBACKS.labels(self.app, self.env, rollback_cause(self.failure)).inc()
            if event.detected_in is not None:
                DETECTION_SECONDS.labels(self.app, self.env).observe(event.detected_in)
