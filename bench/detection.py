"""3. Detection: from v1.0.3's first failing response to traffic back on the previous
version, with a 1 s probe interval in the stability window."""

from __future__ import annotations

from bench.common import FAST, Figure, Report, deploy_ok, fresh, load, median, spec, timed_deploy

RUNS = 3


async def run(report: Report) -> None:
    print("3. detection of a release that breaks under traffic (probe interval 1 s)")
    quick = spec(["h1"], "detect-setup", **FAST)
    window = spec(["h1"], "detect", stability={"duration": 20, "interval": 1}, drain=0.5)
    times = []
    for i in range(RUNS):
        fresh()
        await deploy_ok(quick, "v1.0.1")
        with load("h1", f"detect-{i}") as running:
            record, _, _ = await timed_deploy(window, "v1.0.3")
            result = running.stop()
        assert record.outcome == "rolled_back", record.outcome
        first_failure = min(s.end for s in result.failures)
        back = next(s for s in result.samples if s.version == "v1.0.1" and s.start > first_failure)
        times.append(back.end - first_failure)
    value = median(times)
    report.add(
        Figure(
            "detection",
            f"first failing response -> back on v1.0.1, median of {RUNS}",
            value,
            "s",
            "<= 5 s",
            value <= 5.0,
            "runs: " + ", ".join(f"{t:.3f}" for t in times),
        )
    )
