"""The progress writer's pacing against the emulator's own flood rules (one clock for
both), and the progress message's text against Telegram's HTML and length rules."""

from __future__ import annotations

from bot import render
from bot.emulator.pacing import Pacer
from bot.emulator.text import checked_text
from bot.pace import Pace
from bot.steering import Action, actions
from bot.view import PhaseView, ProgressView
from deploy.probes import Figures

GROUP = -100500
PRIVATE = 1001


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ten_minutes_of_edits_and_replies_never_meet_a_429() -> None:
    clock = Clock()
    pace, telegram = Pace(clock), Pacer(clock)
    edits = replies = 0
    for tick in range(10 * 60 * 20):  # every 50 ms, an edit is waiting
        clock.now += 0.05
        if tick % 300 == 0:  # someone's command gets a reply every 15 s, unpaced
            pace.spend(GROUP)
            assert telegram.retry_after(GROUP, private=False) is None
            replies += 1
        if pace.wait(GROUP) == 0:
            pace.spend(GROUP)
            assert telegram.retry_after(GROUP, private=False) is None, clock.now
            edits += 1
    # Steady (no silent minute), and the replies come out of the same budget.
    assert replies == 40 and edits >= 85 and edits + replies <= 3 + 13 * 10


def test_a_private_chat_gets_one_edit_a_second() -> None:
    clock = Clock()
    pace, telegram = Pace(clock), Pacer(clock)
    edits = 0
    for _ in range(60 * 20):
        clock.now += 0.05
        if pace.wait(PRIVATE) == 0:
            pace.spend(PRIVATE)
            assert telegram.retry_after(PRIVATE, private=True) is None
            edits += 1
    assert 55 <= edits <= 60


def test_a_429_holds_the_chat_for_retry_after() -> None:
    clock = Clock()
    pace = Pace(clock)
    pace.hold(GROUP, 7)
    assert pace.wait(GROUP) == 7
    clock.now += 7
    assert pace.wait(GROUP) == 0


def hostile_view() -> ProgressView:
    odd = "<b>&amp;</i>" * 40
    return ProgressView(
        deployment="production-v1.0.1-20261129_000000" + odd,
        app=odd,
        env=odd,
        version=odd,
        requested_by="tg:1",
        approved_by="tg:2",
        names={"tg:1": "@" + odd, "tg:2": odd},
        state="rolled_back",
        by="tg:2",
        note=odd * 10,
        phases=[PhaseView(name=f"{odd}{n}", state="failed", seconds=n) for n in range(12)],
        hosts=[f"{odd}{n}" for n in range(500)],
        interval=7,
        figures=Figures(
            requests=10**9,
            errors=10**8,
            error_rate=0.1,
            p50_ms=1e9,
            p95_ms=1e12,
            p99_ms=1,
            versions={},
        ),
        failure=odd * 100,
    )


def test_the_progress_message_fits_telegram_whatever_the_names() -> None:
    text = render.progress(hostile_view())
    shown, _ = checked_text(text, "HTML")  # raises on bad HTML or more than 4096 characters
    assert "<b>&amp;</i>" in shown  # what people wrote is shown, never parsed
    assert "and 470 more" in shown


def test_buttons_follow_the_request_state() -> None:
    view = ProgressView(deployment="d")
    seen = {}
    for state in ("awaiting_approval", "queued", "running", "awaiting_promotion", "live",
                  "rolled_back", "cancelled", "not_switched", "rejected"):  # fmt: skip
        view.state = state
        seen[state] = actions(view)
    assert seen == {
        "awaiting_approval": [],
        "queued": [Action.abort],
        "running": [Action.abort],
        "awaiting_promotion": [Action.promote, Action.abort],
        "live": [Action.rollback],
        "rolled_back": [],
        "cancelled": [],
        "not_switched": [],
        "rejected": [],
    }
