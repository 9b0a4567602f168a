"""A bounded HTTP load generator for tests and benchmarks (loopback targets only).

Run as a separate process so it does not share an event loop or a core with the
engine it measures:

    python -m testbed.load http://127.0.0.1:8080/ --clients 16 --duration 60 --out run.csv

Each client sends GET requests back to back (with an optional pause) over a
keep-alive connection until the duration or the request budget is used up, or the
process gets SIGTERM. Every request is written as `start,end,status,version,error`.
Like curl and browsers, a request that went out on a kept-alive connection which the
server closed before answering is retried once on a fresh connection (RFC 9112
§9.3.1); those retries are counted separately and never hide an answer the server
gave, nor a failure on a fresh connection.

Requires httpx (installed in the project's venv), unlike the rest of `testbed`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import ipaddress
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

VERSION_HEADER = "X-App-Version"


@dataclass(frozen=True)
class Sample:
    start: float
    end: float
    status: int  # 0: no HTTP answer
    version: str
    error: str

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class LoadResult:
    samples: list[Sample]
    retries: int = 0
    versions: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> LoadResult:
        samples: list[Sample] = []
        retries = 0
        with path.open() as handle:
            for row in csv.reader(handle):
                if row[0] == "retries":
                    retries = int(row[1])
                    continue
                samples.append(Sample(float(row[0]), float(row[1]), int(row[2]), row[3], row[4]))
        samples.sort(key=lambda s: s.end)
        return cls(samples, retries, Counter(s.version for s in samples if s.version))

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    def after(self, moment: float) -> list[Sample]:
        return [s for s in self.samples if s.start >= moment]

    def first(self, version: str, after: float = 0.0) -> Sample | None:
        return next((s for s in self.samples if s.version == version and s.end >= after), None)

    def describe(self) -> str:
        failures = self.failures
        text = f"{len(self.samples)} requests, {len(failures)} failed, {self.retries} retried"
        if failures:
            kinds = Counter(f"{s.status or s.error}" for s in failures)
            text += " (" + ", ".join(f"{k}: {n}" for k, n in kinds.most_common()) + ")"
        return text


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"load: refusing to send traffic to {host}: loopback targets only")


async def client(
    url: str,
    deadline: float,
    budget: list[int],
    pause: float,
    out: list[Sample],
    stop: asyncio.Event,
    retried: list[int],
) -> None:
    import httpx

    async with httpx.AsyncClient(
        timeout=httpx.Timeout(5.0, connect=2.0), limits=httpx.Limits(max_connections=1)
    ) as http:
        reused = False  # does the next request go out on a kept-alive connection?
        while not stop.is_set() and time.time() < deadline and budget[0] > 0:
            budget[0] -= 1
            start = time.time()
            status, version, error = 0, "", ""
            for attempt in (1, 2):
                try:
                    response = await http.get(url)
                    status = response.status_code
                    version = response.headers.get(VERSION_HEADER, "")
                    error = ""
                    break
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    # The server closed a kept-alive connection as the request went out
                    # (a graceful reload closes idle ones): no answer was given, so the
                    # request is retried once on a new connection, as curl and browsers do.
                    error = type(exc).__name__
                    if attempt == 1 and reused:
                        retried[0] += 1
                        reused = False
                        continue
                    break
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                    break
            reused = status != 0
            out.append(Sample(start, time.time(), status, version, error))
            if pause:
                await asyncio.sleep(pause)


async def run(
    url: str, clients: int, duration: float, max_requests: int, pause: float, out_path: Path
) -> None:
    check_loopback(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.time() + duration
    samples: list[Sample] = []
    budget = [max_requests]
    retried = [0]
    print("ready", flush=True)
    await asyncio.gather(
        *(client(url, deadline, budget, pause, samples, stop, retried) for _ in range(clients))
    )
    with out_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for s in samples:
            writer.writerow([f"{s.start:.6f}", f"{s.end:.6f}", s.status, s.version, s.error])
        writer.writerow(["retries", retried[0], "", "", ""])


class Load:
    """Run the generator as a child process for the length of a `with` block."""

    def __init__(
        self,
        url: str,
        out: Path,
        *,
        clients: int = 16,
        duration: float = 300,
        max_requests: int = 1_000_000,
        pause: float = 0.005,
    ) -> None:
        check_loopback(url)
        self.out = out
        self.argv = [
            sys.executable,
            "-m",
            "testbed.load",
            url,
            "--clients",
            str(clients),
            "--duration",
            str(duration),
            "--max-requests",
            str(max_requests),
            "--pause",
            str(pause),
            "--out",
            str(out),
        ]
        self.process: subprocess.Popen[str] | None = None
        self.result: LoadResult | None = None

    def __enter__(self) -> Load:
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True, cwd=root)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("load generator did not start")
        return self

    def stop(self) -> LoadResult:
        if self.result is None:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.result = LoadResult.read(self.out)
        return self.result

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60, help="seconds, at most")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between requests")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.duration > 3600:
        raise SystemExit("load: duration is bounded to one hour")
    asyncio.run(run(args.url, args.clients, args.duration, args.max_requests, args.pause, args.out))


if __name__ == "__main__":
    main()
