"""Role balancer: the haproxy.cfg rendered for one and three clusters (checked by the real haproxy when it is
installed here), the hardened drop-in (checked by systemd-analyze), its settings, and its operations planned from
recorded facts."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from inventory_tree import write_tree
from planning import FILE, MISSING, commands_of, plan
from recordings import words

from llamafleet import inventory
from llamafleet.errors import InventoryError
from llamafleet.operations import NoChange, Shell, Upload
from llamafleet.roles.balancer import role, settings
from llamafleet.roles.balancer.settings import BalancerSettings

HAPROXY_UNIT = Path("/lib/systemd/system/haproxy.service")  # the distribution's unit the drop-in adds to
needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed here (apt-get install haproxy): config unchecked"
)
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not HAPROXY_UNIT.is_file(),
    reason="no systemd-analyze or no haproxy.service here (apt-get install haproxy): drop-in unchecked",
)
DEFAULTS = BalancerSettings("lb1", "0.0.0.0", 8080, 2, 600, 120)  # noqa: S104 - defaults.yml's values
EXPOSURE = 2.5  # systemd-analyze security of haproxy.service with the drop-in (master-worker runs as root)


@dataclass(frozen=True)
class Cluster:
    """What the role reads of a cluster (llamafleet.cluster.Cluster has these and more)."""

    name: str
    api_address: str
    api_port: int = 8080


ONE = [Cluster("default", "10.0.0.1")]
THREE = [Cluster("c1", "10.0.0.1"), Cluster("c2", "10.0.1.1", 8081), Cluster("gpu-big_3", "192.168.5.20", 9000)]


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def section(text: str, header: str) -> list[str]:
    """The directive lines of one section (`global`, `defaults`, `backend heads`...)."""
    found, inside = [], False
    for line in text.splitlines():
        if line and not line[0].isspace():
            inside = line.strip() == header
        elif inside and line.strip() and not line.strip().startswith("#"):
            found.append(line.strip())
    return found


def values(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]


# -- haproxy.cfg ----------------------------------------------------------------------------------------------


def test_one_cluster_is_one_server_behind_one_frontend():
    config = role.render_config(DEFAULTS, ONE)
    assert section(config, "frontend api") == ["bind 0.0.0.0:8080", "default_backend heads"]
    assert [line for line in section(config, "backend heads") if line.startswith("server ")] == [
        "server default 10.0.0.1:8080"
    ]


def test_three_clusters_are_three_servers_in_cluster_order_by_least_connections():
    backend = section(role.render_config(DEFAULTS, THREE), "backend heads")
    assert [line for line in backend if line.startswith("server ")] == [
        "server c1 10.0.0.1:8080",
        "server c2 10.0.1.1:8081",
        "server gpu-big_3 192.168.5.20:9000",
    ]
    assert "balance leastconn" in backend


def test_each_head_is_checked_on_health_and_only_200_keeps_it_in():
    backend = section(role.render_config(replace(DEFAULTS, balancer_check_interval=5), ONE), "backend heads")
    assert backend[1:4] == [
        "option httpchk",
        "http-check send meth GET uri /health ver HTTP/1.1 hdr Host llamafleet-balancer",
        "http-check expect status 200",
    ]
    # Out after two failed checks, back after two passed ones (1 s apart while it changes state).
    assert "default-server check inter 5s fastinter 1s downinter 5s fall 2 rise 2" in backend


def test_requests_a_head_did_not_take_go_to_another_and_long_generations_are_not_cut():
    config = role.render_config(replace(DEFAULTS, balancer_timeout=1800), ONE)
    defaults = section(config, "defaults")
    retried = ["option http-buffer-request", "retries 3", "option redispatch 1"]
    assert {*retried, "retry-on conn-failure empty-response 503"} <= set(defaults)
    assert {"timeout server 1800s", "timeout client 1800s", "timeout tunnel 1800s"} <= set(defaults)
    assert "hard-stop-after 1800s" in section(config, "global")


def test_streams_pass_unbuffered_and_the_key_untouched():
    """Nothing compresses or holds back responses, nothing rewrites headers; no auth or stats page at the balancer."""
    config = lines(role.render_config(DEFAULTS, THREE))
    touching = re.compile(
        r"^(compression|http-request|http-response|stats (enable|uri|auth)"
        r"|userlist|acl|use_backend|option forwardfor|http-reuse)\b"
    )
    assert [line for line in config if touching.match(line)] == []
    assert "option http-server-close" in config


def test_the_runtime_api_is_a_root_only_unix_socket_and_logs_go_to_the_journal():
    glob = section(role.render_config(DEFAULTS, ONE), "global")
    assert [line for line in glob if line.startswith("stats ")] == [
        "stats socket /run/haproxy/admin.sock mode 600 level admin",
        "stats timeout 30s",
    ]
    assert "log stdout format raw local0 info" in glob
    assert {"chroot /var/lib/haproxy", "user haproxy", "group haproxy"} <= set(glob)
    assert "daemon" not in glob  # systemd runs it in master-worker mode (-Ws)


def test_the_endpoint_listens_where_it_is_told():
    config = role.render_config(replace(DEFAULTS, balancer_host="10.9.0.5", balancer_port=443), ONE)
    assert section(config, "frontend api")[0] == "bind 10.9.0.5:443"


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (Cluster("c1 c2", "10.0.0.1"), "cluster name"),
        (Cluster("c1\n    server evil 10.6.6.6:80", "10.0.0.1"), "cluster name"),
        (Cluster("-c1", "10.0.0.1"), "cluster name"),
        (Cluster("c1", "10.0.0.1:80 backup"), "IPv4"),
        (Cluster("c1", "head.example"), "IPv4"),
        (Cluster("c1", "fd00::1"), "IPv4"),
        (Cluster("c1", "0.0.0.0"), "no balancer can reach"),  # noqa: S104
        (Cluster("c1", "10.0.0.1", 0), "not a TCP port"),
        (Cluster("c1", "10.0.0.1", 65536), "not a TCP port"),
        (Cluster("c1", "10.0.0.1", "8080 check"), "not a TCP port"),  # type: ignore[arg-type]
        (Cluster("c1", "10.0.0.1", True), "not a TCP port"),
    ],
)
def test_nothing_but_a_plain_name_an_address_and_a_port_reaches_a_server_line(cluster, message):
    with pytest.raises(ValueError, match=message):
        role.render_config(DEFAULTS, [Cluster("ok", "10.0.0.9"), cluster])


def test_two_clusters_of_one_name_are_refused():
    with pytest.raises(ValueError, match="same name: c1, c2, c1"):
        role.servers([Cluster("c1", "10.0.0.1"), Cluster("c2", "10.0.0.2"), Cluster("c1", "10.0.0.3")])


@needs_haproxy
@pytest.mark.parametrize("clusters", [ONE, THREE], ids=["one", "three"])
def test_haproxy_accepts_the_configuration(tmp_path, clusters):
    path = tmp_path / "haproxy.cfg"
    path.write_text(role.render_config(DEFAULTS, clusters))
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout == "Configuration file is valid\n"


@needs_haproxy
def test_haproxy_accepts_the_longest_cluster_name(tmp_path):
    path = tmp_path / "haproxy.cfg"
    path.write_text(role.render_config(DEFAULTS, [Cluster("c" * 253, "10.0.0.1")]))
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")


@needs_haproxy
def test_the_configuration_is_installed_only_once_haproxy_accepted_it(tmp_path):
    config, staged = tmp_path / "haproxy.cfg", tmp_path / "haproxy.cfg.lf-new"
    config.write_text("old\n")
    staged.write_text(role.render_config(DEFAULTS, ONE).replace("balance leastconn", "balance leastcon"))
    refused = subprocess.run(
        ["sh", "-c", role.install_checked(str(staged), str(config))], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 1 and "leastcon" in refused.stderr
    assert (config.read_text(), staged.exists()) == ("old\n", False)
    staged.write_text(role.render_config(DEFAULTS, ONE))
    accepted = subprocess.run(
        ["sh", "-c", role.install_checked(str(staged), str(config))], capture_output=True, text=True, timeout=30
    )
    assert (accepted.returncode, accepted.stdout, accepted.stderr) == (0, "", "")
    assert (config.read_text(), staged.exists()) == (role.render_config(DEFAULTS, ONE), False)


# -- the drop-in ----------------------------------------------------------------------------------------------


def test_the_master_keeps_only_the_capabilities_it_uses():
    dropin = role.render_dropin(DEFAULTS, ONE)
    assert values(dropin, "CapabilityBoundingSet") == ["CAP_SETUID CAP_SETGID CAP_SYS_CHROOT CAP_KILL"]
    assert values(dropin, "AmbientCapabilities") == [""]
    assert values(dropin, "NoNewPrivileges") == ["yes"]


def test_a_port_below_1024_adds_the_capability_to_bind_it():
    dropin = role.render_dropin(replace(DEFAULTS, balancer_port=443), ONE)
    assert values(dropin, "CapabilityBoundingSet") == [
        "CAP_SETUID CAP_SETGID CAP_SYS_CHROOT CAP_KILL CAP_NET_BIND_SERVICE"
    ]
    assert "CAP_NET_BIND_SERVICE" not in role.render_dropin(replace(DEFAULTS, balancer_port=1024), ONE)


def test_the_system_is_read_only_but_for_a_runtime_folder_of_root_s_alone():
    dropin = role.render_dropin(DEFAULTS, ONE)
    expected = {
        "RuntimeDirectory": ["haproxy"],
        "RuntimeDirectoryMode": ["0700"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "BindReadOnlyPaths": [""],  # the distribution's /dev/log in the chroot: logs go to stdout instead
        "Environment": ['"PIDFILE=/run/haproxy/haproxy.pid" "EXTRAOPTS=-S /run/haproxy/master.sock"'],
        "SystemCallFilter": ["@system-service chroot"],
        "MemoryDenyWriteExecute": ["yes"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    }
    assert {key: values(dropin, key) for key in expected} == expected
    assert "ReadWritePaths" not in dropin  # the runtime folder is the only writable place, and it is made by systemd


def test_clients_the_heads_and_loopback_are_the_only_addresses():
    dropin = role.render_dropin(DEFAULTS, THREE, ("10.213.0.0/16", "10.0.0.1"))
    assert values(dropin, "IPAddressDeny") == ["any"]
    assert values(dropin, "IPAddressAllow") == ["10.213.0.0/16 10.0.0.1 10.0.1.1 192.168.5.20 localhost"]
    assert "IPAddress" not in role.render_dropin(DEFAULTS, THREE)  # no clients known: the firewall decides alone


def systemd_root(tmp_path: Path, dropin: str) -> Path:
    """A root for `systemd-analyze --root`: the host's units, haproxy.service and the drop-in, stub binaries."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib/systemd/system").mkdir(parents=True, exist_ok=True)
    shutil.copy(HAPROXY_UNIT, root / "lib/systemd/system/haproxy.service")
    folder = root / "etc/systemd/system/haproxy.service.d"
    folder.mkdir(parents=True)
    (folder / "llamafleet.conf").write_text(dropin)
    for binary in ("usr/sbin/haproxy", "bin/kill"):
        (root / binary).parent.mkdir(parents=True, exist_ok=True)
        (root / binary).write_text("#!/bin/sh\n")
        (root / binary).chmod(0o755)
    return root


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_drop_in(tmp_path):
    root = systemd_root(tmp_path, role.render_dropin(replace(DEFAULTS, balancer_port=80), THREE, ("10.0.0.0/8",)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", "haproxy.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in done.stderr.splitlines() if "llamafleet.conf" in line or "Unknown" in line]
    assert (done.returncode, problems) == (0, [])


@needs_systemd_analyze
def test_systemd_analyze_verify_finds_a_misspelt_directive(tmp_path):
    dropin = role.render_dropin(DEFAULTS, ONE).replace("ProtectHome=", "ProtectHomes=")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={systemd_root(tmp_path, dropin)}", "haproxy.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ProtectHomes" in done.stderr


@needs_systemd_analyze
def test_haproxy_with_the_drop_in_stays_within_its_exposure_target(tmp_path):
    unit = tmp_path / "haproxy.service"
    unit.write_text(HAPROXY_UNIT.read_text() + "\n" + role.render_dropin(DEFAULTS, ONE, ("10.0.0.0/8",)))
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=100", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match[1]) <= EXPOSURE


# -- settings -------------------------------------------------------------------------------------------------

BALANCED = """\
all:
  children:
    head:
      hosts:
        h1: {ansible_host: 10.0.0.1}
    balancers:
      hosts:
        lb1: {ansible_host: 10.0.0.9%s}
"""


def test_the_defaults_are_the_documented_ones(tmp_path):
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": BALANCED % ""}))
    assert settings.settings(inv.hosts["lb1"]) == DEFAULTS


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("balancer_host: 10.0.0.256", "balancer_host"),
        ("balancer_host: fd00::1", "balancer_host"),
        ("balancer_host: '10.0.0.9 ssl'", "balancer_host"),
        ("balancer_port: 0", "balancer_port"),
        ("balancer_check_interval: 0", "balancer_check_interval"),
        ("balancer_timeout: -5", "balancer_timeout"),
        ("balancer_drain_timeout: ten", "balancer_drain_timeout"),
    ],
)
def test_a_bad_value_is_refused_naming_host_and_key(tmp_path, var, key):
    with pytest.raises(InventoryError) as raised:
        inv = inventory.load(write_tree(tmp_path, {"hosts.yml": BALANCED % f", {var}"}))
        settings.settings(inv.hosts["lb1"], "hosts.yml")
    assert "lb1" in str(raised.value) and key in str(raised.value)


# -- operations, planned from recorded facts ------------------------------------------------------------------


def test_a_new_configuration_is_staged_checked_then_moved_into_place():
    result = plan(role.checked_config("global\n"), MISSING)
    upload, check = result.steps
    assert isinstance(upload, Upload) and isinstance(check, Shell)
    assert (upload.path, upload.mode, upload.owner, upload.group) == (role.STAGED, "0640", "root", "haproxy")
    assert words(check.command) == [
        *["(", "haproxy", "-c", "-f", role.STAGED, ">", "/dev/null", "||", "{", "rm", "-f", "--", role.STAGED, ";"],
        *["exit", "1", ";", "}", ";", "mv", "-fT", "--", role.STAGED, role.CONFIG, ")"],
    ]
    assert (result.diff_path, result.new_text) == (role.CONFIG, "global\n")


def test_a_configuration_in_place_changes_nothing_and_a_wrong_owner_is_fixed_in_place():
    app_conf = "name=w1\nport=50052\n"  # what pathinfo_file.txt describes (0640 root:root)
    assert isinstance(plan(role.checked_config(app_conf), replace(FILE, group="haproxy")), NoChange)
    assert [words(c) for c in commands_of(plan(role.checked_config(app_conf), FILE))] == [
        ["chown", "root:haproxy", role.CONFIG]
    ]


def test_a_reload_or_restart_waits_until_haproxy_answers_for_the_new_configuration():
    reload, restart = plan(role.reloaded(THREE)), plan(role.reloaded(ONE, restart=True))
    assert [words(c)[:3] for c in commands_of(reload)] == [
        ["systemctl", "reload-or-restart", "haproxy.service"],
        ["bash", "-c", words(commands_of(reload)[1])[2]],
    ]
    assert words(commands_of(reload)[1])[3:] == ["wait-configured", "30", "heads", "c1", "c2", "gpu-big_3"]
    assert words(commands_of(restart)[0]) == ["systemctl", "restart", "haproxy.service"]
    assert words(commands_of(restart)[1])[3:] == ["wait-configured", "30", "heads", "default"]


@dataclass(frozen=True)
class Balancer:
    name: str
    allow: tuple[str, ...]


@dataclass(frozen=True)
class Fleet:
    """What the role reads of llamafleet.cluster.Fleet: the clusters, and each balancer's clients."""

    clusters: tuple[Cluster, ...]
    balancers: tuple[Balancer, ...]

    def balancer(self, name: str) -> Balancer:
        return next(balancer for balancer in self.balancers if balancer.name == name)


def test_a_balancer_gets_its_configuration_and_a_drop_in_admitting_its_own_clients(tmp_path):
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": BALANCED % ", balancer_port: 9090"}))
    fleet = Fleet(tuple(THREE), (Balancer("lb0", ("10.1.0.0/16",)), Balancer("lb1", ("10.2.0.0/16",))))
    rendered = role.files(inv.hosts["lb1"], fleet)
    assert list(rendered) == ["/etc/haproxy/haproxy.cfg", "/etc/systemd/system/haproxy.service.d/llamafleet.conf"]
    assert section(rendered["/etc/haproxy/haproxy.cfg"], "frontend api")[0] == "bind 0.0.0.0:9090"
    dropin = rendered["/etc/systemd/system/haproxy.service.d/llamafleet.conf"]
    assert values(dropin, "IPAddressAllow") == ["10.2.0.0/16 10.0.0.1 10.0.1.1 192.168.5.20 localhost"]
