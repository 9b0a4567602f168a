"""The proxy's upstream file: which colour takes traffic.

The file starts with a marker line naming the colour, version, deployment and epoch
that wrote it, so reading the file tells what is live. Writing checks the fencing
token first: a job whose epoch is no longer the host's current one cannot switch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deploy.commands import Command, command, sh
from deploy.commands.layout import Layout
from deploy.spec import Color, ProxySpec

FENCED_EXIT = 75
_MARKER = re.compile(
    r"^# greenlight color=(?P<color>blue|green) version=(?P<version>\S+) "
    r"deployment=(?P<deployment>\S+) epoch=(?P<epoch>\d+)$",
    re.MULTILINE,
)

_WRITE_FENCED = r"""
d=$1 up=$2 epoch=$3
mkdir -p "$d" || exit 1
exec 9>"$d/.switch"
flock -w 10 9 || { echo 'another switch is in progress' >&2; exit 1; }
current=$(cat "$d/epoch" 2>/dev/null)
if [ "$current" != "$epoch" ]; then
  echo "fenced: the host is at epoch ${current:-none}, this deployment holds epoch $epoch" >&2
  exit 75
fi
cat > "$up.greenlight-tmp" && mv -f "$up.greenlight-tmp" "$up"
"""


@dataclass(frozen=True)
class Live:
    color: Color
    version: str
    deployment: str
    epoch: int


def upstream_text(
    template: str,
    *,
    color: Color,
    address: str,
    port: int,
    version: str,
    deployment: str,
    epoch: int,
) -> str:
    marker = f"# greenlight color={color} version={version} deployment={deployment} epoch={epoch}"
    return f"{marker}\n{template.format(address=address, port=port)}\n"


def parse_live(text: str) -> Live | None:
    match = _MARKER.search(text)
    if match is None:
        return None
    return Live(
        match["color"],  # type: ignore[arg-type]
        match["version"],
        match["deployment"],
        int(match["epoch"]),
    )


def write_upstream(layout: Layout, content: str, epoch: int) -> Command:
    return sh(
        _WRITE_FENCED,
        layout.state_dir,
        layout.upstream_file,
        str(epoch),
        step="write proxy upstream",
        timeout=30,
        stdin=content,
    )


def test_config(proxy: ProxySpec) -> Command:
    return command(*proxy.test, step="test proxy config", timeout=30)


def reload(proxy: ProxySpec) -> Command:
    return command(*proxy.reload, step="reload proxy", timeout=30)
