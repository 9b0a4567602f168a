"""`/metrics` for a worker: prometheus-client's multiprocess mode, as it documents for
servers that fork.

RQ runs each job in a work horse forked for it, which exits when the job ends: what
it records in memory would go with it. In multiprocess mode every process writes its
samples to files in PROMETHEUS_MULTIPROC_DIR, and the worker's own process serves
them all, summed, from a `MultiProcessCollector` on GREENLIGHT_METRICS_PORT
(GREENLIGHT_METRICS_HOST, 127.0.0.1 by default).

Without GREENLIGHT_METRICS_PORT nothing is served and nothing is written. Each worker
makes its own directory (removed when it exits), so several workers on one machine
each need their own port. Alternatively the operator gives them one shared
PROMETHEUS_MULTIPROC_DIR, empties it before they start, and sets the port on one of
them only: that one serves every worker's samples.

This must run before prometheus_client is first imported in the process: the library
chooses between memory and files at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class ExporterError(Exception):
    """The metrics port cannot be used; the text names the setting."""


def metrics_address(environ: MutableMapping[str, str]) -> tuple[str, int] | None:
    raw = environ.get("GREENLIGHT_METRICS_PORT", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65_536:
        raise ExporterError(f"GREENLIGHT_METRICS_PORT: a port number, not {raw!r}")
    return environ.get("GREENLIGHT_METRICS_HOST", "").strip() or "127.0.0.1", int(raw)


def serve_worker_metrics(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Start the worker's exporter (a thread); its address, or None when not asked for."""
    environ = os.environ if environ is None else environ
    address = metrics_address(environ)
    if address is None:
        return None
    if "prometheus_client" in sys.modules and MULTIPROC_DIR not in environ:
        raise ExporterError("prometheus_client was imported before the worker's exporter")
    if not environ.get(MULTIPROC_DIR):
        private = tempfile.mkdtemp(prefix="greenlight-metrics-")
        atexit.register(_remove, private, os.getpid())
        environ[MULTIPROC_DIR] = private

    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    host, port = address
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ExporterError(
            f"cannot listen on {host}:{port} (GREENLIGHT_METRICS_HOST, GREENLIGHT_METRICS_PORT): "
            f"{exc.strerror or exc}"
        ) from None
    return f"http://{host}:{port}/metrics"


def _remove(directory: str, owner: int) -> None:
    if os.getpid() == owner:  # never from a work horse that exits through atexit
        shutil.rmtree(directory, ignore_errors=True)
