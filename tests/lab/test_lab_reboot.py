"""Lab tier: lab.reboot shuts a host down cleanly and boots it on the same root; lab.down still removes it all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from llamafleet import lab as lab_api
from llamafleet.lab import cgroups
from llamafleet.lab.system import pid_alive
from tests.command_line import invoke
from tests.lab.conftest import SESSION_LAB
from tests.lab.labtools import ssh

pytestmark = pytest.mark.lab

REBOOT_LAB = f"{SESSION_LAB[:8]}rb"  # beside the session's lab, named after it (two checkouts never share one)
# Logs each start and each stop with the boot id: a clean shutdown stops it, the next boot starts it again.
PROBE_SETUP = r"""set -e
cat > /etc/systemd/system/lf-probe.service <<'UNIT'
[Unit]
Description=lab reboot probe
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo start $(cat /proc/sys/kernel/random/boot_id) >> /var/lib/lf-probe.log'
ExecStop=/bin/sh -c 'echo stop $(cat /proc/sys/kernel/random/boot_id) >> /var/lib/lf-probe.log'
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable --now --quiet lf-probe.service
echo kept across the reboot > /root/kept.txt
cat /proc/sys/kernel/random/boot_id
"""


@pytest.fixture(scope="module")
def reboot_lab():
    """A head and one worker; removed at the end of the module (the last test removes it itself)."""
    try:
        yield lab_api.up(REBOOT_LAB, workers=1)
    finally:
        lab_api.down(REBOOT_LAB)


@pytest.fixture(scope="module")
def rebooted(reboot_lab):
    """w1 with a file and an enabled unit, rebooted by lab.reboot: (lab before, boot id before, lab after)."""
    setup = ssh(reboot_lab, "w1", PROBE_SETUP)
    assert setup.returncode == 0, setup.stderr
    lab_api.reboot(REBOOT_LAB, "w1")
    (after,) = lab_api.status(REBOOT_LAB)
    return reboot_lab, setup.stdout.strip(), after


def test_files_stay_and_the_enabled_unit_stopped_cleanly_and_started_at_boot(rebooted):
    lab, boot_before, _ = rebooted
    proc = ssh(lab, "w1", "cat /root/kept.txt /proc/sys/kernel/random/boot_id; systemctl is-active lf-probe")
    kept, boot_after, active = proc.stdout.splitlines()
    assert (kept, active) == ("kept across the reboot", "active"), proc.stderr
    assert boot_after != boot_before
    log = ssh(lab, "w1", "cat /var/lib/lf-probe.log").stdout.splitlines()
    assert log == [f"start {boot_before}", f"stop {boot_before}", f"start {boot_after}"]


def test_the_lab_state_records_the_new_processes_and_the_other_host_is_untouched(rebooted):
    before, _, after = rebooted
    old, new = before.host("w1"), after.host("w1")
    assert not pid_alive(old.pid) and not pid_alive(old.init_pid)
    assert new.running and pid_alive(new.init_pid) and new.pid != old.pid
    for name in ("nspawn.pid", "init.pid"):
        assert int((Path(new.dir) / name).read_text()) == {"nspawn.pid": new.pid, "init.pid": new.init_pid}[name]
    assert after.host("head").pid == before.host("head").pid and after.host("head").running
    assert new.veth and subprocess.run(["ip", "link", "show", "dev", new.veth], capture_output=True).returncode == 0


def test_rebooting_a_host_the_lab_does_not_have_is_one_line(rebooted):
    result = invoke("lab.reboot", "w7", "--name", REBOOT_LAB)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"error: lab {REBOOT_LAB} has no host 'w7' (hosts: head, w1)"
    ]


def test_down_after_a_reboot_leaves_no_process_mount_or_cgroup(rebooted):
    before, _, after = rebooted
    pids = [pid for info in (before, after) for host in info.hosts for pid in (host.pid, host.init_pid)]
    lab_api.down(REBOOT_LAB)
    with open("/proc/mounts") as table:
        mounts = [line for line in table if f"/{REBOOT_LAB}/" in line.split()[1] + "/"]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    veths = [host.veth for host in after.hosts if f" {host.veth}:" in links or f" {host.veth}@" in links]
    assert ([pid for pid in pids if pid_alive(pid)], mounts, veths) == ([], [], [])
    assert cgroups.members(REBOOT_LAB) == [] and lab_api.status(REBOOT_LAB) == []
    assert not Path(after.inventory).exists() and not Path(after.hosts[0].dir).parent.exists()
