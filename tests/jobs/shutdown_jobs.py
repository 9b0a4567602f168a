"""Jobs for the warm-shutdown tests, shaped like a phase job: run for a while, then
queue the next one (which names the worker that ran it) before ending."""

from __future__ import annotations

import os
import time

from jobs.queue import connect, queue

RAN_BY = "test:ran-by:{name}"


def long_phase(seconds: float, then: str) -> None:
    connection = connect()
    connection.set(RAN_BY.format(name="long"), os.environ.get("RQ_WORKER_ID", ""))
    time.sleep(seconds)
    queue(connection).enqueue_call(
        "tests.jobs.shutdown_jobs.next_phase", args=(then,), job_id=then, result_ttl=600
    )


def next_phase(name: str) -> None:
    connect().set(RAN_BY.format(name=name), os.environ.get("RQ_WORKER_ID", ""))
