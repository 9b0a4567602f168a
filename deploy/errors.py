"""Every error the engine raises, each able to describe itself in a failure report.

`blames_release` says whether the error says something about the release itself (a
failed health check, a failing hook) or about its surroundings (a lost host, a spec
mistake, an operator's cancel): only the first kind ever records a version as bad.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from deploy.commands import Command, Result, display

if TYPE_CHECKING:
    from deploy.deployment import FailureReport
    from deploy.probes import Probe


class GreenlightError(Exception):
    blames_release = True

    def describe(self, report: FailureReport) -> None:
        report.message = str(self) or type(self).__name__


class Refused(GreenlightError):
    """Refused before anything was changed (exit 2)."""

    blames_release = False


class LockHeld(Refused):
    """A host's deploy lock is held by another deployment (the metrics count these)."""


CANCELLED = "cancelled by an operator"


class Cancelled(GreenlightError):
    """An operator asked to stop; the deployment unwinds like a failure."""

    blames_release = False


class SpecChanged(GreenlightError):
    """The spec differs from the one the deployment was planned from."""

    blames_release = False


class PhaseOverran(GreenlightError):
    """A phase outlived the budget its spec's timeouts allow."""

    blames_release = False


class PhaseFailed(Exception):
    """A phase failed; its report is complete (raised by `run_phase`)."""

    def __init__(self, report: FailureReport) -> None:
        super().__init__(report.message)
        self.report = report


class HostError(GreenlightError):
    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.reason = message

    def describe(self, report: FailureReport) -> None:
        report.host = self.host
        report.message = self.reason


class HostUnreachable(HostError):
    """The host cannot be reached (or stopped answering) over SSH."""

    blames_release = False


class HostKeyRejected(HostUnreachable):
    """The host's key is not in known_hosts, or does not match it."""


class ConnectionDropped(HostUnreachable):
    """The SSH connection could not be opened, or was lost under a command: the host may
    be back in a moment (sshd restarting, a network blip), unlike a rejected key."""


class HostStateUnreadable(HostError):
    """The host's deploy state came back incomplete or corrupt: never guess at it."""

    blames_release = False

    def __init__(self, host: str, problem: str) -> None:
        super().__init__(host, f"host state unreadable: {problem}")


class SpecMistake(HostError):
    """The spec does not fit the host (a port taken by the other colour...)."""

    blames_release = False


class CommandFailed(HostError):
    def __init__(self, host: str, cmd: Command, result: Result) -> None:
        super().__init__(host, f"{cmd.step} failed ({self._what(cmd, result)})")
        self.cmd = cmd
        self.result = result

    @staticmethod
    def _what(cmd: Command, result: Result) -> str:
        return f"exit {result.exit_status}"

    @property
    def command_text(self) -> str:
        return display(self.cmd)

    @property
    def blames_release(self) -> bool:  # type: ignore[override]
        return not self.cmd.step.startswith("pull ")

    def describe(self, report: FailureReport) -> None:
        super().describe(report)
        report.step = self.cmd.step
        report.command = self.command_text
        report.exit_status = self.result.exit_status
        report.output = list(self.result.tail)


class CommandTimedOut(CommandFailed):
    """The command outlived its budget: coreutils `timeout` ended it (exit 124/137)."""

    @staticmethod
    def _what(cmd: Command, result: Result) -> str:
        return f"timed out after {cmd.timeout:g} s"


class OutputTooLarge(CommandFailed):
    """A data command printed more than its limit: a broken host, never a cut answer."""

    @staticmethod
    def _what(cmd: Command, result: Result) -> str:
        return f"answer larger than {cmd.data_limit} bytes; refusing a partial read"

    @property
    def blames_release(self) -> bool:  # type: ignore[override]
        return False


class StepFailed(HostError):
    """A step on a host ran but its result is wrong (empty backup, wrong digest...)."""

    def __init__(self, host: str, step: str, message: str, output: Sequence[str] = ()) -> None:
        super().__init__(host, f"{step}: {message}")
        self.step = step
        self.output = list(output)

    def describe(self, report: FailureReport) -> None:
        super().describe(report)
        report.step = self.step
        report.output = self.output


class ProbeFailed(GreenlightError):
    def __init__(
        self, message: str, probes: Sequence[Probe] = (), *, first_error_at: float | None = None
    ) -> None:
        super().__init__(message)
        self.probes = list(probes)
        self.host: str | None = None  # set by the fan-out that probed on a host's behalf
        self.first_error_at = first_error_at  # the stability window's first failing answer

    def describe(self, report: FailureReport) -> None:
        super().describe(report)
        report.host = self.host
        report.output = [p.summary for p in self.probes]
        report.first_error_at = self.first_error_at


class WrongColour(ProbeFailed):
    """A probe aimed at one colour was answered by another version: a port mix-up in
    the spec or on the host, not a fault of the release."""

    blames_release = False


def command_failed(host: str, cmd: Command, result: Result) -> CommandFailed:
    """The right error for a command's non-zero exit."""
    if result.exit_status in (124, 137) and result.duration >= cmd.timeout - 0.5:
        return CommandTimedOut(host, cmd, result)
    return CommandFailed(host, cmd, result)
