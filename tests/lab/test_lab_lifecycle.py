"""Lab tier: the lab's hosts boot, are reachable with pinned keys only, and vanish on down."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from llamafleet import lab as lab_api
from llamafleet.lab import LabError, paths
from llamafleet.lab.system import pid_alive
from llamafleet.roles.teardown.purge import within
from llamafleet.roles.teardown.role import PURGED

pytestmark = pytest.mark.lab

HOSTS = ["head", "w1", "w2"]
SCRATCH_LAB = "tdown"  # a second lab, beside the session one, for teardown checks
FORMER_LAB = "tformer"  # a lab as an earlier version made it, in /var/lib/llamafleet/lab


def ssh(info, host: str, command: str, known_hosts: str | None = None, timeout: float = 60):
    """The exact ssh a user runs: batch mode, strict host-key checking, the pinned file, the lab key."""
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts or info.known_hosts}",
        "-o",
        "ConnectTimeout=5",
        "-i",
        info.key,
        f"root@{info.host(host).address}",
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_inventory_lists_the_hosts_with_their_addresses(lab):
    data = yaml.safe_load(Path(lab.inventory).read_text())
    assert data["all"]["vars"]["ansible_user"] == "root"
    assert data["all"]["vars"]["ansible_ssh_private_key_file"] == lab.key
    assert data["all"]["vars"]["known_hosts_file"] == lab.known_hosts
    assert data["all"]["vars"]["llama_cpp_cpu_variants"] == "native"
    groups = data["all"]["children"]
    found = {**groups["head"]["hosts"], **groups["workers"]["hosts"]}
    assert list(groups["head"]["hosts"]) == ["head"]
    assert list(groups["workers"]["hosts"]) == ["w1", "w2"]
    assert {name: vars_["ansible_host"] for name, vars_ in found.items()} == lab.addresses
    assert len(set(lab.addresses.values())) == 3
    assert stat.S_IMODE(os.stat(lab.key).st_mode) == 0o600
    # The frontend each host got is the one it is provisioned with; the controller is the API's client.
    assert {name: vars_.get("firewall") for name, vars_ in found.items()} == {
        "head": None,
        "w1": "ufw",
        "w2": "nftables",
    }
    assert data["all"]["vars"]["api_allow"] == [lab.gateway]


def test_known_hosts_holds_exactly_the_new_host_keys(lab):
    lines = Path(lab.known_hosts).read_text().splitlines()
    expected = []
    for host in lab.hosts:
        key = (host.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        expected.append(" ".join([host.address, *key]))
    assert lines == expected
    assert len({line.split()[2] for line in lines}) == 3, "every host has its own host key"


@pytest.mark.parametrize("host", HOSTS)
def test_each_host_boots_and_answers_ssh_with_its_pinned_key(lab, host):
    proc = ssh(lab, host, "systemctl is-system-running")
    assert (proc.returncode, proc.stdout.strip()) == (0, "running"), proc.stderr


def test_host_key_not_in_known_hosts_is_refused(lab, tmp_path):
    head, w1 = lab.host("head"), lab.host("w1")
    w1_key = (w1.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(" ".join([head.address, *w1_key]) + "\n")  # head's address, w1's key
    proc = ssh(lab, "head", "true", known_hosts=str(wrong))
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr


@pytest.mark.parametrize(("source", "target"), [("head", "w1"), ("head", "w2"), ("w2", "head")])
def test_hosts_reach_each_other(lab, source, target):
    probe = f"timeout 5 bash -c '</dev/tcp/{lab.host(target).address}/22' && echo open"
    proc = ssh(lab, source, probe)
    assert proc.stdout.strip() == "open", proc.stderr


def test_apt_get_update_works_inside_a_host(lab):
    proc = ssh(lab, "w1", "timeout 150 apt-get update -q", timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("host", "present", "absent"), [("head", [], ["ufw", "nft"]), ("w1", ["ufw"], ["nft"]), ("w2", ["nft"], ["ufw"])]
)
def test_firewall_frontend_preinstalled_as_asked(lab, host, present, absent):
    assert lab.host(host).firewall == {"head": "none", "w1": "ufw", "w2": "nftables"}[host]
    for command in present:
        assert ssh(lab, host, f"command -v {command}").returncode == 0, f"{command} missing on {host}"
    for command in absent:
        assert ssh(lab, host, f"command -v {command}").returncode == 1, f"{command} unexpected on {host}"


def test_preinstalled_ufw_is_inactive_so_ssh_stays_open(lab):
    proc = ssh(lab, "w1", "ufw status")
    assert proc.stdout.strip() == "Status: inactive", proc.stdout + proc.stderr


@pytest.mark.parametrize("host", HOSTS)
def test_each_host_s_link_is_shaped_to_the_asked_rate(lab, host):
    veth = lab.host(host).veth
    out = subprocess.run(["tc", "qdisc", "show", "dev", veth], capture_output=True, text=True, check=True).stdout
    assert "tbf" in out and "rate 1Gbit" in out, out


def test_status_lists_running_hosts_and_shell_command_reaches_one(lab):
    (info,) = lab_api.status(lab.name)
    assert [h.name for h in info.hosts if h.running] == HOSTS
    argv = lab_api.shell_command(lab.name, "w2")
    assert argv[-1] == f"root@{lab.host('w2').address}" and lab.key in argv
    proc = subprocess.run(
        [*argv[:-1], "-o", "BatchMode=yes", argv[-1], "hostname"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout.strip() == "w2", proc.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Lab!"}, "lab name"),
        ({"name": "x", "workers": -1}, "--workers"),
        ({"name": "x", "firewall": "ufw,pf"}, "--firewall"),
        ({"name": "x", "link_rate": "fast"}, "--link-rate"),
        ({"name": "x", "link_delay": "2"}, "--link-delay"),
        ({"name": "x", "link_mtu": "jumbo"}, "--link-mtu"),
        ({"name": "x", "link_mtu": 576}, "--link-mtu"),
        ({"name": "x", "link_mtu": "65536"}, "--link-mtu"),
    ],
)
def test_user_mistakes_are_one_line_errors(kwargs, message):
    with pytest.raises(LabError, match=message) as caught:
        lab_api.up(**kwargs)
    assert "\n" not in str(caught.value)


def test_shell_into_unknown_host_or_lab_is_an_error(lab):
    with pytest.raises(LabError, match="no host 'w9'"):
        lab_api.shell_command(lab.name, "w9")
    with pytest.raises(LabError, match="not up"):
        lab_api.shell_command("nosuchlab", "head")


def _leftovers(info) -> dict:
    """Everything of a lab that could outlive it: processes, mounts, links, nft table, files."""
    pids = [pid for host in info.hosts for pid in (host.pid, host.init_pid)]
    with open("/proc/mounts") as table:
        mounts = [line for line in table if f"/{info.name}/" in line.split()[1] + "/"]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    files = [Path(info.inventory), Path(info.known_hosts), Path(info.key), Path(info.hosts[0].dir).parent]
    return {
        "processes": [pid for pid in pids if pid_alive(pid)],
        "mounts": mounts,
        "links": [
            name
            for name in [info.bridge, *(h.veth for h in info.hosts)]
            if f" {name}:" in links or f" {name}@" in links
        ],
        "nft": [info.nft_table] if info.nft_table in nft else [],
        "files": [str(path) for path in files if path.exists()],
    }


def test_down_removes_everything_even_after_a_crash(lab):
    info = lab_api.up(SCRATCH_LAB, workers=1)
    try:
        assert info.subnet != lab.subnet and info.bridge != lab.bridge, "two labs coexist"
        assert all(_leftovers(info).values()), "the scratch lab exists before down"
        crashed = info.host("w1")
        os.kill(crashed.pid, 9)  # nspawn killed hard: its container keeps running, orphaned
        time.sleep(0.5)
        assert pid_alive(crashed.init_pid), "the orphaned container outlives its nspawn"
    finally:
        lab_api.down(SCRATCH_LAB)
    assert _leftovers(info) == {"processes": [], "mounts": [], "links": [], "nft": [], "files": []}
    lab_api.down(SCRATCH_LAB)  # idempotent
    assert lab_api.status(SCRATCH_LAB) == []


def test_link_delay_applied_or_refused_clearly(lab):
    try:
        info = lab_api.up(SCRATCH_LAB, workers=0, link_delay="0.2ms")
    except LabError as exc:
        assert "sch_netem" in str(exc), "only a kernel without netem may refuse a delay"
        assert lab_api.status(SCRATCH_LAB) == [], "a refused up leaves nothing behind"
        return
    try:
        out = subprocess.run(["tc", "qdisc", "show", "dev", info.host("head").veth], capture_output=True, text=True)
        assert "netem" in out.stdout and "delay 200us" in out.stdout, out.stdout
    finally:
        lab_api.down(SCRATCH_LAB)


def test_the_lab_keeps_its_state_and_cache_outside_the_trees_a_purge_removes(lab):
    """A controller that is also an inventory host keeps its labs through `teardown --purge`."""
    for path in (lab.hosts[0].dir, lab.base):
        assert not any(within(str(path), tree) for tree in PURGED), path


def test_a_lab_made_where_earlier_versions_kept_labs_is_listed_and_removed(lab, monkeypatch):
    former = Path(paths.FORMER_STATE_ROOT)
    made = [p for p in (former.parent, former) if not p.exists()]  # to leave the machine as it was
    monkeypatch.setenv("LLAMAFLEET_LAB_STATE", str(former))  # as an earlier version made it
    info = lab_api.up(FORMER_LAB, workers=0)
    monkeypatch.delenv("LLAMAFLEET_LAB_STATE")
    try:
        assert Path(info.hosts[0].dir).is_relative_to(former) and lab_api.status(FORMER_LAB)[0].hosts[0].running
        assert FORMER_LAB in [i.name for i in lab_api.status()] and lab.name in [i.name for i in lab_api.status()]
        assert lab_api.shell_command(FORMER_LAB, "head")[-1] == f"root@{info.host('head').address}"
    finally:
        lab_api.down(FORMER_LAB)
    assert _leftovers(info) == {"processes": [], "mounts": [], "links": [], "nft": [], "files": []}
    assert lab_api.status(FORMER_LAB) == [] and not (former / FORMER_LAB).exists()
    for path in reversed(made):
        if path.exists() and not any(path.iterdir()):
            path.rmdir()
