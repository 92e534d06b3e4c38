"""Apply the firewall role to a lab made with `invoke lab.up --firewall ufw,firewalld,nftables`, twice, then probe it.

Not part of the test suite. Usage: `.venv/bin/python scripts/check_firewall_lab.py [--name tfw] [--limit head,w2]
[--head-address ADDR]` (the last one pretends the head moved, to see the old source removed).
Each worker admits its RPC port from the head only; the head admits its API port from the cluster.
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="tfw")
    parser.add_argument("--limit", default=None)
    parser.add_argument("--head-address", default=None)
    args = parser.parse_args()
    inv = inventory.load(ROOT / "inventory" / f"{args.name}.yml")
    for name, frontend in FRONTEND.items():
        inv.hosts[name].vars["firewall"] = frontend
    role = wrapper(plans(inv, args.head_address or inv.hosts["head"].address))
    failed = False
    for attempt in (1, 2):
        code, output = converge(inv, role, args.limit)
        for r in output.results:
            if r.status != "ok" or attempt == 1:
                print(
                    f"run {attempt} {r.host:5} {r.status:8} {r.operation}: {r.reason} {r.steps or ''} {r.error or ''}"
                )
        changed = {h: c.get("changed", 0) for h, c in output.recap.items()}
        print(f"run {attempt}: exit {code}, changed {changed}")
        failed |= code != 0 or (attempt == 2 and any(changed.values()))
    hosts = inv.select(args.limit)
    for host in hosts:
        port = API_PORT if host.name == "head" else RPC_PORT
        listen(inv, host.name, port)
        for other in inv.hosts:
            if other == host.name:
                continue
            allowed = host.name == "head" or other == "head"
            if args.head_address and host.name != "head":
                allowed = other != "head" and inv.hosts[other].address == args.head_address
            got = reaches(inv, other, host.name, port)
            state, expected = ("open" if got else "closed"), ("open" if allowed else "closed")
            print(f"{other:5} -> {host.name}:{port}: {state} (expected {expected})")
            failed |= got != allowed
    print("FAILED" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
