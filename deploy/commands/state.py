"""Target state kept on each host, under `<app_dir>/.greenlight/`.

    epoch              deploy epoch, the fencing token; +1 each time the lock is taken
    lock/              the deploy lock: `mkdir` is atomic; holds `token` and `owner.json`
    colors/<c>.json    what each colour runs (version, digest, deployment, status)
    verdicts/<v>       the last verdict on a version: good, or bad with the reason
    history.jsonl      one line per finished deployment, append-only

Which colour is live is not stored here: the proxy's upstream file says so (see
`deploy.commands.proxy`), so the two can never disagree.
"""

from __future__ import annotations

from deploy.commands import Command, sh
from deploy.commands.layout import Layout

LOCK_HELD_EXIT = 3

_READ = r"""
d=$1 up=$2
echo '@@epoch'; cat "$d/epoch" 2>/dev/null
echo '@@upstream'; cat "$up" 2>/dev/null
echo '@@blue'; cat "$d/colors/blue.json" 2>/dev/null
echo '@@green'; cat "$d/colors/green.json" 2>/dev/null
echo '@@lock'; cat "$d/lock/owner.json" 2>/dev/null
echo '@@verdicts'
for f in "$d"/verdicts/*; do [ -f "$f" ] && cat "$f"; done
echo '@@history'; tail -n "$3" "$d/history.jsonl" 2>/dev/null
echo '@@end'
"""

_ACQUIRE = (
    r"""
d=$1 token=$4 owner=$5
mkdir -p "$d" || exit 1
if mkdir "$d/lock" 2>/dev/null; then
  printf '%s\n' "$token" > "$d/lock/token"
  printf '%s\n' "$owner" > "$d/lock/owner.json"
  n=$(cat "$d/epoch" 2>/dev/null || echo 0)
  n=$((n + 1))
  printf '%s\n' "$n" > "$d/epoch.tmp" && mv -f "$d/epoch.tmp" "$d/epoch" || exit 1
  echo '@@acquired'
elif [ "$(cat "$d/lock/token" 2>/dev/null)" = "$token" ]; then
  echo '@@acquired'
else
  echo '@@held'
fi
"""
    + _READ
    + r"""
[ "$(cat "$d/lock/token" 2>/dev/null)" = "$token" ] || exit 3
"""
)

_RELEASE = r"""
d=$1 token=$2
if [ "$(cat "$d/lock/token" 2>/dev/null)" = "$token" ]; then
  rm -rf "$d/lock" && echo released
else
  echo 'not held by this deployment'
fi
"""

_BREAK = r"""
d=$1
cat "$d/lock/owner.json" 2>/dev/null || echo 'no lock'
rm -rf "$d/lock"
"""

_WRITE = r"""
dir=$1 name=$2
mkdir -p "$dir" && cat > "$dir/.$name.tmp" && mv -f "$dir/.$name.tmp" "$dir/$name"
"""

_APPEND = r"""
mkdir -p "$1" || exit 1
grep -qF "\"deployment\":\"$3\"" "$1/$2" 2>/dev/null && exit 0
cat >> "$1/$2"
"""


def read(layout: Layout, history: int = 20) -> Command:
    return sh(
        _READ,
        layout.state_dir,
        layout.upstream_file,
        str(history),
        step="read deploy state",
        timeout=30,
    )


def acquire_lock(layout: Layout, token: str, owner_json: str, history: int = 20) -> Command:
    """Take the lock (or confirm we hold it), bump the epoch, and print the state.

    `token` is the deployment's own random token, not its id: two deployments of the
    same version in the same second share an id, never a token.
    """
    return sh(
        _ACQUIRE,
        layout.state_dir,
        layout.upstream_file,
        str(history),
        token,
        owner_json,
        step="take the deploy lock",
        timeout=30,
    )


def release_lock(layout: Layout, token: str) -> Command:
    return sh(_RELEASE, layout.state_dir, token, step="release the deploy lock", timeout=30)


def break_lock(layout: Layout) -> Command:
    return sh(_BREAK, layout.state_dir, step="break the deploy lock", timeout=30)


def write_file(directory: str, name: str, content: str, step: str) -> Command:
    """Replace a file atomically: write beside it, then rename over it."""
    return sh(_WRITE, directory, name, step=step, timeout=30, stdin=content)


def write_color(layout: Layout, color: str, record_json: str) -> Command:
    return write_file(
        f"{layout.state_dir}/colors",
        f"{color}.json",
        record_json + "\n",
        step=f"record {color}",
    )


def write_verdict(layout: Layout, version: str, verdict_json: str) -> Command:
    return write_file(
        f"{layout.state_dir}/verdicts",
        version,
        verdict_json + "\n",
        step=f"record verdict on {version}",
    )


def append_history(layout: Layout, deployment: str, entry_json: str) -> Command:
    """Append once: a retried finalize finds its line already there and adds nothing."""
    return sh(
        _APPEND,
        layout.state_dir,
        "history.jsonl",
        deployment,
        step="append to history",
        timeout=30,
        stdin=entry_json + "\n",
    )
