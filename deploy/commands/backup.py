"""Pre-deploy backups: the backup hook's output, the containers' state, retention."""

from __future__ import annotations

from deploy.commands import Command, data, sh
from deploy.commands.layout import Slot
from deploy.spec import HookSpec

# A backup holds the app's data (users, password hashes): only the deploy user may read
# it. The umask also covers whatever the hook writes itself; chmod covers a directory
# left by an earlier attempt.
_DUMP = r"""
umask 077
dir=$1 file=$2; shift 2
mkdir -p "$dir" && chmod 700 "$dir" && "$@" > "$dir/$file"
"""

_CONTAINERS = r"""
umask 077
docker compose ps --all --format json > "$1/containers.json"
"""

_DESCRIBE = r"""
printf 'size=%s\n' "$(stat -c %s "$1/$2")"
printf 'sha256=%s\n' "$(sha256sum "$1/$2" | cut -d ' ' -f 1)"
printf 'total_kb=%s\n' "$(du -sk "$1" | cut -f 1)"
"""

_PRUNE = r"""
[ -d "$1" ] || exit 0
find "$1" -mindepth 1 -maxdepth 1 -type d -name 'pre-deploy-*' -mtime +"$2" -print \
  -exec rm -rf {} +
"""


def dump(slot: Slot, hook: HookSpec, directory: str, file: str) -> Command:
    """Run the backup hook in the live colour; its standard output is the backup."""
    return sh(
        _DUMP,
        directory,
        file,
        *hook.command,
        step="backup hook",
        timeout=hook.timeout,
        cwd=slot.layout.app_dir,
        env=slot.env() | {"GREENLIGHT_BACKUP_DIR": directory},
    )


def save_containers(slot: Slot, directory: str) -> Command:
    return sh(
        _CONTAINERS,
        directory,
        step="save container state",
        timeout=30,
        cwd=slot.layout.app_dir,
        env=slot.env(),
        idempotent=True,  # rewrites one file with what compose answers now
    )


def describe(app_dir: str, directory: str, file: str) -> Command:
    return data(
        _DESCRIBE,
        directory,
        file,
        step="measure backup",
        timeout=120,
        cwd=app_dir,
        idempotent=True,
    )


def prune(app_dir: str, root: str, retention_days: int) -> Command:
    return sh(
        _PRUNE,
        root,
        str(retention_days - 1),
        step="prune old backups",
        timeout=120,
        cwd=app_dir,
        idempotent=True,  # a second run finds nothing more past retention
    )
