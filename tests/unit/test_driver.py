"""The pipeline as a job-per-phase driver sees it: begin, next phase, settle, finish."""

import pytest

from deploy.context import Context
from deploy.deployment import Deployment
from deploy.errors import PhaseFailed
from deploy.events import Kind, ListSink
from deploy.pipeline import Phase, begin, finish, next_phase, phase_budgets, settle
from deploy.spec import Spec
from tests.unit.local import local_spec


def spec(**extra: object) -> Spec:
    return local_spec(**extra)


def context(s: Spec, record: Deployment | None = None) -> Context:
    record = record or Deployment(
        id="production-v1.0.1-x", env="production", version="v1.0.1", who="a"
    )
    return Context(s, s.environment(None), record, ListSink())


def phases(ran: list[str], failing: str | None = None) -> list[tuple[str, Phase]]:
    def make(name: str) -> Phase:
        async def phase(ctx: Context) -> None:
            ran.append(name)
            if name == failing:
                raise RuntimeError(f"{name} broke")

        return phase

    return [(name, make(name)) for name in ("prepare", "preflight", "stage")]


async def test_each_job_runs_the_next_phase_and_a_later_job_resumes_after_it() -> None:
    s, ran = spec(), []
    first = context(s)
    await begin(first)
    assert await next_phase(first, phases(ran)) == "prepare"
    saved = first.deployment.model_dump_json()  # what a job would store in Redis
    later = context(s, Deployment.model_validate_json(saved))  # a new process, a new job
    assert await next_phase(later, phases(ran)) == "preflight"
    assert await next_phase(later, phases(ran)) == "stage"
    assert await next_phase(later, phases(ran)) is None
    assert ran == ["prepare", "preflight", "stage"]
    assert later.deployment.completed == ["prepare", "preflight", "stage"]


async def test_a_spec_changed_between_jobs_is_not_used_and_blames_no_release() -> None:
    ran: list[str] = []
    first = context(spec())
    await begin(first)
    await next_phase(first, phases(ran))
    changed = spec(drain=30)  # someone edited greenlight.yml between two jobs
    later = context(changed, first.deployment)
    with pytest.raises(PhaseFailed) as failed:
        await next_phase(later, phases(ran))
    assert "the spec changed since production-v1.0.1-x was planned" in failed.value.report.message
    assert not failed.value.report.app_fault
    assert ran == ["prepare"]


async def test_a_phase_that_outlives_its_budget_fails_without_blaming_the_release() -> None:
    import asyncio

    ctx = context(spec())
    await begin(ctx)
    ctx.deployment.budgets["prepare"] = 0.05

    async def hangs(ctx: Context) -> None:
        await asyncio.sleep(10)

    with pytest.raises(PhaseFailed) as failed:
        await next_phase(ctx, [("prepare", hangs)])
    assert failed.value.report.message == (
        "prepare took longer than its budget of 0.05 s (from the spec's timeouts)"
    )
    assert not failed.value.report.app_fault and ctx.deployment.completed == []


async def test_a_failed_phase_settles_and_finishes_with_the_outcome() -> None:
    ran: list[str] = []
    ctx = context(spec())
    sink: ListSink = ctx.sink  # type: ignore[assignment]
    await begin(ctx)
    with pytest.raises(PhaseFailed) as failed:
        while await next_phase(ctx, phases(ran, failing="preflight")):
            pass
    await settle(ctx, failed.value)
    record = await finish(ctx)
    assert record.outcome == "not_switched" and record.completed == ["prepare"]
    assert record.failure is not None
    assert record.failure.message == "unexpected RuntimeError: preflight broke"
    assert [e.kind for e in sink.events][-1] == Kind.deploy_finished


def test_budgets_follow_the_spec_and_a_300_s_window_gets_more_than_rqs_default() -> None:
    s = spec()
    budgets = phase_budgets(context(s))
    assert budgets["monitor"] > 300 > 180
    assert budgets["stage"] >= s.environment(None).pull_timeout
    assert set(budgets) >= {"prepare", "preflight", "backup", "stage", "verify", "test"}
