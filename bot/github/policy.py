"""When the GitHub client tries again, as a pure function of one attempt's outcome:
network errors, timeouts and 5xx back off exponentially (0.5, 1, 2 ... s); a rate
limit (403 or 429 with `x-ratelimit-remaining: 0`, or `retry-after`) is waited out
until its reset; any wait longer than the client's longest is not slept but given up
on at once; every other answer is final."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

FIRST_BACKOFF = 0.5  # seconds; then 1, 2, 4 ...
# GitHub's advice for a secondary rate limit that names no wait: at least a minute.
SECONDARY_LIMIT_WAIT = 60.0


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: GitHub's status and headers (lower-case names, or
    httpx's case-blind `Headers`), or no answer at all (`status` None), with `problem`
    saying what went wrong in words."""

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    problem: str = ""
    # The request may have reached GitHub and taken effect without its answer
    # reaching us (a read timeout, a dropped connection), unlike a refused connect.
    effect_unknown: bool = False


@dataclass(frozen=True)
class Decision:
    """`answer`: the outcome is final (success or a refusal for the caller to raise);
    `retry`: sleep `wait` seconds and try again; `give_up`: raise `GitHubUnavailable`
    with `reason`."""

    action: Literal["answer", "retry", "give_up"]
    wait: float = 0.0
    reason: str = ""


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def _attempts(count: int) -> str:
    return f"{count} attempt{'' if count == 1 else 's'}"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def rate_limit_wait(outcome: Outcome, now: float) -> tuple[float, str] | None:
    """How long a rate-limited answer asks to wait, and why in words; None when the
    answer is not a rate limit (a 403 can also be a plain permission refusal)."""
    if outcome.status not in (403, 429):
        return None
    retry_after = _number(outcome.headers, "retry-after")
    if retry_after is not None:
        return max(retry_after, 0.0), f"{outcome.status}, retry-after {retry_after:g}"
    reset = _number(outcome.headers, "x-ratelimit-reset")
    if _number(outcome.headers, "x-ratelimit-remaining") == 0 and reset is not None:
        return max(reset - now, 0.0), f"{outcome.status}, x-ratelimit-remaining 0"
    if outcome.status == 429:
        return SECONDARY_LIMIT_WAIT, "429 without retry-after"
    return None


def decide(
    outcome: Outcome, attempt: int, *, attempts: int, longest_wait: float, now: float
) -> Decision:
    """What to do after attempt number `attempt` (1-based) of `attempts` came to
    `outcome`, at epoch time `now`."""
    limited = rate_limit_wait(outcome, now)
    if limited is not None:
        wait, why = limited
        if wait > longest_wait:
            return Decision(
                "give_up", reason=f"GitHub is rate-limiting until {_clock(now + wait)} ({why})"
            )
        if attempt >= attempts:
            return Decision(
                "give_up",
                reason=f"GitHub was still rate-limiting after {_attempts(attempts)} ({why})",
            )
        return Decision("retry", wait, f"rate-limited ({why})")
    if outcome.status is not None and outcome.status < 500:
        return Decision("answer")
    if attempt >= attempts:
        return Decision(
            "give_up",
            reason=f"GitHub did not answer after {_attempts(attempts)}: {outcome.problem}",
        )
    wait = FIRST_BACKOFF * 2 ** (attempt - 1)
    if wait > longest_wait:
        return Decision(
            "give_up",
            reason=f"GitHub did not answer after {_attempts(attempt)}: {outcome.problem}",
        )
    return Decision("retry", wait, outcome.problem)
