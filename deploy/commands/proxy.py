"""The proxy's upstream file: which colour takes traffic.

The file starts with a marker line naming the colour, version, deployment and epoch
that wrote it, so reading the file tells what is live. Writing checks the fencing
token first: a job whose epoch is no longer the host's current one cannot switch.
"""

from __future__ import annotations

from deploy.commands import Command, sh
from deploy.commands.layout import Layout
from deploy.spec import Color, ProxySpec

FENCED_EXIT = 75
REJECTED_EXIT = 76
RELOAD_FAILED_EXIT = 77
FAILURES = {
    FENCED_EXIT: "fenced: another deployment took this host's lock since ours",
    REJECTED_EXIT: "the proxy rejected the new config; the upstream file was put back",
    RELOAD_FAILED_EXIT: "the proxy did not reload",
}

# One round trip: write the upstream (fenced by the epoch), test the config, reload.
# Before the file changes, switch.json records what the proxy served; it is removed
# only once the caller has confirmed the switch (`clear_switch`), so a controller
# killed at any point leaves a mark the next deployment reconciles. The test and
# reload argv arrive as positional words; `eval` only ever sees "${N}" references.
_POINT = r"""
d=$1 up=$2 epoch=$3 switch=$4 ntest=$5; shift 5
mkdir -p "$d" || exit 1
exec 9>"$d/.switch"
flock -w 10 9 || { echo 'another switch is in progress' >&2; exit 1; }
current=$(cat "$d/epoch" 2>/dev/null)
if [ "$current" != "$epoch" ]; then
  echo "fenced: the host is at epoch ${current:-none}, this deployment holds epoch $epoch" >&2
  exit 75
fi
cat > "$up.greenlight-tmp" || exit 1
marked=
if [ ! -e "$d/switch.json" ]; then
  printf '%s\n' "$switch" > "$d/switch.json.tmp" && mv -f "$d/switch.json.tmp" "$d/switch.json" \
    || exit 1
  marked=1
fi
had=
if [ -e "$up" ]; then cp -p "$up" "$up.greenlight-prev" || exit 1; had=1; fi
mv -f "$up.greenlight-tmp" "$up" || exit 1
i=1 t= r=
while [ "$i" -le "$ntest" ]; do t="$t \"\${$i}\""; i=$((i + 1)); done
while [ "$i" -le "$#" ]; do r="$r \"\${$i}\""; i=$((i + 1)); done
if ! eval "$t"; then
  if [ -n "$had" ]; then mv -f "$up.greenlight-prev" "$up"; else rm -f "$up"; fi
  [ -n "$marked" ] && rm -f "$d/switch.json"
  exit 76
fi
rm -f "$up.greenlight-prev"
eval "$r" || exit 77
"""

_CLEAR = r"""
d=$1 epoch=$2
exec 9>"$d/.switch"
flock -w 10 9 || { echo 'another switch is in progress' >&2; exit 1; }
[ "$(cat "$d/epoch" 2>/dev/null)" = "$epoch" ] || exit 75
rm -f "$d/switch.json"
"""


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


def point(layout: Layout, proxy: ProxySpec, content: str, epoch: int, switch_json: str) -> Command:
    """Write the upstream, test the proxy's config and reload it, fenced and marked."""
    return sh(
        _POINT,
        layout.state_dir,
        layout.upstream_file,
        str(epoch),
        switch_json,
        str(len(proxy.test)),
        *proxy.test,
        *proxy.reload,
        step="switch proxy",
        timeout=60,
        stdin=content,
    )


def clear_switch(layout: Layout, epoch: int) -> Command:
    """The switch is confirmed: the upstream file says what the proxy serves."""
    return sh(_CLEAR, layout.state_dir, str(epoch), step="finish switch", timeout=30)
