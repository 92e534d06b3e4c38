"""The facts verify reads on a host: each a shell snippet plus a pure parser, gathered in one batch per host."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

from llamafleet import haproxy, paths
from llamafleet.facts import Fact
from llamafleet.roles.tunnel import wireguard
from llamafleet.shell import quote

# The controller's API key reaches the head's batch on stdin, read into this shell variable (never argv).
KEY_VARIABLE = "LLAMAFLEET_KEY"
PROBE_SECONDS = 1  # a TCP connect on a LAN answers in milliseconds; a dropped SYN waits this long
COMPLETION_TOKENS = 8


@dataclass(frozen=True)
class Socket:
    """One TCP socket as `ss` shows it: local address and port, and the peer for established ones."""

    address: str
    port: int
    peer: str = ""


def _split_endpoint(text: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    address = address.strip("[]")
    return address.split("%", 1)[0], int(port) if port.isdigit() else 0


class Sockets(Fact):
    """TCP sockets from `ss -H`: Listening (State Recv-Q Send-Q Local Peer) or Established (no State column)."""

    COMMAND = ""
    LOCAL = 0  # the column of the local address; the peer's follows it
    PEER = False  # whether the peer is worth keeping (not for listening sockets)

    def command(self) -> str:
        return self.COMMAND

    def process(self, lines: list[str]) -> tuple[Socket, ...]:
        found = []
        for parts in (line.split() for line in lines):
            if len(parts) > self.LOCAL + 1:
                address, port = _split_endpoint(parts[self.LOCAL])
                peer = _split_endpoint(parts[self.LOCAL + 1])[0] if self.PEER else ""
                found.append(Socket(address, port, peer))
        return tuple(found)


class Listening(Sockets):
    """TCP sockets in LISTEN state."""

    COMMAND, LOCAL = "ss -Hltn", 3


class Established(Sockets):
    """Established TCP connections, with their peers."""

    COMMAND, LOCAL, PEER = "ss -Htn state established", 2, True


# systemctl show properties read for a service: its state, then the hardening its unit asks for.
STATE_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "NRestarts",
    "MainPID",
    "NeedDaemonReload",
    "FragmentPath",
    "ExecMainStartTimestampMonotonic",
    "InvocationID",
)
HARDENING = (
    "User",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateMounts",
    "PrivateDevices",
    "PrivateUsers",
    "RestrictAddressFamilies",
    "SystemCallArchitectures",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "ProcSubset",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "KeyringMode",
    "RemoveIPC",
    "UMask",
    "IPAddressDeny",
    "IPAddressAllow",
)
PROC_FIELDS = ("Uid", "NoNewPrivs", "Seccomp", "CapEff", "CapBnd")


@dataclass(frozen=True)
class ServiceState:
    """systemctl's view of a service, the kernel's view of its main process, and the host's uptime."""

    properties: dict[str, str]
    process: dict[str, str]
    uptime: float

    def get(self, name: str) -> str:
        return self.properties.get(name, "")

    @property
    def running_for(self) -> float | None:
        """Seconds since the main process started (None when it is not running)."""
        started = self.properties.get("ExecMainStartTimestampMonotonic", "0")
        if not started.isdigit() or started == "0" or self.get("MainPID") in ("", "0"):
            return None
        return self.uptime - int(started) / 1e6


MIN_UPTIME = 1.0  # seconds a service's process must have lived: rpc-server that cannot bind exits at once
# A main process younger than MIN_UPTIME (just restarted, by a provision a moment ago) is given the rest
# of it before the service is read: it is judged by whether it lives that long, not by when verify looked.
_LET_IT_LIVE = (
    'sleep $(awk -v s="$(systemctl show -p ExecMainStartTimestampMonotonic --value %s)" -v m=%s '
    "'{ d = m - ($1 - s / 1e6); print (s > 0 && d > 0 && d <= m) ? d : 0 }' /proc/uptime); "
)


class Service(Fact):
    """A service's state and hardening properties, and NoNewPrivs, Seccomp, capabilities of its main process."""

    def command(self) -> str:
        unit = self.args[0]
        return (
            quote(_LET_IT_LIVE, unit, MIN_UPTIME)
            + quote("systemctl show --no-pager -p %s %s; ", ",".join(STATE_PROPERTIES + HARDENING), unit)
            + quote("pid=$(systemctl show -p MainPID --value %s); ", unit)
            + 'if [ "${pid:-0}" -gt 0 ]; then grep -E '
            + quote("%s", f"^({'|'.join(PROC_FIELDS)}):")
            + " /proc/$pid/status | sed 's/^\\([A-Za-z]*\\):[[:space:]]*/proc.\\1=/'; fi; "
            + "echo \"uptime=$(cut -d' ' -f1 /proc/uptime)\""
        )

    def process(self, lines: list[str]) -> ServiceState:
        properties, proc, uptime = {}, {}, 0.0
        for line in lines:
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key.startswith("proc."):
                proc[key[5:]] = value.split()[0] if value.split() else ""
            elif key == "uptime":
                uptime = float(value or 0)
            else:
                properties[key] = value
        return ServiceState(properties, proc, uptime)


# One endpoint: a session this host already holds to it counts as reachable, and then nothing connects:
# rpc-server serves one client at a time with a backlog of 1, so probes while the head is served would
# pile up unaccepted in its queue until new connections, the head's included, are dropped. Otherwise a
# TCP connection is opened and closed, nothing sent. Prints "IP:PORT session|open|closed".
REACH_ONE = (
    'if [ -n "$(ss -Htn state established dst "$1" dport = ":$2")" ]; then echo "$1:$2 session"; '
    'elif timeout "$3" bash -c \': <>"/dev/tcp/$1/$2"\' probe "$1" "$2" 2>/dev/null; then echo "$1:$2 open"; '
    'else echo "$1:$2 closed"; fi'
)


class Reachable(Fact):
    """Which of the given ip:port endpoints this host reaches (see REACH_ONE), probed all at once."""

    def __init__(self, endpoints: tuple[str, ...]) -> None:
        super().__init__(tuple(endpoints))

    def command(self) -> str:
        one = quote('sh -c %s reach "${e%%:*}" "${e##*:}" %s', REACH_ONE, PROBE_SECONDS)
        endpoints = " ".join(quote("%s", e) for e in self.args[0])
        return f"for e in {endpoints}; do {one} & done; wait" if self.args[0] else "true"

    def process(self, lines: list[str]) -> dict[str, str]:
        """endpoint -> session | open | closed."""
        found = {}
        for line in lines:
            endpoint, _, state = line.rpartition(" ")
            if endpoint:
                found[endpoint] = state
        return found


@dataclass(frozen=True)
class CacheDir:
    """The worker's RPC tensor cache: whether it is there, its size in bytes and its entries (16 hex digits)."""

    present: bool
    size: int = 0
    entries: int = 0


class RpcCache(Fact):
    """du and the count of cache entries of the RPC cache directory."""

    def command(self) -> str:
        where = paths.RPC_CACHE_DIR
        return quote(
            "if [ -d %s ]; then du -sb %s | cut -f1; find %s -maxdepth 1 -type f | grep -cE '/[0-9a-f]{16}$'; fi",
            where,
            where,
            where,
        )

    def process(self, lines: list[str]) -> CacheDir:
        numbers = [int(line) for line in lines if line.strip().isdigit()]
        if not numbers:
            return CacheDir(False)
        return CacheDir(True, numbers[0], numbers[1] if len(numbers) > 1 else 0)


class DeployedModel(Fact):
    """The model record deploy wrote, and the sha256 of the file it names, measured now."""

    def command(self) -> str:
        record = paths.DEPLOYED_MODEL
        return (
            quote("cat %s 2>/dev/null || exit 0; echo; ", record)
            + quote('name=$(grep -o \'"name": *"[^"/]*"\' %s | cut -d\'"\' -f4); ', record)
            + 'echo "@@sha256"; [ -n "$name" ] && '
            + quote('openssl dgst -sha256 -r %s/"$name" | cut -d" " -f1', paths.MODELS_DIR)
        )

    def process(self, lines: list[str]) -> dict[str, str] | None:
        if "@@sha256" not in lines:
            return None
        at = lines.index("@@sha256")
        try:
            record = json.loads("\n".join(lines[:at]))
        except ValueError:
            return {"record": "unreadable"}
        measured = lines[at + 1].strip() if len(lines) > at + 1 else ""
        return {**{k: str(v) for k, v in record.items()}, "measured": measured}


class KeyInArguments(Fact):
    """Processes whose command line holds the API key (the key comes from stdin, never from argv)."""

    def command(self) -> str:
        return (
            f'[ -n "${KEY_VARIABLE}" ] || exit 0; '
            f"for f in $(printf '%s\\n' \"${KEY_VARIABLE}\" | grep -lsF -f - /proc/[0-9]*/cmdline); do "
            'p=${f#/proc/}; p=${p%/cmdline}; echo "$p $(cat /proc/$p/comm 2>/dev/null)"; done'
        )

    def process(self, lines: list[str]) -> tuple[str, ...]:
        return tuple(line for line in lines if line.strip())


class LoadLog(Fact):
    """The `model buffer size` lines the running llama-server logged while loading (-lv 4)."""

    def command(self) -> str:
        return (
            quote("id=$(systemctl show -p InvocationID --value %s); ", paths.SERVER_UNIT)
            + '[ -n "$id" ] && journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID="$id" '
            + "| grep -F 'model buffer size'"
        )

    def process(self, lines: list[str]) -> dict[str, float]:
        """RPC endpoint -> MiB of model it holds (`load_tensors: RPC0[10.0.0.2:50052] model buffer size = 0.70 MiB`)."""
        found: dict[str, float] = {}
        for line in lines:
            match = re.search(r"RPC\d+\[([^\]]+)\] model buffer size\s*=\s*([0-9.]+) MiB", line)
            if match:
                found[match.group(1)] = found.get(match.group(1), 0.0) + float(match.group(2))
        return found


# HTTP/1.0 requests from the head to its own API with bash's /dev/tcp (no curl needed). The key arrives on
# stdin and only builtins (printf, read) touch it. Each answer is one line: NAME STATUS BASE64(BODY).
HTTP_SCRIPT = r"""
IFS= read -r key; host=$1; port=$2; wait=$3
req() {
  exec 3<>"/dev/tcp/$host/$port" 2>/dev/null || { echo "$1 000 -"; return; }
  auth=""; [ "$4" = key ] && auth="Authorization: Bearer $key"$'\r\n'
  printf '%s %s HTTP/1.0\r\nHost: localhost\r\n%sContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    "$2" "$3" "$auth" "${#5}" "$5" >&3
  answer=$(timeout 60 cat <&3 | base64 -w0); exec 3<&-
  status=$(printf '%s' "$answer" | base64 -d | head -n1 | cut -d' ' -f2)
  echo "$1 ${status:-000} ${answer:--}"
}
waited=0
while :; do
  line=$(req health GET /health none "")
  case "$line" in "health 503 "*) [ "$waited" -lt "$wait" ] || break; sleep 1; waited=$((waited+1));; *) break;; esac
done
echo "$line"; echo "waited - $waited"
req models_without_key GET /v1/models none ""
req models GET /v1/models key ""
req metrics GET /metrics key ""
req completion POST /completion key "$4"
"""


# The same over TLS (api_tls): each request through openssl s_client, the certificate verified with the CA on the
# head and required to name $5; a server that fails that gets no request (and no key).
HTTPS_SCRIPT = (
    HTTP_SCRIPT.replace(
        """  exec 3<>"/dev/tcp/$host/$port" 2>/dev/null || { echo "$1 000 -"; return; }
""",
        "",
    )
    .replace(
        """    "$2" "$3" "$auth" "${#5}" "$5" >&3
  answer=$(timeout 60 cat <&3 | base64 -w0); exec 3<&-
""",
        """    "$2" "$3" "$auth" "${#5}" "$5" |
    timeout 60 openssl s_client -quiet -verify_return_error -CAfile "$ca" $check "$name" -connect "$host:$port" \\
    2>/dev/null | base64 -w0)
""",
    )
    .replace("  printf '%s %s HTTP/1.0", "  answer=$(printf '%s %s HTTP/1.0")
    .replace(
        "IFS= read -r key; host=$1; port=$2; wait=$3\n",
        "IFS= read -r key; host=$1; port=$2; wait=$3; name=$5; ca=$6; check=-verify_hostname\n"
        'case "$name" in *[!0-9.]*) ;; *) check=-verify_ip;; esac\n',
    )
)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status code and body (headers removed)."""

    status: int
    body: str = field(repr=False)


class HeadApi(Fact):
    """The head's API asked from the head itself: /health (waiting while it loads), models, metrics, a completion."""

    def __init__(self, address: str, port: int, wait: int, tls_name: str | None = None, ca_file: str = "") -> None:
        super().__init__(address, port, wait, *((tls_name, ca_file) if tls_name else ()))

    def command(self) -> str:
        body = f'{{"prompt": "hello", "n_predict": {COMPLETION_TOKENS}, "ignore_eos": true, "temperature": 0}}'
        if len(self.args) > 3:  # api_tls: over HTTPS, verified with the CA on the head, naming the head
            address, port, wait, name, ca = self.args
            script = quote("bash -c %s https %s %s %s %s %s %s", HTTPS_SCRIPT, address, port, wait, body, name, ca)
            return f"printf '%s\\n' \"${KEY_VARIABLE}\" | {script}"
        script = quote("bash -c %s http %s %s %s %s", HTTP_SCRIPT, *self.args, body)
        return f"printf '%s\\n' \"${KEY_VARIABLE}\" | {script}"

    def process(self, lines: list[str]) -> dict[str, Answer | int]:
        found: dict[str, Answer | int] = {}
        for line in lines:
            parts = line.split(" ")
            if len(parts) != 3:
                continue
            name, status, encoded = parts
            if name == "waited":
                found[name] = int(encoded) if encoded.isdigit() else 0
                continue
            raw = base64.b64decode(encoded).decode(errors="replace") if encoded != "-" else ""
            body = raw.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in raw else ""
            found[name] = Answer(int(status) if status.isdigit() else 0, body)
        return found


class RpcCacheEntries(Fact):
    """Every name in the RPC cache shaped like an entry (16 hex digits): its type (f file, l link, d directory...)
    and size in bytes, as the directory lists it (no link followed)."""

    def command(self) -> str:
        return quote(
            "find %s -mindepth 1 -maxdepth 1 -name '????????????????' -printf '%%f %%y %%s\\n' 2>/dev/null || true",
            paths.RPC_CACHE_DIR,
        )

    def process(self, lines: list[str]) -> dict[str, tuple[str, int]]:
        found = {}
        for line in lines:
            parts = line.split(" ")
            if len(parts) == 3 and re.fullmatch(r"[0-9a-f]{16}", parts[0]) and parts[2].isdigit():
                found[parts[0]] = (parts[1], int(parts[2]))
        return found


RPC_BANNER = re.compile(r"Starting RPC server v(\d+)\.(\d+)\.(\d+)")


def rpc_version(lines: list[str]) -> str | None:
    """The version in rpc-server's banner (`Starting RPC server v7.0.0` -> "7.0.0"), None when there is none."""
    for line in lines:
        match = RPC_BANNER.search(line)
        if match:
            return ".".join(match.groups())
    return None


class RpcAnnounced(Fact):
    """The RPC protocol version the running rpc-server announced: the banner its current invocation wrote to the
    journal (line-buffered by the unit); a process started a moment ago gets up to 2 s to write it. None when the
    unit runs no process (a stopped unit keeps the InvocationID of its last run)."""

    def command(self) -> str:
        running = quote("pid=$(systemctl show -p MainPID --value %s); ", self.args[0])
        invocation = quote("id=$(systemctl show -p InvocationID --value %s); ", self.args[0])
        first_banner = (
            '[ "${pid:-0}" -gt 0 ] && [ -n "$id" ] || exit 0; for _ in 1 2 3 4 5 6 7 8 9 10; do '
            "l=$(journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=\"$id\" | grep -m1 'Starting RPC server v'); "
            '[ -n "$l" ] && { echo "$l"; exit 0; }; sleep 0.2; done'
        )
        return running + invocation + first_banner

    def process(self, lines: list[str]) -> str | None:
        return rpc_version(lines)


# rpc-server prints its banner, then parses HOST:PORT, and returns without binding when that fails: given a host
# with a colon, it says its version, binds nothing and exits. Run as the service user from the root-owned binary
# folder (backends load from the working directory too), on the CPU device only (no GPU is opened).
_BUILD_BANNER = (
    'cd %s 2>/dev/null || exit 0; for b in ggml-rpc-server rpc-server; do [ -x "./$b" ] || continue; '
    'timeout 10 setpriv --reuid=%s --regid=%s --clear-groups --no-new-privs -- "./$b" -H lf-version-probe:none '
    "-d CPU 2>/dev/null | grep -m1 'Starting RPC server v'; break; done"
)


class RpcOfBuild(Fact):
    """The RPC protocol version of the host's current llama.cpp build, from its own rpc-server's banner (see
    _BUILD_BANNER): on the head, the version its llama-server speaks to the workers."""

    def __init__(self, user: str) -> None:
        super().__init__(user)

    def command(self) -> str:
        return quote(_BUILD_BANNER, paths.BIN_DIR, self.args[0], self.args[0])

    def process(self, lines: list[str]) -> str | None:
        return rpc_version(lines)


class Rotation(Fact):
    """The heads as the balancer's HAProxy sees them (its runtime API on the local socket): cluster -> Server;
    None when haproxy could not be asked."""

    def command(self) -> str:
        return f"{haproxy.show_servers()} 2>/dev/null || true"

    def process(self, lines: list[str]) -> dict[str, haproxy.Server] | None:
        try:
            return haproxy.parse_servers(lines)
        except ValueError:
            return None


class Handshakes(Fact):
    """WireGuard's latest handshake with each peer of `interface` (`wg show`, as root): public key -> seconds ago
    (None: never), and how many peers it has."""

    def __init__(self, interface: str) -> None:
        super().__init__(interface)

    def command(self) -> str:
        return wireguard.handshakes(self.args[0])

    def process(self, lines: list[str]) -> dict[str, int | None]:
        return wireguard.handshake_ages(lines) or {}
