"""Greenlight's sample app: a tiny stdlib-only web app with Django-like endpoints and faults.

Run as `python3 app.py SUBCOMMAND`: serve, healthcheck, migrate, collectstatic, backup,
check-db, check-cache. Configuration comes from the environment:

    GREENLIGHT_BIND, GREENLIGHT_PORT   where `serve` listens (default 127.0.0.1:8000)
    GREENLIGHT_COLOR                   blue or green, reported by /api/health/
    APP_VERSION                        reported in every X-App-Version header
    APP_ROLE                           web (default) or frontend, the second image of a
                                       release; reported in X-App-Role
    PORT_OFFSET                        added to GREENLIGHT_PORT (the frontend's own port)
    APP_FAULT                          none | health500 | delayed500 | migrate_fail | slow
    HOST_FAULT                         the same faults, set per host in the app dir's .env
                                       (tests use it to break one host of several)
    DATA_DIR                           holds app.sqlite3 (shared by both colours)
    REDIS_URL                          checked by check-cache
"""

from __future__ import annotations

import os
import sys

VERSION = os.environ.get("APP_VERSION") or "dev"
FAULT = os.environ.get("HOST_FAULT") or os.environ.get("APP_FAULT") or "none"
COLOR = os.environ.get("GREENLIGHT_COLOR") or "none"
BIND = os.environ.get("GREENLIGHT_BIND") or "127.0.0.1"
PORT = int(os.environ.get("GREENLIGHT_PORT") or "8000") + int(os.environ.get("PORT_OFFSET") or "0")
ROLE = os.environ.get("APP_ROLE") or "web"
DATA_DIR = os.environ.get("DATA_DIR") or "/data"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"

FAULTS = ("none", "health500", "delayed500", "migrate_fail", "slow")
SLOW_SECONDS = 1.5
DELAYED_FAILURE_AFTER = 3.0

MIGRATIONS = [
    (
        "0001_initial",
        [
            "CREATE TABLE IF NOT EXISTS users ("
            " id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE,"
            " is_staff INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)",
        ],
    ),
    (
        "0002_tokens",
        [
            "CREATE TABLE IF NOT EXISTS tokens ("
            " key TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
            " created_at TEXT NOT NULL)",
        ],
    ),
    (
        "0003_seed_admin",
        [
            "INSERT OR IGNORE INTO users (username, is_staff, created_at)"
            " VALUES ('admin', 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
        ],
    ),
]


def db_path() -> str:
    return os.path.join(DATA_DIR, "app.sqlite3")


def connect():  # type: ignore[no-untyped-def]
    import sqlite3

    os.makedirs(DATA_DIR, exist_ok=True)
    conn = sqlite3.connect(db_path(), timeout=5)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def applied_migrations(conn) -> list[str]:  # type: ignore[no-untyped-def]
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
    )
    return [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


# --- subcommands -----------------------------------------------------------------------


def cmd_healthcheck() -> int:
    """The container healthcheck: GET our own /api/health/ (exit 0 on 200, else 1)."""
    import http.client

    host = "127.0.0.1" if BIND in ("0.0.0.0", "", "::") else BIND  # noqa: S104
    try:
        conn = http.client.HTTPConnection(host, PORT, timeout=1.9)
        conn.request("GET", "/api/health/")
        status = conn.getresponse().status
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: /api/health/ answered {status}", file=sys.stderr)
        return 1
    return 0


def cmd_migrate() -> int:
    if FAULT == "migrate_fail":
        # Fails before touching anything: the schema stays exactly as it was.
        print(
            "migration 0004_broken failed: column users.email_verified cannot be added "
            "(simulated fault APP_FAULT=migrate_fail); no changes were applied",
            file=sys.stderr,
        )
        return 1
    conn = connect()
    with conn:
        done = set(applied_migrations(conn))
    applied = []
    for name, statements in MIGRATIONS:
        if name in done:
            continue
        with conn:  # one transaction per migration
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_at)"
                " VALUES (?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                (name,),
            )
        applied.append(name)
    conn.close()
    for name in applied:
        print(f"  Applying {name}... OK")
    if not applied:
        print("No migrations to apply.")
    print(f"schema version: {MIGRATIONS[-1][0]}")
    return 0


def cmd_collectstatic() -> int:
    import json

    static = os.path.join(DATA_DIR, "static")
    os.makedirs(static, exist_ok=True)
    files = {
        "app.css": "body { font-family: sans-serif; margin: 2em; }\n",
        "version.json": json.dumps({"version": VERSION}) + "\n",
    }
    for name, text in files.items():
        tmp = os.path.join(static, f".{name}.tmp")
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, os.path.join(static, name))
    print(f"{len(files)} static files copied to '{static}'.")
    return 0


def cmd_backup() -> int:
    """Write a JSON dump of the database to stdout (never empty, even with no database)."""
    import json
    import time

    dump: dict[str, object] = {
        "format": "greenlight-sample-backup/1",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "app_version": VERSION,
        "database": db_path(),
        "schema_version": None,
        "migrations": [],
        "tables": {},
    }
    if os.path.exists(db_path()):
        conn = connect()
        migrations = applied_migrations(conn)
        dump["migrations"] = migrations
        dump["schema_version"] = migrations[-1] if migrations else None
        tables = {}
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ):
            cursor = conn.execute(f'SELECT * FROM "{name}"')  # noqa: S608 (names from sqlite)
            columns = [col[0] for col in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor]
            tables[name] = {"schema": sql, "columns": columns, "rows": rows}
        dump["tables"] = tables
        conn.close()
    json.dump(dump, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def cmd_check_db() -> int:
    try:
        conn = connect()
        conn.execute("SELECT 1").fetchone()
        conn.close()
    except Exception as exc:
        print(f"database unavailable: {exc}", file=sys.stderr)
        return 1
    print(f"database ok ({db_path()})")
    return 0


def cmd_check_cache() -> int:
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(REDIS_URL)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        print(f"cache unavailable at {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if not reply.startswith(b"+PONG"):
        print(f"cache at {host}:{port} answered {reply!r}", file=sys.stderr)
        return 1
    print(f"cache ok ({host}:{port} PONG)")
    return 0


def cmd_serve() -> int:
    import json
    import signal
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if FAULT not in FAULTS:
        print(f"unknown APP_FAULT {FAULT!r} (known: {', '.join(FAULTS)})", file=sys.stderr)
        return 2

    state = {"first_proxied": None, "active": 0}
    lock = threading.Lock()

    def failing_now(proxied: bool) -> bool:
        if FAULT != "delayed500":
            return False
        with lock:
            if proxied and state["first_proxied"] is None:
                state["first_proxied"] = time.monotonic()
            first = state["first_proxied"]
        return first is not None and time.monotonic() - first >= DELAYED_FAILURE_AFTER

    def readiness() -> tuple[int, dict[str, object]]:
        try:
            conn = connect()
            conn.execute("SELECT 1").fetchone()
            conn.close()
        except Exception as exc:
            return 503, {"ready": False, "error": str(exc)}
        return 200, {"ready": True}

    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Greenlight sample {version}</title></head>\n"
        "<body><h1>Greenlight sample app</h1><p>version {version}, colour {color}</p>"
        "</body></html>\n"
    )
    login = (
        '<!doctype html>\n<html lang="en"><head><title>Log in | Sample admin</title></head>'
        '<body><form method="post" action="/admin/login/"><input name="username">'
        '<input name="password" type="password"><button>Log in</button></form>'
        "</body></html>\n"
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and
        # delayed ACKs add 40 ms to every kept-alive response.
        disable_nagle_algorithm = True
        server_version = "GreenlightSample/1"
        timeout = 120  # idle keep-alive connections are closed after this

        def log_message(self, format: str, *args: object) -> None:
            if os.environ.get("APP_ACCESS_LOG"):
                super().log_message(format, *args)

        def do_GET(self) -> None:
            self.handle_request(head=False)

        def do_HEAD(self) -> None:
            self.handle_request(head=True)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send(
                405,
                *as_json({"detail": 'Method "POST" not allowed.'}),
                head=False,
                extra={"Allow": "GET, HEAD"},
            )

        def handle_request(self, head: bool) -> None:
            with lock:
                state["active"] += 1
            try:
                status, ctype, body, extra = self.route()
                if FAULT == "slow":
                    time.sleep(SLOW_SECONDS)
                self.send(status, ctype, body, head=head, extra=extra)
            finally:
                with lock:
                    state["active"] -= 1

        def route(self) -> tuple[int, str, bytes, dict[str, str]]:
            path = self.path.split("?", 1)[0]
            if failing_now(proxied=self.headers.get("X-Forwarded-For") is not None):
                return (
                    *as_json({"detail": "Internal server error (fault delayed500)"}, status=500),
                    {},
                )
            if path == "/api/health/":
                if FAULT == "health500":
                    return (
                        *as_json(
                            {
                                "status": "error",
                                "version": VERSION,
                                "color": COLOR,
                                "detail": "fault health500",
                            },
                            status=500,
                        ),
                        {},
                    )
                return (*as_json({"status": "ok", "version": VERSION, "color": COLOR}), {})
            if path == "/api/system/readiness/":
                status, payload = readiness()
                return (*as_json(payload, status=status), {})
            if path == "/api/v1/auth/status/":
                return (*as_json({"authenticated": False}), {})
            if path == "/api/v1/users/me/":
                auth = self.headers.get("Authorization") or ""
                detail = (
                    "Invalid token."
                    if auth.startswith("Bearer ")
                    else "Authentication credentials were not provided."
                )
                return (
                    *as_json({"detail": detail}, status=401),
                    {"WWW-Authenticate": 'Bearer realm="api"'},
                )
            if path == "/admin":
                return 301, "text/plain", b"", {"Location": "/admin/"}
            if path == "/admin/":
                return (
                    302,
                    "text/html; charset=utf-8",
                    b"",
                    {"Location": "/admin/login/?next=/admin/"},
                )
            if path == "/admin/login/":
                return 200, "text/html; charset=utf-8", login.encode(), {}
            if path == "/":
                html = page.format(version=VERSION, color=COLOR)
                return 200, "text/html; charset=utf-8", html.encode(), {}
            return (*as_json({"detail": "Not found."}, status=404), {})

        def send(
            self,
            status: int,
            ctype: str,
            body: bytes,
            head: bool,
            extra: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-App-Version", VERSION)
            self.send_header("X-App-Color", COLOR)
            self.send_header("X-App-Role", ROLE)
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

    def as_json(payload: dict[str, object], status: int = 200) -> tuple[int, str, bytes]:
        return status, "application/json", json.dumps(payload).encode()

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    try:
        server = Server((BIND, PORT), Handler)
    except OSError as exc:
        print(f"cannot listen on {BIND}:{PORT}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"sample {ROLE} {VERSION} ({COLOR}, fault={FAULT}) listening on {BIND}:{PORT}", flush=True
    )
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    # Let requests already in progress finish (idle keep-alive connections just close).
    deadline = time.monotonic() + 3
    while state["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    print("sample app stopped", flush=True)
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "healthcheck": cmd_healthcheck,
    "migrate": cmd_migrate,
    "collectstatic": cmd_collectstatic,
    "backup": cmd_backup,
    "check-db": cmd_check_db,
    "check-cache": cmd_check_cache,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        print(f"usage: {argv[0]} {{{','.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    return COMMANDS[argv[1]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
