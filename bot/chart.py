"""The stability window as a picture: latency over time, errors marked; PNG bytes.

A pure function of the window's Metrics events. matplotlib draws off-screen (Agg) on
a Figure of its own, never through pyplot's global state, so charts drawn at the same
time in one process cannot mix, and nothing is written to disk.

The bot draws in a short-lived child process (`draw`, which runs `python -m bot.chart`):
matplotlib and numpy would otherwise stay in the bot's memory for good, about a third
of it, for one picture per deployment.
"""

from __future__ import annotations

import asyncio
import io
import sys

from pydantic import BaseModel, TypeAdapter

from deploy.events import Metrics

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.0, 100
DRAW_TIMEOUT = 60  # seconds; a chart is drawn in well under one


class Request(BaseModel):
    """What the child process reads on stdin."""

    title: str
    metrics: list[Metrics]


async def draw(metrics: list[Metrics], title: str) -> bytes:
    """`stability_chart` in a child process; its PNG bytes."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.chart",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    request = Request(title=title, metrics=metrics).model_dump_json().encode()
    try:
        png, errors = await asyncio.wait_for(child.communicate(request), DRAW_TIMEOUT)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise RuntimeError(f"drawing the chart took over {DRAW_TIMEOUT} s") from None
    if child.returncode != 0:
        last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"drawing the chart failed ({child.returncode}): {last[0]}")
    return png


def stability_chart(metrics: list[Metrics], title: str) -> bytes:
    """p50 and p95 latency per interval against seconds into the window; intervals that
    saw errors are marked in red with their count. PNG bytes, 800x400."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ordered = sorted(metrics, key=lambda m: m.interval)
    seconds = [_seconds(m) for m in ordered]
    p50 = [m.figures.p50_ms for m in ordered]
    p95 = [m.figures.p95_ms for m in ordered]

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(seconds, p50, marker="o", markersize=3, label="p50", color="tab:blue")
    axes.plot(seconds, p95, marker="o", markersize=3, label="p95", color="tab:orange")
    failing = [
        (s, y, m.figures.errors)
        for s, y, m in zip(seconds, p95, ordered, strict=True)
        if m.figures.errors
    ]
    if failing:
        axes.scatter(
            [s for s, _, _ in failing],
            [y for _, y, _ in failing],
            marker="x",
            s=60,
            color="tab:red",
            zorder=3,
            label="errors",
        )
        for s, y, errors in failing:
            axes.annotate(
                str(errors),
                (s, y),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                color="tab:red",
                fontsize=8,
            )
    requests = sum(m.figures.requests for m in ordered)
    errors = sum(m.figures.errors for m in ordered)
    # parse_math off: a `$` in an app or version name is text, not TeX.
    axes.set_title(f"{title}\n{requests} probes, {errors} errors", fontsize=10, parse_math=False)
    axes.set_xlabel("seconds into the stability window")
    axes.set_ylabel("latency (ms)")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    if ordered:
        axes.legend(loc="upper left", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no intervals", transform=axes.transAxes, ha="center")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return png.getvalue()


def _seconds(metrics: Metrics) -> float:
    # `elapsed` counts from the window's start; events from before it existed fall
    # back to the interval's number.
    return metrics.figures.elapsed or float(metrics.interval)


def main() -> None:
    """`python -m bot.chart`: a Request as JSON on stdin, the PNG on stdout."""
    request = TypeAdapter(Request).validate_json(sys.stdin.buffer.read())
    sys.stdout.buffer.write(stability_chart(request.metrics, request.title))


if __name__ == "__main__":
    main()
