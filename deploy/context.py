"""What every phase receives: the spec, the environment, the record, a sink, executors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from deploy.commands import Command
from deploy.commands.layout import Layout, Slot, layout_for
from deploy.deployment import Deployment, HostProgress
from deploy.errors import CANCELLED, Cancelled, HostError, ProbeFailed
from deploy.events import EVENTS, EventSink, Kind, Redactor, event
from deploy.executor import Executor, Result, SSHExecutor, executor_for
from deploy.spec import Color, Environment, HostSpec, Spec
from deploy.state import ColorRecord

T = TypeVar("T")


@dataclass
class Context:
    spec: Spec
    env: Environment
    deployment: Deployment
    sink: EventSink
    executors: dict[str, Executor] = field(default_factory=dict)
    # Kept out of repr: a Context ends up in tracebacks and debug logs.
    registry_password: str | None = field(default=None, repr=False)
    stream_output: bool = True
    cancel_requested: Callable[[], Awaitable[bool]] | None = None
    # Set while recovering: a cancel must never interrupt the way back.
    unwinding: bool = False

    def __post_init__(self) -> None:
        # Secrets are redacted here, in the engine: every event, report and note that
        # leaves it, whatever sink or store receives them.
        self.redact = Redactor([self.registry_password] if self.registry_password else [])
        for host in self.env.hosts:
            progress = self.deployment.hosts.setdefault(host.name, HostProgress(name=host.name))
            if host.name not in self.executors:
                executor = executor_for(host, self.env.ssh)
                if isinstance(executor, SSHExecutor):  # a later job of this deployment
                    executor.reached = progress.locked
                self.executors[host.name] = executor

    @property
    def layout(self) -> Layout:
        return layout_for(self.spec, self.env)

    @property
    def hosts(self) -> list[HostSpec]:
        return list(self.env.hosts)

    def host(self, name: str) -> HostSpec:
        return next(h for h in self.env.hosts if h.name == name)

    def progress(self, host: HostSpec) -> HostProgress:
        return self.deployment.hosts[host.name]

    def target_slot(self, host: HostSpec) -> Slot:
        color = self.progress(host).target
        assert color is not None, "preflight chooses the target colour"
        return self.slot(host, color, self.deployment.image, self.deployment.version)

    def record_slot(self, host: HostSpec, record: ColorRecord) -> Slot:
        return Slot(
            self.layout,
            host,
            record.color,
            record.port,
            record.image,
            record.version,
            record.deployment,
            record.images,
        )

    def slot(self, host: HostSpec, color: Color, image: str, version: str) -> Slot:
        return Slot(
            self.layout,
            host,
            color,
            self.env.ports.of(color),
            image,
            version,
            self.deployment.id,
            self.deployment.images,
        )

    async def emit(
        self,
        kind: Kind,
        message: str = "",
        *,
        phase: str | None = None,
        host: str | None = None,
        **fields: Any,
    ) -> None:
        """The typed event of that kind (its fields are checked), secrets redacted."""
        typed = event(
            kind, deployment=self.deployment.id, message=message, phase=phase, host=host, **fields
        )
        if self.redact.secrets:  # every remote output line passes here: no copy without need
            typed = EVENTS.validate_python(self.redact.deep(typed.model_dump()))
        await self.sink.emit(typed)

    async def run(
        self,
        host: HostSpec,
        cmd: Command,
        *,
        phase: str,
        check: bool = True,
        quiet: bool = False,
    ) -> Result:
        async def forward(line: str) -> None:
            await self.emit(Kind.output, line, phase=phase, host=host.name)

        async def retrying(notice: str) -> None:  # said even for a quiet command
            await self.emit(Kind.warning, notice, phase=phase, host=host.name)

        stream = self.stream_output and not quiet
        return await self.executors[host.name].run(
            cmd, on_line=forward if stream else None, check=check, on_retry=retrying
        )

    async def check_cancelled(self) -> None:
        if self.unwinding or self.cancel_requested is None:
            return
        if await self.cancel_requested():
            raise Cancelled(CANCELLED)

    async def each_host(
        self, work: Callable[[HostSpec], Awaitable[T]], hosts: Sequence[HostSpec] | None = None
    ) -> list[T]:
        """Run `work` on every host, at most `parallel` at a time.

        Every host is allowed to finish (a half-run remote command is worse than a
        slower failure); the first error is then raised, the others become notes.
        """
        gate = asyncio.Semaphore(self.env.parallel)

        async def bounded(host: HostSpec) -> T:
            async with gate:
                try:
                    return await work(host)
                except ProbeFailed as exc:
                    exc.host = exc.host or host.name
                    raise

        chosen = list(self.hosts if hosts is None else hosts)
        results = await asyncio.gather(*(bounded(h) for h in chosen), return_exceptions=True)
        failed = [
            (h, r) for h, r in zip(chosen, results, strict=True) if isinstance(r, BaseException)
        ]
        for host, extra in failed[1:]:
            self.deployment.notes.append(f"also failed on {host.name}: {_reason(extra)}")
        if failed:
            raise failed[0][1]
        return [r for r in results if not isinstance(r, BaseException)]

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self.executors.values()))


def _reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, HostError) else str(exc) or type(exc).__name__
