"""Target state kept on each host, under `<app_dir>/.greenlight/`.

    epoch              deploy epoch, the fencing token; +1 each time the lock is taken
    lock/              the deploy lock: `mkdir` is atomic; holds `token` and `owner.json`
    colors/<c>.json    what each colour runs (version, digest, deployment, status)
    verdicts/<v>       the last verdict on a version: good, or bad with the reason
    switch.json        a switch in progress: written before the upstream file changes,
                       removed only once the proxy is confirmed to serve what it says
    history.jsonl      one line per finished deployment, append-only

Which colour is live is not stored here: the proxy's upstream file says so (see
`deploy.commands.proxy`), so the two can never disagree.

A read answers in sections, each always present, ending with `@@end`: the parser
refuses an answer that lacks any of them. It stays small however long the host has
been deployed to: bad versions by name only, the last few releases and history lines.
"""

from __future__ import annotations

from deploy.commands import Command, data, sh
from deploy.commands.layout import Layout

LOCK_HELD_EXIT = 3
# Releases (history lines of deployments that went live) a read brings back: enough to
# find the last good release before the live one, whatever failed in between.
RELEASES = 20
SECTIONS = (
    "epoch",
    "upstream",
    "blue",
    "green",
    "lock",
    "switch",
    "bad",
    "releases",
    "history",
    "end",
)

# `show` prints a file or nothing, and fails the read if a file that exists cannot be
# read: an unreadable file must never look like an absent one.
_READ = r"""
d=$1 up=$2 n=$3 releases=$4
show() { if [ -e "$1" ]; then cat "$1" || exit 1; fi; }
echo '@@epoch'; show "$d/epoch"
echo '@@upstream'; show "$up"
echo '@@blue'; show "$d/colors/blue.json"
echo '@@green'; show "$d/colors/green.json"
echo '@@lock'; show "$d/lock/owner.json"
echo '@@switch'; show "$d/switch.json"
echo '@@bad'
if [ -d "$d/verdicts" ]; then
  grep -rl '"verdict":"bad"' "$d/verdicts" 2>/dev/null | sed 's|.*/||'
fi
echo '@@releases'
if [ -f "$d/history.jsonl" ]; then
  grep -F '"result":"live"' "$d/history.jsonl" | tail -n "$releases"
fi
echo '@@history'
if [ -f "$d/history.jsonl" ]; then tail -n "$n" "$d/history.jsonl" || exit 1; fi
echo '@@end'
"""

_ACQUIRE = (
    r"""
d=$1 token=$5 owner=$6
mkdir -p "$d" || exit 1
n=$(cat "$d/epoch" 2>/dev/null || echo 0)
case $n in
  ''|*[!0-9]*) echo "epoch file is corrupt: $n" | head -c 80 >&2; exit 1 ;;
esac
if mkdir "$d/lock" 2>/dev/null; then
  printf '%s\n' "$token" > "$d/lock/token"
  printf '%s\n' "$owner" > "$d/lock/owner.json"
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

# Under the switch lock, so a switch in flight finishes before the epoch moves on.
_FENCE = r"""
d=$1 token=$2
exec 9>"$d/.switch"
flock -w 30 9 || { echo 'a switch is still in progress' >&2; exit 1; }
if [ "$(cat "$d/lock/token" 2>/dev/null)" != "$token" ]; then
  echo 'not held by this deployment' >&2; exit 3
fi
n=$(cat "$d/epoch" 2>/dev/null || echo 0)
case $n in
  ''|*[!0-9]*) echo "epoch file is corrupt: $n" >&2; exit 1 ;;
esac
n=$((n + 1))
printf '%s\n' "$n" > "$d/epoch.tmp" && mv -f "$d/epoch.tmp" "$d/epoch" || exit 1
echo "epoch=$n"
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


def read(layout: Layout, history: int = 10) -> Command:
    return data(
        _READ,
        layout.state_dir,
        layout.upstream_file,
        str(history),
        str(RELEASES),
        step="read deploy state",
        timeout=30,
        idempotent=True,
    )


def acquire_lock(layout: Layout, token: str, owner_json: str, history: int = 10) -> Command:
    """Take the lock (or confirm we hold it), bump the epoch, and print the state.

    `token` is the deployment's own random token, not its id: two deployments of the
    same version in the same second share an id, never a token.
    """
    return data(
        _ACQUIRE,
        layout.state_dir,
        layout.upstream_file,
        str(history),
        str(RELEASES),
        token,
        owner_json,
        step="take the deploy lock",
        timeout=30,
    )


def release_lock(layout: Layout, token: str) -> Command:
    """Release our own lock. Keyed by our token, so running it again after a drop only
    finds the lock gone (or someone else's, which it leaves alone)."""
    return sh(
        _RELEASE,
        layout.state_dir,
        token,
        step="release the deploy lock",
        timeout=30,
        idempotent=True,
    )


def fence(layout: Layout, token: str) -> Command:
    """Move the epoch on while holding the lock: whatever job of ours may still be alive
    somewhere can no longer switch this host (its epoch is stale)."""
    return data(_FENCE, layout.state_dir, token, step="fence the deploy epoch", timeout=60)


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
