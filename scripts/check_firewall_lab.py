"""Apply the firewall role to a lab made with `invoke lab.up --firewall ufw,firewalld,nftables`, twice, then probe it.

Not part of the test suite. Usage: `.venv/bin/python scripts/check_firewall_lab.py [--name tfw] [--limit head,w1]
[--head-address ADDR] [--full]`: head has ufw, w1 firewalld, w2 nftables. Each worker admits its RPC port
from the head only; the head admits its API port from the cluster. `--head-address` pretends the head
moved (its real address must then be refused by the workers). `--full` runs the whole story: converge,
move the head to .99 of its subnet and back (the stale source must be gone from every frontend), restart each
frontend's service (the rules must come back, and a run after it change nothing).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llamafleet import inventory, roles  # noqa: E402
from llamafleet.output import Output  # noqa: E402
from llamafleet.runner import Phase, Runner, RunOptions  # noqa: E402

FIREWALL = roles.load("firewall")
PLAN = FIREWALL._plan
FRONTEND = {"head": "ufw", "w1": "firewalld", "w2": "nftables"}  # what lab.up --firewall installed
SERVICES = {"ufw": "ufw.service", "firewalld": "firewalld.service", "nftables": "nftables.service"}
DUMPS = {  # llamafleet's configuration in each frontend, saved and live (the facts' own commands)
    "ufw": FIREWALL._facts.UfwStatus().command(),
    "firewalld": "\n".join(
        FIREWALL._facts.FirewalldIpsets(mode).command() + "\n" + FIREWALL._facts.FirewalldZones(mode).command()
        for mode in ("permanent", "runtime")
    ),
    "nftables": f"{FIREWALL._facts.NftTable().command()}; cat {FIREWALL._nftables.TABLE_FILE}",
}
RPC_PORT, API_PORT = 50052, 8080


def plans(inv, head_address: str) -> dict:
    workers = [h for h in inv.hosts.values() if h.name != "head"]
    cluster = [head_address, *(h.address for h in workers)]
    result = {"head": PLAN.FirewallPlan((PLAN.Rule(API_PORT, tuple(cluster), "api"),))}
    for host in workers:
        result[host.name] = PLAN.FirewallPlan((PLAN.Rule(RPC_PORT, (head_address,), "rpc"),))
    return result


def wrapper(plan_by_host: dict) -> types.ModuleType:
    """The firewall role with a prepare() that hands it the plans, as the cluster code will."""
    module = types.ModuleType("llamafleet_check_firewall")
    module.__file__ = FIREWALL.__file__
    module.NAME = "firewall"
    module.operations = FIREWALL.operations
    module.prepare = lambda runner, hosts: runner.shared.__setitem__("firewall", plan_by_host)
    return module


def converge(inv, role, limit) -> tuple[int, Output]:
    output = Output(json_mode=True, stream=io.StringIO())
    code = Runner(inv, RunOptions(limit=limit), output).run([Phase("firewall", (role,))])
    return code, output


def ssh(inv, host: str, command: str) -> subprocess.CompletedProcess:
    h = inv.hosts[host]
    argv = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={h.vars['known_hosts_file']}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
        "-i", h.vars["ansible_ssh_private_key_file"], f"root@{h.address}", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def listen(inv, host: str, port: int) -> None:
    """A throw-away listener for 60 s (systemd-socket-activate ships with systemd: no nc needed)."""
    ssh(inv, host, f"systemd-run --unit=lf-probe-{port} --collect -p RuntimeMaxSec=60 "
        f"systemd-socket-activate -l {port} -a /bin/true")  # fmt: skip


def reaches(inv, source: str, target: str, port: int) -> bool:
    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{inv.hosts[target].address}/{port}' 2>/dev/null && echo open"
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
            allowed = host.name == "head" or inv.hosts[other].address == head_address
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
    ok = converge_twice(inv, wrapper(plans(inv, head)), limit) & probe(inv, hosts, head)
    print(f"-- the head moves to {moved_head}: the workers must stop admitting {head}")
    ok &= converge_twice(inv, wrapper(plans(inv, moved_head)), limit) & probe(inv, hosts, moved_head)
    print(f"-- the head is back at {head}: {moved_head} must be gone everywhere")
    role = wrapper(plans(inv, head))
    ok &= converge_twice(inv, role, limit) & probe(inv, hosts, head) & absent(inv, hosts, moved_head)
    print("-- every frontend's service restarted: the rules must survive")
    restart_frontends(inv, hosts)
    ok &= probe(inv, hosts, head)
    code, output = converge(inv, role, limit)
    changed = {h: c.get("changed", 0) for h, c in output.recap.items()}
    print(f"after restart: exit {code}, changed {changed}")
    return ok and code == 0 and not any(changed.values())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="tfw", help="lab name (inventory/NAME.yml)")
    parser.add_argument("--limit", default=None, help="hosts to converge and probe, e.g. head,w1")
    parser.add_argument("--head-address", default=None, help="pretend the head moved here (stale-source case)")
    parser.add_argument("--full", action="store_true", help="converge, move the head and back, restart services")
    args = parser.parse_args()
    inv = inventory.load(ROOT / "inventory" / f"{args.name}.yml")
    for name, frontend in FRONTEND.items():
        inv.hosts[name].vars["firewall"] = frontend
    head = args.head_address or inv.hosts["head"].address
    if args.full:
        ok = scenario(inv, args.limit, head)
    else:
        ok = converge_twice(inv, wrapper(plans(inv, head)), args.limit) & probe(inv, inv.select(args.limit), head)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
