"""Apply the firewall role to a lab made with `invoke lab.up --firewall ufw,firewalld,nftables`, twice, then probe it.

Not part of the test suite. Usage: `.venv/bin/python scripts/check_firewall_lab.py [--name tfw] [--limit head,w1]
[--head-address ADDR] [--full]`: head has ufw, w1 firewalld, w2 nftables. Each worker admits its RPC port
from the head only; the head admits its API port from the cluster. `--head-address` pretends the head
moved (its real address must then be refused by the workers). `--full` runs the whole story: converge,
move the head to .99 of its subnet and back (the stale source must be gone from every frontend), restart each
frontend's service (the rules must come back, and a run after it change nothing). `--switch` changes each
host's frontend and back (ufw -> nftables on head, nftables -> ufw on w2, firewalld -> auto on w1, each old
one turned off first as its operator would): no llamafleet rule may be left in the old frontend, the ports
must behave, a second run must change nothing, and SSH must answer throughout (polled every 0.2 s). A
frontend still in charge beside the managed one must stop the host before anything changes, and
`firewall: none` must change nothing and warn about the rules left.
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llamafleet import inventory, variables  # noqa: E402
from llamafleet.output import Output  # noqa: E402
from llamafleet.roles import Role  # noqa: E402
from llamafleet.roles.firewall import role as FIREWALL  # noqa: E402
from llamafleet.runner import Phase, Runner, RunOptions  # noqa: E402

PLAN, F = FIREWALL._ruleset, FIREWALL._facts
FRONTEND = {"head": "ufw", "w1": "firewalld", "w2": "nftables"}  # what lab.up --firewall installed
SERVICES = {"ufw": "ufw.service", "firewalld": "firewalld.service", "nftables": "nftables.service"}
DUMPS = {  # llamafleet's configuration in each frontend, saved and live (the facts' own commands)
    "ufw": FIREWALL._facts.UfwStatus().command(),
    "firewalld": "\n".join(
        "\n".join(fact(mode).command() for fact in (F.FirewalldIpsets, F.FirewalldZones, F.FirewalldPolicies))
        for mode in ("permanent", "runtime")
    ),
    "nftables": f"{FIREWALL._facts.NftTable().command()}; cat {FIREWALL._nftables.TABLE_FILE}",
}
RPC_PORT, API_PORT = (variables.catalogue()[name].default for name in ("rpc_port", "api_port"))  # the lab leaves both


def rulesets(inv, head_address: str) -> dict:
    workers = [h for h in inv.hosts.values() if h.name != "head"]
    cluster = [head_address, *(h.connection.address for h in workers)]
    result = {"head": PLAN.Ruleset((PLAN.Rule(API_PORT, tuple(cluster), "api"),))}
    for host in workers:
        result[host.name] = PLAN.Ruleset((PLAN.Rule(RPC_PORT, (head_address,), "rpc"),))
    return result


def wrapper(plan_by_host: dict) -> Role:
    """The firewall role with a prepare() that hands it these plans instead of the cluster's."""
    return Role(
        "firewall",
        FIREWALL.operations,
        template_dir=FIREWALL.ROLE.template_dir,
        prepare=lambda run, hosts: run.handoff(FIREWALL.Rulesets).by_host.update(plan_by_host),
    )


def converge(inv, role, limit) -> tuple[int, Output]:
    output = Output(json_mode=True, stream=io.StringIO())
    code = Runner(inv, RunOptions(limit=limit), output).play([Phase("firewall", (role,))])
    return code, output


def ssh(inv, host: str, command: str) -> subprocess.CompletedProcess:
    h = inv.hosts[host]
    argv = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={h.vars['known_hosts_file']}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
        "-i", h.vars["ansible_ssh_private_key_file"], f"root@{h.connection.address}", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def listen(inv, host: str, port: int) -> None:
    """A throw-away listener for 60 s (systemd-socket-activate ships with systemd: no nc needed)."""
    ssh(inv, host, f"systemd-run --unit=lf-probe-{port} --collect -p RuntimeMaxSec=60 "
        f"systemd-socket-activate -l {port} -a /bin/true")  # fmt: skip


def reaches(inv, source: str, target: str, port: int) -> bool:
    probe = (
        f"timeout 3 bash -c 'exec 3<>/dev/tcp/{inv.hosts[target].connection.address}/{port}' 2>/dev/null && echo open"
    )
    return ssh(inv, source, probe).stdout.strip() == "open"


def converge_twice(inv, role, limit) -> bool:
    """Apply the role twice; False unless both runs succeed and the second changes nothing."""
    ok = True
    for attempt in (1, 2):
        code, output = converge(inv, role, limit)
        for r in output.results:
            if r.status != "ok" or attempt == 1:
                print(
                    f"run {attempt} {r.host:5} {r.status:8} {r.operation}: {r.reason} {r.steps or ''} {r.error or ''}"
                )
        changed = {h: c.get("changed", 0) for h, c in output.recap.items()}
        print(f"run {attempt}: exit {code}, changed {changed}")
        ok &= code == 0 and not (attempt == 2 and any(changed.values()))
    return ok


def probe(inv, hosts, head_address: str) -> bool:
    """Each host's guarded port is open from the sources its plan names and closed from the others."""
    ok = True
    for host in hosts:
        port = API_PORT if host.name == "head" else RPC_PORT
        listen(inv, host.name, port)
        for other in inv.hosts:
            if other == host.name:
                continue
            allowed = host.name == "head" or inv.hosts[other].connection.address == head_address
            got = reaches(inv, other, host.name, port)
            state, expected = ("open" if got else "closed"), ("open" if allowed else "closed")
            print(f"{other:5} -> {host.name}:{port}: {state} (expected {expected})")
            ok &= got == allowed
    return ok


def restart_frontends(inv, hosts) -> None:
    """Restart each host's firewall service: the rules must come back from their saved form."""
    for host in hosts:
        unit = SERVICES[host.vars["firewall"]]
        result = ssh(inv, host.name, f"systemctl restart {unit} && systemctl is-active {unit}")
        print(f"{host.name}: systemctl restart {unit}: {result.stdout.strip() or result.stderr.strip()}")


def absent(inv, hosts, address: str) -> bool:
    """No trace of `address` in any frontend's llamafleet configuration (saved and live)."""
    ok = True
    for host in hosts:
        text = ssh(inv, host.name, DUMPS[host.vars["firewall"]]).stdout
        if address in text:
            print(f"{host.name}: {address} still in the {host.vars['firewall']} configuration")
            ok = False
    return ok


def moved(address: str) -> str:
    """Where the head pretends to move: host .99 of its /24, only ever written into rules, never sent traffic."""
    return address.rsplit(".", 1)[0] + ".99"


def scenario(inv, limit: str | None, head: str) -> bool:
    """Converged, moved head (stale source), back (the stale source removed), restart (rules kept)."""
    hosts, moved_head = inv.select(limit), moved(head)
    ok = converge_twice(inv, wrapper(rulesets(inv, head)), limit) & probe(inv, hosts, head)
    print(f"-- the head moves to {moved_head}: the workers must stop admitting {head}")
    ok &= converge_twice(inv, wrapper(rulesets(inv, moved_head)), limit) & probe(inv, hosts, moved_head)
    print(f"-- the head is back at {head}: {moved_head} must be gone everywhere")
    role = wrapper(rulesets(inv, head))
    ok &= converge_twice(inv, role, limit) & probe(inv, hosts, head) & absent(inv, hosts, moved_head)
    print("-- every frontend's service restarted: the rules must survive")
    restart_frontends(inv, hosts)
    ok &= probe(inv, hosts, head)
    code, output = converge(inv, role, limit)
    changed = {h: c.get("changed", 0) for h, c in output.recap.items()}
    print(f"after restart: exit {code}, changed {changed}")
    return ok and code == 0 and not any(changed.values())


# What no llamafleet trace looks like in each frontend, saved and live: a count of 0 from each command.
_TAG_HEX, _NFT = PLAN.TAG.encode().hex(), FIREWALL._nftables
TRACES = {
    "ufw": f"{{ grep -h comment={_TAG_HEX} /etc/ufw/user.rules /etc/ufw/user6.rules;"
    " ufw show added | grep llamafleet; }",
    "firewalld": "{ ls /etc/firewalld/ipsets/llamafleet-*.xml /etc/firewalld/policies/llamafleet.xml;"
    " grep -l 'ipset=.llamafleet-' /etc/firewalld/zones/*.xml;"
    " { firewall-cmd --get-ipsets; firewall-cmd --get-policies; } | tr ' ' '\\n' | grep llamafleet; }",
    "nftables": f"{{ nft list table inet llamafleet; ls {_NFT.TABLE_FILE};"
    f" grep -F '{_NFT.INCLUDE_LINE}' {_NFT.CONF}; }}",
}
TRACES = {frontend: command + " 2>/dev/null | grep -c ." for frontend, command in TRACES.items()}
SWITCHES = [  # (host, frontend, new `firewall`, what its operator runs first to take the old one out of charge)
    ("head", "ufw", "nftables", "ufw disable"),
    ("w2", "nftables", "ufw", None),
    ("w1", "firewalld", "auto", "systemctl disable --now firewalld"),
]
SWITCH_BACK = [
    ("head", "nftables", "ufw", None),
    ("w2", "ufw", "nftables", "ufw disable"),
    ("w1", "nftables", "firewalld", None),  # auto chose nftables
]


@contextmanager
def ssh_watch(inv, hosts):
    """Poll every host's SSH port from the controller every 0.2 s while the block runs; collect refusals."""
    missed: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            for host in hosts:
                try:
                    socket.create_connection((host.connection.address, 22), timeout=1).close()
                except OSError as exc:
                    missed.append(f"{time.strftime('%H:%M:%S')} {host.name}: {exc}")

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield missed
    finally:
        done.set()
        thread.join(timeout=5)


def traces(inv, host: str, frontend: str) -> int:
    """How many llamafleet rules, ipsets, tables or files are left in one frontend on one host."""
    answer = ssh(inv, host, TRACES[frontend]).stdout.split()
    return int(answer[-1]) if answer and answer[-1].isdigit() else -1


def switch_step(inv, role, host: str, old: str, new: str, before: str | None) -> bool:
    """One host moves from `old` to `new`: converged twice while SSH is watched, `old` left with nothing
    of ours, ports probed. The operator's step is not watched: `ufw disable` itself drops new
    connections for about a second (it flushes its chains before it sets the policy to accept)."""
    print(f"-- {host}: firewall {old} -> {new}" + (f" (first: {before})" if before else ""))
    if before:
        ssh(inv, host, before)
    inv.hosts[host].vars["firewall"] = new
    with ssh_watch(inv, list(inv.hosts.values())) as missed:
        ok = converge_twice(inv, role, None)
    print(f"SSH refused or timed out {len(missed)} time(s) during the runs" + "".join(f"\n  {m}" for m in missed))
    ok &= not missed
    left = traces(inv, host, old)
    print(f"{host}: llamafleet traces left in {old}: {left}")
    return ok & (left == 0) & probe(inv, list(inv.hosts.values()), inv.hosts["head"].connection.address)


def refused_while_in_charge(inv, role) -> bool:
    """head set to nftables with ufw still active: refused, nothing changed, ufw's rules as they were."""
    before = ssh(inv, "head", "ufw show added").stdout
    inv.hosts["head"].vars["firewall"] = "nftables"
    code, output = converge(inv, role, "head")
    failed = [r for r in output.results if r.status == "failed"]
    changed = output.recap["head"].get("changed", 0)
    print(f"head nftables beside an active ufw: exit {code}, changed {changed}: {failed[0].reason if failed else ''}")
    inv.hosts["head"].vars["firewall"] = "ufw"
    same = ssh(inv, "head", "ufw show added").stdout == before
    return code != 0 and changed == 0 and bool(failed) and "in charge" in failed[0].reason and same


def none_warns(inv, role) -> bool:
    """firewall: none on a host holding llamafleet rules: nothing changes, a warning names them."""
    inv.hosts["w2"].vars["firewall"] = "none"
    code, output = converge(inv, role, "w2")
    inv.hosts["w2"].vars["firewall"] = "nftables"
    reasons = [r.reason for r in output.results]
    print(f"w2 firewall: none: exit {code}: {reasons}")
    return code == 0 and not output.recap["w2"].get("changed") and any("warning:" in r for r in reasons)


def switch(inv, head: str) -> bool:
    """Every host changes frontend and back; see the module's docstring."""
    role = wrapper(rulesets(inv, head))
    hosts = list(inv.hosts.values())
    ok = converge_twice(inv, role, None) & probe(inv, hosts, head)
    ok &= refused_while_in_charge(inv, role) & none_warns(inv, role)
    for host, old, new, before in [*SWITCHES, *SWITCH_BACK]:
        ok &= switch_step(inv, role, host, old, new, before)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="tfw", help="lab name (inventory/NAME.yml)")
    parser.add_argument("--limit", default=None, help="hosts to converge and probe, e.g. head,w1")
    parser.add_argument("--head-address", default=None, help="pretend the head moved here (stale-source case)")
    parser.add_argument("--full", action="store_true", help="converge, move the head and back, restart services")
    parser.add_argument("--switch", action="store_true", help="change each host's frontend and back")
    args = parser.parse_args()
    inv = inventory.load(ROOT / "inventory" / f"{args.name}.yml")
    for name, frontend in FRONTEND.items():
        inv.hosts[name].vars["firewall"] = frontend
    head = args.head_address or inv.hosts["head"].connection.address
    if args.switch:
        ok = switch(inv, head)
    elif args.full:
        ok = scenario(inv, args.limit, head)
    else:
        ok = converge_twice(inv, wrapper(rulesets(inv, head)), args.limit) & probe(inv, inv.select(args.limit), head)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
