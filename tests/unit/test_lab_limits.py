"""The lab's limit check, on /proc trees rebuilt from what a real machine showed with labs up."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from recordings import RECORDED

from llamafleet.lab import limits
from llamafleet.lab.system import LabError

LAB_RECORDINGS = RECORDED / "lab"


def fake_proc(tmp_path: Path, recording: str, **sysctl: str) -> Path:
    """A /proc with the recording's limits, meminfo and processes (descriptors as dangling symlinks)."""
    data = json.loads((LAB_RECORDINGS / recording).read_text())
    proc = tmp_path / "proc"
    (proc / "sys/fs/inotify").mkdir(parents=True)
    for name in ("max_user_instances", "max_user_watches"):
        (proc / "sys/fs/inotify" / name).write_text(sysctl.get(name, data[f"sys/fs/inotify/{name}"]))
    (proc / "meminfo").write_text(data["meminfo"])
    (proc / "self").mkdir()  # not a pid: skipped
    for pid, process in data["processes"].items():
        (proc / pid / "fd").mkdir(parents=True)
        (proc / pid / "fdinfo").mkdir()
        (proc / pid / "status").write_text(process["status"])
        for fd, target in process["fd"].items():
            os.symlink(target, proc / pid / "fd" / fd)
        for fd, text in process["fdinfo"].items():
            (proc / pid / "fdinfo" / fd).write_text(text)
    return proc


def test_a_three_host_lab_counts_only_root_s_inotify_instances_and_watches(tmp_path):
    machine = limits.read_machine(fake_proc(tmp_path, "proc_lab_3hosts.json"))
    # ufw, firewalld and nftables hosts: root's are systemd 5 each, logind and getty 1 each, firewalld 1;
    # dbus-daemon (messagebus) and polkitd (polkitd) are charged to their own users
    assert (machine.used_instances, machine.used_watches) == (22, 87)
    assert machine.mem_total_mib == 24683656 // 1024


def test_a_35_host_machine_reads_its_raised_limit_and_usage_below_the_estimate(tmp_path):
    machine = limits.read_machine(fake_proc(tmp_path, "proc_lab_35hosts.json"))
    assert machine.max_instances == 512  # raised by the first 32-host lab.up
    assert machine.used_instances > 128  # more than the default limit: the reason for the check
    assert machine.used_instances < 35 * limits.PER_HOST_INSTANCES
    assert machine.used_watches < 35 * limits.PER_HOST_WATCHES


def test_only_roots_processes_count(tmp_path):
    proc = fake_proc(tmp_path, "proc_lab_3hosts.json")
    before = limits.read_machine(proc)
    pid = next(p for p in sorted(proc.iterdir()) if p.name.isdigit() and any(p.joinpath("fdinfo").iterdir()))
    status = pid.joinpath("status").read_text()
    pid.joinpath("status").write_text(status.replace("Uid:\t0\t0", "Uid:\t0\t1000"))  # effective uid 1000
    after = limits.read_machine(proc)
    assert after.used_instances == before.used_instances - len(list(pid.joinpath("fdinfo").iterdir()))


def test_a_32_host_lab_beside_a_3_host_one_raises_the_default_instances(tmp_path):
    machine = limits.read_machine(fake_proc(tmp_path, "proc_lab_3hosts.json", max_user_instances="128\n"))
    raises, problems = limits.plan(32, machine)
    assert problems == []
    assert raises == [limits.Raise("fs.inotify.max_user_instances", 128, 512)]  # 22 + 32 * 12 = 406
    assert raises[0].line(32) == (
        "raised fs.inotify.max_user_instances 128 -> 512 for 32 lab hosts (runtime only, reset at reboot)"
    )


def test_enough_already_is_left_alone(tmp_path):
    machine = limits.read_machine(fake_proc(tmp_path, "proc_lab_3hosts.json"))
    assert limits.plan(3, machine) == ([], [])


def test_a_second_32_host_lab_raises_again(tmp_path):
    machine = limits.read_machine(fake_proc(tmp_path, "proc_lab_35hosts.json"))
    [change], problems = limits.plan(32, machine)
    assert problems == [] and change.name == "fs.inotify.max_user_instances"
    assert change.old == 512 and change.new >= machine.used_instances + 32 * limits.PER_HOST_INSTANCES


def test_watches_raised_while_cheap_refused_beyond(tmp_path):
    machine = limits.read_machine(fake_proc(tmp_path, "proc_lab_3hosts.json", max_user_watches="1000\n"))
    [change], _ = limits.plan(32, machine)
    assert change == limits.Raise("fs.inotify.max_user_watches", 1000, 8192)
    small = limits.Machine(128, 1000, 0, 0, mem_total_mib=64, mem_available_mib=64000)
    _, [problem] = limits.plan(32, small)
    assert problem.startswith("fs.inotify.max_user_watches is 1000; 32 lab hosts need about 3200")
    assert "sysctl -w fs.inotify.max_user_watches=3200" in problem


def test_too_many_instances_stops_with_the_command(tmp_path):
    machine = limits.read_machine(fake_proc(tmp_path, "proc_lab_35hosts.json"))
    _, problems = limits.plan(700, machine)
    assert problems[0].startswith("fs.inotify.max_user_instances is 512; 700 lab hosts need about ")
    assert "`sysctl -w fs.inotify.max_user_instances=" in problems[0]


def test_too_little_available_memory_stops_with_the_numbers(tmp_path):
    proc = fake_proc(tmp_path, "proc_lab_3hosts.json")
    meminfo = (proc / "meminfo").read_text().replace("MemAvailable:   23944960 kB", "MemAvailable:     900000 kB")
    (proc / "meminfo").write_text(meminfo)
    _, problems = limits.plan(32, limits.read_machine(proc))
    assert problems == [
        "MemAvailable is 878 MiB; 32 lab hosts need about 2560 MiB (64 MiB each, 512 MiB kept free): "
        "use fewer --workers or free memory (other labs: invoke lab.status)"
    ]


def test_ensure_writes_the_raise_and_says_it(tmp_path):
    proc = fake_proc(tmp_path, "proc_lab_3hosts.json", max_user_instances="128\n")
    said = []
    limits.ensure(32, said.append, proc)
    assert (proc / "sys/fs/inotify/max_user_instances").read_text() == "512\n"
    assert said == [limits.Raise("fs.inotify.max_user_instances", 128, 512).line(32)]


def test_ensure_stops_before_raising_anything(tmp_path):
    proc = fake_proc(tmp_path, "proc_lab_3hosts.json", max_user_instances="128\n")
    (proc / "meminfo").write_text("MemTotal: 1000000 kB\nMemAvailable: 500000 kB\n")
    with pytest.raises(LabError, match="^MemAvailable is 488 MiB"):
        limits.ensure(32, print, proc)
    assert (proc / "sys/fs/inotify/max_user_instances").read_text() == "128\n"  # nothing half-changed


def test_a_limit_that_cannot_be_written_stops_with_the_command(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path, "proc_lab_3hosts.json", max_user_instances="128\n")

    def read_only(path, text):  # what a read-only /proc/sys answers
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(LabError) as error:
        limits.ensure(32, print, proc)
    assert str(error.value) == (
        "fs.inotify.max_user_instances is 128, 32 lab hosts need 512 and it cannot be raised here "
        "(Read-only file system): run `sysctl -w fs.inotify.max_user_instances=512` where it can"
    )
