"""`invoke lab.*`: throw-away systemd-nspawn hosts on a private bridge, for CI smoke tests."""

from __future__ import annotations

import shlex
import time

from invoke import Collection, task
from invoke.exceptions import Exit

from .cli_errors import reports_errors

NAME_HELP = "Lab name: 1-10 lowercase letters/digits (default: lab); labs with different names coexist."


@task(
    help={
        "workers": "Number of worker hosts beside each head (default: 2).",
        "clusters": "Number of clusters, each a head and its workers (default: 1: hosts head, w1..wN; "
        "more: c1-head, c1-w1.., c2-head, ... with the host variable cluster: c1, c2, ...).",
        "balancers": "Number of balancer hosts lb1..lbN in group balancers, with haproxy and socat installed, "
        "not enabled (default: 0).",
        "name": NAME_HELP,
        "firewall": "Frontend to preinstall per host: auto|ufw|nftables|firewalld|none, or a comma list "
        "spread over the hosts in order (head,w1,w2,... then lb1,...; the last repeats). auto and none "
        "install nothing (default: none).",
        "link_rate": "Shape every host's link to this rate with tc tbf, e.g. 1gbit or 100mbit.",
        "link_delay": "Add this one-way delay to every host's link with tc netem, e.g. 0.2ms.",
        "link_mtu": "MTU of every host's link and the bridge (1280-9216, e.g. 9000 for jumbo frames; default 1500).",
    }
)
@reports_errors
def up(
    c, workers=2, name="lab", firewall="none", link_rate=None, link_delay=None, clusters=1, balancers=0, link_mtu=None
):
    """Create the lab (recreating one of the same name): boot the hosts, write inventory/<name>.yml.

    The machine's limits are checked first: inotify limits too low for the lab are raised (one line
    says so), short memory or addresses stop it before anything is created.
    """
    from . import lab  # only lab tasks need it

    info = lab.up(
        name=name,
        workers=workers,
        firewall=firewall,
        link_rate=link_rate,
        link_delay=link_delay,
        say=print,
        clusters=clusters,
        balancers=balancers,
        link_mtu=link_mtu,
    )
    width = max(6, *(len(host.name) for host in info.hosts))
    for host in info.hosts:
        print(f"{host.name:{width}} {host.address:15} {host.machine} ({host.firewall}) {host.role}")
    print(f"inventory: {info.inventory}")
    print(f"ssh:       invoke lab.shell HOST --name {info.name}")


@task(help={"name": NAME_HELP})
@reports_errors
def down(c, name="lab"):
    """Remove the lab: hosts, mounts, bridge, NAT table, state and generated inventory, key, known_hosts."""
    from . import lab  # only lab tasks need it

    lab.down(name)
    print(f"lab {name}: removed")


@task(help={"name": "Only this lab (default: every lab on this machine)."})
@reports_errors
def status(c, name=None):
    """List the labs on this machine, each host's role (head, worker, balancer; its cluster) and container."""
    from . import lab  # only lab tasks need it

    labs = lab.status(name)
    if not labs:
        print("no lab is up")
    for info in labs:
        print(f"lab {info.name}: {info.subnet} on {info.bridge}, inventory {info.inventory}")
        width = max(6, *(len(host.name) for host in info.hosts))
        for host in info.hosts:
            state = "running" if host.running else "stopped"
            print(f"  {host.name:{width}} {host.address:15} {state:8} pid {host.pid} ({host.firewall}) {host.role}")


@task(help={"host": "head, w1, w2, ... (c1-head, lb1, ... with clusters and balancers)", "name": NAME_HELP})
@reports_errors
def shell(c, host, name="lab"):
    """Open an interactive SSH session on a lab host (lab key, pinned known_hosts)."""
    from . import lab  # only lab tasks need it

    argv = lab.shell_command(name, host)
    result = c.run(shlex.join(argv), pty=True, warn=True)
    if result.exited:
        raise Exit(code=result.exited)


@task(help={"host": "The host to reboot: head, w1, ... (c1-head, lb1, ...)", "name": NAME_HELP})
@reports_errors
def reboot(c, host, name="lab"):
    """Reboot a lab host as a VM reboots: clean poweroff (units stop in order), boot on the same root.

    Returns once the host answers SSH and its systemd says running.
    """
    from . import lab  # only lab tasks need it

    started = time.monotonic()
    rebooted = lab.reboot(name, host)
    print(f"lab {name}: {rebooted.name} rebooted in {time.monotonic() - started:.1f} s (pid {rebooted.pid})")


ns = Collection("lab")
ns.add_task(up)
ns.add_task(down)
ns.add_task(status)
ns.add_task(shell)
ns.add_task(reboot)
