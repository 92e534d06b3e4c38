"""`invoke status`: one row per host in inventory order, read in one round trip per host.

What a row holds: the host's part (head or worker), its service's state and uptime, the llama.cpp
build in use, the address its service listens on, and on the head the deployed model (present, and
the same size as when deployed), /health and the slots in use. The API key is read on the head from
its root-only file by the shell that sends the request: it never appears in an argument list.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import cluster, haproxy, paths, tls
from .shell import quote

if TYPE_CHECKING:
    from .inventory import Host, Inventory
    from .runner import Runner

MARK = "@lf "  # every line of the status script starts with it; anything else (a login banner) is ignored

# The head's API, asked from the head itself: GET path with the key from its file, status line then body.
HTTP_GET = (
    'exec 3<>"/dev/tcp/$1/$2" || exit 1; key=; [ -r "$4" ] && read -r key < "$4"; '
    'printf \'GET %s HTTP/1.0\\r\\nHost: localhost\\r\\nAuthorization: Bearer %s\\r\\n\\r\\n\' "$3" "$key" >&3; '
    "cat <&3"
)
# The same over TLS (api_tls): through openssl s_client, the certificate verified with the CA on the head.
HTTPS_GET = (
    'key=; [ -r "$4" ] && read -r key < "$4"; '
    'printf \'GET %s HTTP/1.0\\r\\nHost: localhost\\r\\nAuthorization: Bearer %s\\r\\n\\r\\n\' "$3" "$key" | '
)
# When the head's certificate ends, as openssl prints it ("notAfter=Jan  1 00:00:00 2031 GMT").
CERT_END = "openssl x509 -noout -enddate -in %s 2>/dev/null"


@dataclass
class Row:
    """What status shows for one host."""

    host: str
    part: str  # head | worker | -
    reachable: bool = True
    error: str | None = None
    os: str | None = None  # ID VERSION_ID machine, e.g. debian 12 x86_64
    unit: str | None = None
    state: str | None = None  # e.g. active (running), inactive (dead), absent
    uptime_s: int | None = None
    restarts: int | None = None
    version: str | None = None
    release: str | None = None
    listening: list[str] = field(default_factory=list)
    model: str | None = None
    model_state: str | None = None  # present | missing | changed size (...) | none deployed
    health: str | None = None  # 200 ok | 503 loading | not answering
    slots_busy: int | None = None
    slots_total: int | None = None
    cluster: str | None = None  # the cluster of a head or worker
    rotation: str | None = None  # a head behind balancers: in | out (the balancers' view of it, each once)
    tls_until: str | None = None  # api_tls: when the head's certificate ends (UTC date), "none" without one
    servers: dict[str, str] = field(default_factory=dict)  # a balancer: cluster -> "admin-state STATUS"
    tunnel: str | None = None  # cluster_tunnel: its peers and the oldest latest handshake

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read(inv: Inventory, connect: Callable[[], Runner]) -> tuple[list[Row], int]:
    """One row per host, cluster by cluster (head first then the workers in inventory order), read in parallel;
    and the exit code.

    The clusters' addresses and the heads' settings are checked before `connect` makes the runner.
    """
    from .roles.head import role as head_role  # role modules load with the task that uses them

    fleet = cluster.fleet(inv)
    heads = {view.head: head_role.settings.settings(inv.hosts[view.head], str(inv.path)) for view in fleet.clusters}
    balancers = {balancer.name for balancer in fleet.balancers}
    runner = connect()
    order = [name for view in fleet.clusters for name in (view.head, *(w.name for w in view.workers))]
    order += [balancer.name for balancer in fleet.balancers]
    hosts = sorted(runner.hosts, key=lambda h: order.index(h.name) if h.name in order else len(order))
    rows: dict[str, Row] = {}

    def probe(host: Host) -> None:
        part, port, api, tls_name = "-", None, None, None
        view = fleet.of(host.name)
        if host.name in heads:
            head = heads[host.name]
            part, port, api = "head", head.api_port, (head_role.probe_address(head), head.api_port)
            tls_name = head_role.api_tls.verify_name(head, str(inv.path)) if head.api_tls else None
        elif view is not None:
            part, port = "worker", view.worker(host.name).port
        elif host.name in balancers:
            part, port = "balancer", host.vars["balancer_port"]
        links = fleet.links(host.name)
        tunnel = links.interface if links is not None else None
        text = runner.remote(host, script(part, port, api, tls_name, tunnel)).stdout
        rows[host.name] = parse(host.name, part, port, text, view.name if view else None)

    try:
        runner.each_host(hosts, probe)
    finally:
        runner.close()
    _rotation(rows, fleet)
    for result in runner.output.results:  # unreachable (or failed) hosts still get their row
        if result.host not in rows:
            part = "head" if result.host in heads else "balancer" if result.host in balancers else "-"
            part = "worker" if part == "-" and fleet.of(result.host) else part
            view = fleet.of(result.host)
            rows[result.host] = Row(result.host, part, reachable=False, error=result.reason)
            rows[result.host].cluster = view.name if view else None
    return [rows[h.name] for h in hosts if h.name in rows], runner.exit_code()


def script(
    part: str, port: int | None, api: tuple[str, int] | None, tls_name: str | None = None, tunnel: str | None = None
) -> str:
    """The shell script that reads one host's status (one round trip); `tls_name`: the head serves HTTPS, its
    certificate must name it; `tunnel`: the host's WireGuard interface (cluster_tunnel)."""
    mark = f"sed 's|^|{MARK}%s |'"  # prefixes each line of a command's output with MARK and a kind
    version = r"sed -n 's/^ *\"version\": *\"\([^\"]*\)\".*/\1/p' %s/BUILD.json 2>/dev/null | head -n1"
    lines = [
        '( . /etc/os-release 2>/dev/null; echo "$ID $VERSION_ID $(uname -m)" ) | ' + mark % "os",
        quote("readlink %s 2>/dev/null | ", paths.CURRENT_LINK) + mark % "release",
        quote(version, paths.CURRENT_LINK) + " | " + mark % "version",
        "cut -d' ' -f1 /proc/uptime | " + mark % "now",  # CLOCK_BOOTTIME, as systemd's monotonic stamps
    ]
    if tunnel:  # each peer's latest handshake (epoch seconds, 0: never), then the time now
        from .roles.tunnel import wireguard  # role modules load with the task that uses them

        lines.append(f"{wireguard.handshakes(tunnel)} | " + mark % "wg")
    unit = {"worker": paths.RPC_UNIT, "head": paths.SERVER_UNIT, "balancer": haproxy.UNIT}.get(part)
    if unit:
        props = "-p LoadState -p ActiveState -p SubState -p NRestarts -p ActiveEnterTimestampMonotonic"
        lines.append(quote(f"systemctl show {props} %s 2>/dev/null | ", unit) + mark % "unit")
    if port:
        lines.append("ss -Htln 2>/dev/null | awk '{print $4}' | " + mark % "listen")
    if part == "balancer":
        lines.append(f"{{ {haproxy.show_servers()}; }} 2>/dev/null | " + mark % "haproxy")
    if api:
        lines.append(quote("{ tr -d '\\n' < %s; echo; } 2>/dev/null | ", paths.DEPLOYED_MODEL) + mark % "model")
        lines.append(
            quote("find %s -maxdepth 1 -type f -printf '%%s %%f\\n' 2>/dev/null | ", paths.MODELS_DIR) + mark % "file"
        )
        if tls_name:
            end = quote(CERT_END, tls.CERT_FILE)
            lines.append(f"{{ {end} || echo none; }} | " + mark % "tls")
        getter = HTTP_GET if not tls_name else "host=$1; port=$2; " + HTTPS_GET + _client(tls_name)
        for name in ("/health", "/slots"):
            get = quote("timeout 3 bash -c %s get %s %s %s %s", getter, api[0], api[1], name, paths.API_KEY_FILE)
            lines.append(f"{{ {get} 2>/dev/null | tr -d '\\r' | tr '\\n' ' '; echo; }} | " + mark % f"http {name}")
    return "\n".join(lines) + "\n"


def _client(tls_name: str) -> str:
    from .roles.head import api_tls  # role modules load with the task that uses them

    return api_tls.client(tls_name)


def parse(host: str, part: str, port: int | None, text: str, cluster_name: str | None = None) -> Row:
    """A Row from the status script's output (lines not starting with MARK are ignored)."""
    row = Row(host, part, cluster=cluster_name)
    unit: dict[str, str] = {}
    haproxy_lines: list[str] = []
    wg_lines: list[str] = []
    record, sizes, now = None, {}, None
    for line in text.splitlines():
        if not line.startswith(MARK):
            continue
        kind, _, value = line[len(MARK) :].partition(" ")
        if kind == "os":
            row.os = " ".join(value.split()) or None
        elif kind == "release":
            row.release = value.rsplit("/", 1)[-1] or None
        elif kind == "version":
            row.version = value or None
        elif kind == "now" and value.replace(".", "", 1).isdigit():
            now = float(value)
        elif kind == "unit":
            key, _, found = value.partition("=")
            unit[key] = found
        elif kind == "listen" and port and value.rsplit(":", 1)[-1] == str(port):
            row.listening.append(value)
        elif kind == "model" and value:
            record = value
        elif kind == "file":
            size, _, name = value.partition(" ")
            sizes[name] = size
        elif kind == "http":
            _http(row, value)
        elif kind == "haproxy":
            haproxy_lines.append(value)
        elif kind == "wg":
            wg_lines.append(value)
        elif kind == "tls":
            row.tls_until = _cert_end(value)
    if part in ("head", "worker", "balancer"):
        row.unit = {"head": paths.SERVER_UNIT, "worker": paths.RPC_UNIT, "balancer": haproxy.UNIT}[part]
        _unit(row, unit, now)
    if wg_lines:
        row.tunnel = _tunnel(wg_lines)
    if part == "balancer":
        try:
            servers = haproxy.parse_servers(haproxy_lines)
        except ValueError:
            servers = {}
        row.servers = {name: f"{s.admin} {s.status}" for name, s in servers.items()}
    if part == "head":
        row.model, row.model_state = _model(record, sizes)
    return row


def _tunnel(lines: list[str]) -> str:
    """The tunnel's handshakes (roles/tunnel/wireguard.handshakes) as one cell: peers and the oldest one's age."""
    from .roles.tunnel import wireguard

    if "down" in lines:
        return "down"
    ages = wireguard.handshake_ages(lines)
    if not ages:
        return "no peer"
    if None in ages.values():
        return f"{len(ages)} peer(s), not all shook hands"
    return f"{len(ages)} peer(s), handshake {max(age for age in ages.values() if age is not None)}s ago"


def _rotation(rows: dict[str, Row], fleet: cluster.Fleet) -> None:
    """Each head's place in the balancers' rotation, from what the balancers said: in (ready and UP on every
    balancer that answered), else out with the states seen."""
    seen = [row.servers for row in rows.values() if row.part == "balancer" and row.reachable]
    if not fleet.balancers:
        return
    for view in fleet.clusters:
        if view.head not in rows:
            continue
        states = sorted({servers.get(view.name, "not a server") for servers in seen})
        if not states:
            rows[view.head].rotation = "unknown"
        elif states == ["ready UP"]:
            rows[view.head].rotation = "in"
        else:
            rows[view.head].rotation = "out (" + ", ".join(states) + ")"


def _unit(row: Row, unit: dict[str, str], now: float | None) -> None:
    if unit.get("LoadState") != "loaded":
        row.state = "absent"
        return
    row.state = f"{unit.get('ActiveState', '?')} ({unit.get('SubState', '?')})"
    restarts = unit.get("NRestarts", "")
    row.restarts = int(restarts) if restarts.isdigit() else None
    since = unit.get("ActiveEnterTimestampMonotonic", "")  # microseconds since boot
    if unit.get("ActiveState") == "active" and since.isdigit() and int(since) and now is not None:
        row.uptime_s = max(0, int(now - int(since) / 1e6))


def _model(record: str | None, sizes: dict[str, str]) -> tuple[str | None, str]:
    """The deployed model's name and whether its file is there, as large as when it was deployed."""
    if record is None:
        return None, "none deployed"
    try:
        found = json.loads(record)
    except ValueError:
        found = None
    name = found.get("name") if isinstance(found, dict) else None
    if not isinstance(name, str):
        return None, f"unreadable {paths.DEPLOYED_MODEL}"
    size, want = sizes.get(name), str(found.get("size", ""))
    if size is None:
        return name, "missing"
    return name, "present" if size == want or not want else f"changed size ({size} bytes, deployed {want})"


def _cert_end(value: str) -> str:
    """'notAfter=Jan  1 00:00:00 2031 GMT' -> '2031-01-01'; 'none' without a certificate."""
    text = " ".join(value.removeprefix("notAfter=").split())
    try:
        return datetime.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").strftime("%Y-%m-%d")
    except ValueError:
        return "none"


def _http(row: Row, value: str) -> None:
    path, _, response = value.partition(" ")
    words = response.split(" ", 2)
    code = words[1] if len(words) > 1 and words[0].startswith("HTTP/") else None
    if path == "/health":
        row.health = {"200": "200 ok", "503": "503 loading"}.get(code or "", code or "not answering")
    elif path == "/slots" and code == "200":
        body = response[response.find("[") :] if "[" in response else ""
        try:
            slots = json.loads(body)
        except ValueError:
            return
        if isinstance(slots, list):
            row.slots_total = len(slots)
            row.slots_busy = sum(1 for s in slots if isinstance(s, dict) and s.get("is_processing"))


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table (with a CLUSTER column when the hosts are of several clusters)."""
    header = ("HOST", "PART", "SERVICE", "UP", "LLAMA.CPP", "LISTENING", "MODEL", "HEALTH", "SLOTS")
    body = [header] + [_cells(row) for row in rows]
    if any(row.tunnel for row in rows):
        body = [(*body[0], "TUNNEL")] + [(*cells, row.tunnel or "-") for row, cells in zip(rows, body[1:], strict=True)]
    if any(row.rotation for row in rows):
        body = [(*body[0], "BALANCER")] + [
            (*cells, row.rotation or "-") for row, cells in zip(rows, body[1:], strict=True)
        ]
    if len({row.cluster for row in rows if row.cluster}) > 1:
        body = [("CLUSTER", *body[0])] + [
            (row.cluster or "-", *cells) for row, cells in zip(rows, body[1:], strict=True)
        ]
    widths = [max(len(r[i]) for r in body) for i in range(len(body[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body)


def _cells(row: Row) -> tuple[str, ...]:
    if not row.reachable:
        return (row.host, row.part, f"unreachable: {row.error or ''}"[:60], "", "", "", "", "", "")
    service = row.state or "-"
    if row.restarts:
        service += f", {row.restarts} restarts"
    model = f"{row.model} ({row.model_state})" if row.model else (row.model_state or "-")
    slots = f"{row.slots_busy}/{row.slots_total}" if row.slots_total is not None else "-"
    return (
        row.host,
        row.part,
        service,
        _duration(row.uptime_s),
        row.version or "none",
        ",".join(row.listening) or "-",
        model if row.part == "head" else "-",
        (row.health or "-") + (f", tls until {row.tls_until}" if row.tls_until else ""),
        slots,
    )


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"
