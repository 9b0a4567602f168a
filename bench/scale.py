"""5. Wall time of a deploy to 1, 3 and 10 simulated hosts (each its own sshd, dockerd,
nginx), with the test bed's own spec (10 s stability window): 10 hosts should take at
most twice as long as one.

All the simulated hosts share this machine's two cores, which real hosts would not:
the benchmark prints the CPU seconds the whole machine spent, so a figure limited by
the shared CPU can be told from one limited by the engine.
"""

from __future__ import annotations

import resource
import time

import testbed
from bench.common import FAST, Figure, Report, deploy_ok, fresh, spec, timed_deploy


def engine_cpu_seconds() -> float:
    """CPU this process (the engine, run in-process) has used: user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> float:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / 100  # all but idle and iowait


async def run(report: Report) -> None:
    print("5. deploy wall time by number of hosts (test bed spec: 10 s stability window)")
    available = len(testbed.load_info()["hosts"])
    if available < 10:
        raise SystemExit("bench: the scale benchmark needs `scripts/testbed up --hosts 10`")
    walls: dict[int, float] = {}
    for count in (1, 3, 10):
        hosts = [f"h{i}" for i in range(1, count + 1)]
        fresh()
        await deploy_ok(spec(hosts, f"scale-setup-{count}", **FAST), "v1.0.0")
        measured = spec(hosts, f"scale-{count}")
        cpu = machine_cpu_seconds()
        engine = engine_cpu_seconds()
        started = time.monotonic()
        record, wall, _ = await timed_deploy(measured, "v1.0.1")
        assert record.outcome == "live", record.failure
        used = machine_cpu_seconds() - cpu
        own = engine_cpu_seconds() - engine
        walls[count] = wall
        waits = record.phases.get("monitor", 0.0)
        phases = ", ".join(f"{k} {v:.1f}" for k, v in record.phases.items())
        report.add(
            Figure(
                "scale",
                f"deploy to {count} host(s)",
                wall,
                "s",
                detail=f"outside the stability window {wall - waits:.1f} s; machine CPU "
                f"{used:.1f} s in {time.monotonic() - started:.1f} s on 2 cores; phases: {phases}",
            )
        )
        report.add(
            Figure(
                "scale",
                f"engine CPU per host, {count} host(s)",
                own / count,
                "s",
                detail=f"the greenlight process itself: {own:.2f} CPU-s for {count} host(s)",
            )
        )
    ratio = walls[10] / walls[1]
    report.add(Figure("scale", "10 hosts / 1 host", ratio, "x", "<= 2x", ratio <= 2.0))
