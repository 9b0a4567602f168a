"""The RQ side: one queue, JSON-serialized jobs, a job per phase, workers that scale out
by pointing more `greenlight worker` processes at the same Redis."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq import Queue, Worker
from rq.serializers import JSONSerializer

QUEUE = "greenlight"
# A phase job's RQ timeout is its engine budget plus this, so the engine's own budget
# (which unwinds cleanly) always trips first.
TIMEOUT_SLACK = 60


# A Redis restart (a second or two with AOF) must not fail a deployment half-way: every
# command is retried on a lost connection, backing off up to 1 s, for about 30 s.
REDIS_RETRIES = 35
# Where `greenlight worker` writes its RQ name when set (the image sets it), so the
# container's health check asks Redis about this worker and no other.
WORKER_NAME_FILE = "GREENLIGHT_WORKER_NAME_FILE"


def connect(url: str | None = None, timeout: float | None = None) -> redis.Redis:
    """REDIS_URL (default redis://127.0.0.1:6379/0); RQ wants bytes, not decoded text.
    With `timeout` (a quick, optional use), one attempt only."""
    return redis.Redis.from_url(
        url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 0 if timeout else REDIS_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def queue(connection: redis.Redis) -> Queue:
    return Queue(QUEUE, connection=connection, serializer=JSONSerializer)


def enqueue_phase(connection: redis.Redis, deployment_id: str, phase: str, budget: float) -> str:
    """The job that runs `phase` of the deployment; its id names both, so a retried
    request cannot enqueue the same phase twice."""
    job = queue(connection).enqueue_call(
        "jobs.work.run_phase_job",
        args=(deployment_id,),
        timeout=int(budget) + TIMEOUT_SLACK,
        job_id=job_id(deployment_id, phase),
        result_ttl=3600,
        failure_ttl=7 * 86_400,
        description=f"{deployment_id}: {phase}",
    )
    return str(job.id)


def job_id(deployment_id: str, phase: str) -> str:
    """One job per phase of a deployment; RQ's ids allow no dots."""
    return f"{deployment_id}-{phase}".replace(".", "_")


def run_worker(url: str | None = None, burst: bool = False) -> bool:
    """RQ's worker, with the sweeper that notices stalled deployments beside it, and
    its /metrics when GREENLIGHT_METRICS_PORT is set (jobs.exporter). Raises
    ExporterError when that port cannot be used."""
    from jobs.exporter import serve_worker_metrics

    # First: prometheus-client decides between memory and files when it is imported.
    served = serve_worker_metrics()
    # Import the engine once, here: each job's work horse is a fork of this process and
    # inherits it, instead of paying the imports (a few hundred ms) for every phase.
    import jobs.work  # noqa: F401
    from deploy.probes import warm_up
    from deploy.spec import SpecError, load_specs
    from jobs.sweeper import start_sweeper

    # The same for what the engine would build in every job: the TLS context and httpx's
    # lazy imports, and the spec's parse (each job still reads the file and checks its
    # hash; a changed file is parsed again by the job that reads it).
    warm_up()
    with contextlib.suppress(SpecError):  # a broken spec is reported by the job that reads it
        load_specs()

    connection = connect(url)
    start_sweeper(url)
    if served:
        logging.getLogger("greenlight.worker").info("metrics at %s", served)
    name = worker_name()
    worker = Worker(
        [queue(connection)], connection=connection, serializer=JSONSerializer, name=name
    )
    where = os.environ.get(WORKER_NAME_FILE)
    if where:  # for `greenlight healthcheck worker` in this container
        Path(where).write_text(name)
    # SIGTERM (`docker compose stop`) is RQ's warm shutdown: the phase job running goes
    # on to its end, queues the next phase for another worker, and this one takes no
    # other job. A second signal, or the container's grace period running out, kills the
    # work horse; its heartbeat lapses and a sweeper hands the deployment to recovery.
    return bool(worker.work(burst=burst, with_scheduler=True))


def worker_name() -> str:
    """`greenlight@host:pid-xxxx`, as `rq info` shows it. The random tail keeps replicas
    apart where the name alone would not: containers on the host's network share its
    hostname, and each has its own pid 1, 2, 3..., so two of them may share a pid too
    (RQ refuses a second live worker of the same name)."""
    return f"greenlight@{socket.gethostname()}:{os.getpid()}-{secrets.token_hex(2)}"
