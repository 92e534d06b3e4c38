"""HAProxy on a balancer: the names in its configuration, and its runtime API (shell commands run over SSH, and a
parser of what they print).

The runtime API listens on a local unix socket only (ADMIN_SOCKET, root's alone); commands reach it through socat.
Every server of the backend BACKEND is the head of one cluster, named after the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .shell import quote

UNIT = "haproxy.service"  # the distribution's unit, with llamafleet's drop-in
ADMIN_SOCKET = "/run/haproxy/admin.sock"
FRONTEND = "api"
BACKEND = "heads"
# Cluster names as the inventory allows them (its `name` type): nothing a configuration line or a runtime-API
# command could split, nothing haproxy reads as an option.
SERVER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,252}")
# socat waits this long for haproxy's answer (-T: idle; -t: after our side closed).
SOCAT = "socat -t 10 -T 10 - %s"

AdminState = Literal["ready", "drain", "maint"]
OperationalState = Literal["down", "starting", "up", "stopping"]
ADMIN_STATES: tuple[AdminState, ...] = ("ready", "drain", "maint")

# srv_admin_state of `show servers state` is a bit field (haproxy's SRV_ADMF_*): forced, inherited, configured,
# resolution and hostname maintenance; forced and inherited drain.
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_BITS = 0x08 | 0x10
# srv_op_state (SRV_ST_*): stopped, starting, running, stopping.
_OPERATIONAL: dict[str, OperationalState] = {"0": "down", "1": "starting", "2": "up", "3": "stopping"}


def server_name(cluster: str) -> str:
    """The server of the cluster's head in BACKEND: the cluster's name, refused unless letters, digits, '_' and '-'
    (not first), at most 253."""
    if not isinstance(cluster, str) or not SERVER_NAME.fullmatch(cluster):
        raise ValueError(f"cluster name {cluster!r} is not letters, digits, '_' and '-' (not first), at most 253")
    return cluster


def server_path(cluster: str) -> str:
    """`heads/<cluster>`: how runtime-API commands name the cluster's server."""
    return f"{BACKEND}/{server_name(cluster)}"


# -- commands ------------------------------------------------------------------------------------------------


def runtime(*commands: str, socket: str = ADMIN_SOCKET) -> str:
    """Shell command sending `commands` on one line (haproxy runs them in order) to the runtime API; prints the
    answers, one blank line after each. Fails when the socket cannot be reached."""
    line = "; ".join(commands)
    if "\n" in line or not line:
        raise ValueError(f"runtime-API commands must be one non-empty line: {line!r}")
    return quote("printf '%%s\\n' %s | " + SOCAT, line, f"UNIX-CONNECT:{socket}")


# haproxy answers `set server` with an empty line when it did it, otherwise with the reason ("No such server.").
_ACCEPTED = '(out=$(%s) || exit 1; [ -z "$out" ] || { printf "haproxy %%s: %%s\\n" %s "$out" >&2; exit 1; })'


def set_state(cluster: str, state: AdminState, socket: str = ADMIN_SOCKET) -> str:
    """Shell command putting the cluster's server in `state`: ready (in rotation when its checks pass), drain (no
    new requests, those in flight finish) or maint (no requests, no checks). Exit 0 only when haproxy accepted it;
    otherwise haproxy's answer on stderr."""
    if state not in ADMIN_STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(ADMIN_STATES)}")
    command = f"set server {server_path(cluster)} state {state}"
    return _ACCEPTED % (runtime(command, socket=socket), quote("%s", command))


def show_servers(socket: str = ADMIN_SOCKET) -> str:
    """Shell command printing BACKEND's servers: `show servers state` (addresses, admin and operational state),
    then `show stat` (current sessions); parse_servers reads its output."""
    return runtime(f"show servers state {BACKEND}", "show stat", socket=socket)


# Polls `show stat` once a second ($1: backend, $2: server, $3: seconds); the scur column is found by its name.
_WAIT_DRAINED = (
    "start=$SECONDS; while :; do "
    'n=$(SHOW_STAT | awk -F, -v b="$1" -v s="$2" '
    '\'/^# pxname,/ { for (i = 1; i <= NF; i++) if ($i == "scur") c = i; next } '
    "c && $1 == b && $2 == s { print $c }'); "
    '[ -n "$n" ] || { echo "haproxy: no server $1/$2" >&2; exit 1; }; '
    '[ "$n" -eq 0 ] && { echo "drained after $((SECONDS - start)) s"; exit 0; }; '
    '[ $((SECONDS - start)) -lt "$3" ] || { echo "$n requests still in flight on $1/$2 after $3 s" >&2; exit 3; }; '
    "sleep 1; done"
)


def wait_drained(cluster: str, seconds: int, socket: str = ADMIN_SOCKET) -> str:
    """Shell command waiting, at most `seconds`, until the cluster's server has no session left (its requests in
    flight finished). Exit 0 when drained, 3 when time ran out with requests still in flight (counted on stderr),
    1 when haproxy could not be asked or has no such server."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"seconds must be a whole number >= 0, not {seconds!r}")
    script = _WAIT_DRAINED.replace("SHOW_STAT", runtime("show stat", socket=socket))
    return quote("bash -c %s wait-drained %s %s %s", script, BACKEND, server_name(cluster), seconds)


# Polls `show servers state` until it lists the configured servers ($1: seconds, $2: backend, then the names in
# order). Right after a reload the socket may still be the old process's, which answers for the old configuration.
_WAIT_CONFIGURED = (
    'seconds=$1; backend=$2; shift 2; want="$*"; start=$SECONDS; while :; do '
    'got=$(SHOW_STATE 2>/dev/null | awk -v b="$backend" '
    '\'$1 !~ /^#/ && $2 == b { printf "%s%s", sep, $4; sep = " " }\'); '
    '[ "$got" = "$want" ] && exit 0; '
    '[ $((SECONDS - start)) -lt "$seconds" ] || '
    '{ echo "haproxy serves [$got] after $seconds s, not the configured [$want]" >&2; exit 1; }; '
    "sleep 0.2; done"
)


def wait_configured(clusters: Sequence[str], seconds: int = 30, socket: str = ADMIN_SOCKET) -> str:
    """Shell command waiting, at most `seconds`, until the runtime API answers for a configuration whose servers
    are the clusters' (in order): after a reload, the process that has read it. Exit 1 when it does not."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"seconds must be a whole number >= 0, not {seconds!r}")
    names = [server_name(cluster) for cluster in clusters]
    script = _WAIT_CONFIGURED.replace("SHOW_STATE", runtime(f"show servers state {BACKEND}", socket=socket))
    return quote("bash -c %s wait-configured %s %s" + " %s" * len(names), script, seconds, BACKEND, *names)


# -- their output --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One head as the balancer sees it."""

    name: str  # the cluster's name
    address: str
    port: int
    admin: AdminState  # what llamafleet (or an operator) set
    operational: OperationalState  # what the health checks found
    sessions: int  # requests in flight (scur)
    status: str  # haproxy's own word for both (`show stat`): UP, DOWN, DRAIN, MAINT, "DOWN 1/2" (rising) ...
    check: str = ""  # the last health check's result (`show stat` check_status): L7OK, L4CON, L4TOUT, INI ...

    @property
    def in_rotation(self) -> bool:
        """New requests may go to it: ready and its checks pass."""
        return self.admin == "ready" and self.operational == "up"

    @property
    def checked(self) -> bool:
        """A health check finished since haproxy (re)started (a new server is UP until its first checks fail; a
        server in maintenance has no check to wait for)."""
        return self.check != "INI"

    @property
    def serving(self) -> bool:
        """In rotation, and its last health check passed."""
        return self.in_rotation and self.check in PASSED


PASSED = ("L7OK", "L7OKC", "L6OK", "L4OK")  # check_status of a passed check (llamafleet's are L7: GET /health)


def parse_servers(lines: Iterable[str], backend: str = BACKEND) -> dict[str, Server]:
    """show_servers()'s output -> the servers of `backend` by name, in configuration order.

    Columns are found by their names in each header. ValueError when a part or a column is missing (not haproxy's
    runtime API talking, or the socket answered something else).
    """
    state_rows, stat_rows = _tables(list(lines))
    stats = {row.get("svname"): row for row in stat_rows if row.get("pxname") == backend}
    try:
        ours = [row for row in state_rows if row["be_name"] == backend]
        return {row["srv_name"]: _server(row, stats[row["srv_name"]]) for row in ours}
    except KeyError as missing:
        raise ValueError(f"haproxy's answer has no {missing} for a server of {backend}") from None


def _server(state: dict[str, str], stat: dict[str, str]) -> Server:
    return Server(
        name=state["srv_name"],
        address=state["srv_addr"],
        port=int(state["srv_port"]),
        admin=_admin(int(state["srv_admin_state"])),
        operational=_OPERATIONAL[state["srv_op_state"]],
        sessions=int(stat["scur"] or 0),
        status=stat["status"],
        check=stat.get("check_status", "").removeprefix("* "),  # "* " while a check runs
    )


def _admin(bits: int) -> AdminState:
    return "maint" if bits & _MAINT_BITS else "drain" if bits & _DRAIN_BITS else "ready"


def _tables(lines: list[str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The rows of `show servers state` (space-separated, after a version line) and of `show stat` (CSV)."""
    headers = [index for index, line in enumerate(lines) if line.startswith("# ")]
    state = next((i for i in headers if not lines[i].startswith("# pxname,")), None)
    stat = next((i for i in headers if lines[i].startswith("# pxname,")), None)
    if state is None or stat is None:
        raise ValueError("not the output of `show servers state` and `show stat`")
    return _rows(lines, state, " "), _rows(lines, stat, ",")


def _rows(lines: list[str], header: int, separator: str) -> list[dict[str, str]]:
    """The rows under a header up to the next blank line, each a dict of the columns it has."""
    names = lines[header].removeprefix("# ").split(separator)
    rows = []
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        rows.append(dict(zip(names, line.split(separator), strict=False)))
    return rows
