"""The workers' and the head's systemd units: command lines, address filters, sandbox, systemd's own checks."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from command_line import error_line, invoke
from inventory_tree import HEAD_AND_WORKERS, write_tree

from llamafleet import cluster, inventory, units
from llamafleet.errors import InventoryError
from llamafleet.roles.head import role as head_role
from llamafleet.roles.rpc_worker import role as worker_role

TWO_WORKERS = HEAD_AND_WORKERS + (
    "        w1: {ansible_host: 10.0.0.2}\n"
    "        w2: {ansible_host: 10.0.0.3, rpc_port: 50053, rpc_threads: 6, rpc_devices: [CPU]}\n"
)
SECRET = "sk-unit-test-secret-5f2c"  # noqa: S105 - the value that must never reach a unit
WORKER_EXPOSURE, HEAD_EXPOSURE = 1.5, 2.0  # systemd-analyze security targets for the CPU units
GPU_DEVICES = {
    "cuda": ["char-nvidia-frontend rw", "char-nvidia-uvm rw"],
    "rocm": ["char-kfd rw", "char-drm rw"],
    "vulkan": ["char-drm rw"],
}
GPU_GROUPS = {"cuda": "video", "rocm": "video render", "vulkan": "video render"}
UNIT_FOLDER = Path("/usr/lib/systemd/system")  # the targets every unit depends on, copied into a test root
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not UNIT_FOLDER.is_dir(), reason="no systemd-analyze"
)


def load(tmp_path: Path, hosts_yml: str = TWO_WORKERS, extra: dict | None = None, **files: str):
    path = write_tree(tmp_path, {"hosts.yml": hosts_yml, **files})
    inv = inventory.load(path, extra)
    return inv, cluster.view(inv)


def worker_unit(tmp_path, name="w1", **kwargs) -> str:
    inv, view = load(tmp_path, **kwargs)
    return worker_role.render_unit(worker_role.settings.settings(inv.hosts[name]), view)


def head_unit(tmp_path, model=head_role.MODEL_PLACEHOLDER, **kwargs) -> str:
    inv, view = load(tmp_path, **kwargs)
    return head_role.render_unit(head_role.settings.settings(inv.head), view, model)


def values(unit: str, key: str) -> list[str]:
    """Every value of `key` in the unit, in order."""
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]


def systemd_words(line: str) -> list[str]:
    """An Exec line's words as systemd passes them: quotes removed, $$ and %% undoubled (no other specifiers)."""
    return [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(line)]


# -- command lines ------------------------------------------------------------------------------


def test_workers_run_rpc_server_on_their_address_with_their_own_options(tmp_path):
    inv, view = load(tmp_path)
    w1, w2 = (worker_role.render_unit(worker_role.settings.settings(inv.hosts[n]), view) for n in ("w1", "w2"))
    rpc_server = "/opt/llama.cpp/current/bin/ggml-rpc-server"
    (line,) = values(w1, "ExecStart")
    assert shlex.split(line) == ["/usr/bin/stdbuf", "-oL", rpc_server, "-H", "10.0.0.2", "-p", "50052", "-c"]
    (line,) = values(w2, "ExecStart")
    assert shlex.split(line) == [
        *["/usr/bin/stdbuf", "-oL", rpc_server, "-H", "10.0.0.3", "-p", "50053", "-t", "6", "-d", "CPU", "-c"]
    ]


def test_older_trees_name_the_worker_rpc_server(tmp_path):
    inv, view = load(tmp_path)
    unit = worker_role.render_unit(worker_role.settings.settings(inv.hosts["w1"]), view, binary="rpc-server")
    assert shlex.split(values(unit, "ExecStart")[0])[2] == "/opt/llama.cpp/current/bin/rpc-server"


def test_worker_bound_to_every_address_is_reached_at_its_ansible_host(tmp_path):
    unit = worker_unit(tmp_path, extra={"rpc_host": "0.0.0.0"})  # -e: every host, the head included
    assert shlex.split(values(unit, "ExecStart")[0])[3:5] == ["-H", "0.0.0.0"]
    assert values(unit, "IPAddressAllow") == ["10.0.0.1 localhost"]
    unit = head_unit(tmp_path / "h", extra={"rpc_host": "0.0.0.0"})
    assert "--rpc 10.0.0.2:50052,10.0.0.3:50053 " in values(unit, "ExecStart")[0]


def test_the_head_runs_llama_server_with_the_default_options(tmp_path):
    (line,) = values(head_unit(tmp_path, model="/var/lib/llamafleet/models/m.gguf"), "ExecStart")
    # The output passes sed, which drops the line showing the key's last characters; llama-server is the main process.
    assert shlex.split(line.replace("$$", "$")) == [
        *["/bin/bash", "-c", 'exec "$@" > >(exec /bin/sed -u "/ api_keys: /d") 2>&1', "llama-server"],
        "/opt/llama.cpp/current/bin/llama-server",
        *["--model", "/var/lib/llamafleet/models/m.gguf"],
        *["--rpc", "10.0.0.2:50052,10.0.0.3:50053"],
        *["-ngl", "99", "-c", "4096", "-np", "1"],
        *["--host", "0.0.0.0", "--port", "8080"],
        *["--metrics", "--no-webui", "-lv", "4"],
    ]


def test_every_head_option_reaches_the_command_line_quoted_for_systemd(tmp_path):
    head_vars = """\
        api_host: 10.0.0.1
        api_port: 8443
        api_key_file: key.txt
        n_gpu_layers: 20
        tensor_split: [3, 1, 0.5]
        ctx_size: 8192
        parallel: 4
        model_alias: tiny llama
        metrics: false
        webui: true
        llama_server_extra_args: [--temp, 0.7, --chat-template-kwargs, '{"a": "$HOME 100%"}']
    """
    (line,) = values(head_unit(tmp_path, **{"host_vars/h1.yml": head_vars}), "ExecStart")
    assert systemd_words(line)[4:] == [
        "/opt/llama.cpp/current/bin/llama-server",
        *["--model", "/var/lib/llamafleet/models/MODEL.gguf"],
        *["--rpc", "10.0.0.2:50052,10.0.0.3:50053"],
        *["-ngl", "20", "--tensor-split", "3,1,0.5", "-c", "8192", "-np", "4", "--alias", "tiny llama"],
        *["--host", "10.0.0.1", "--port", "8443", "--api-key-file", "%d/api-key"],
        *["--temp", "0.7", "--chat-template-kwargs", '{"a": "$HOME 100%"}'],
        *["-lv", "4"],
    ]
    # systemd would expand $HOME and %-specifiers: both are doubled in the file.
    assert '\\"$$HOME 100%%\\"' in line


def test_rpc_list_follows_the_inventory_order(tmp_path):
    hosts = HEAD_AND_WORKERS + "        wb: {ansible_host: 10.0.0.7}\n        wa: {ansible_host: 10.0.0.6}\n"
    unit = head_unit(tmp_path, hosts_yml=hosts)
    words = shlex.split(values(unit, "ExecStart")[0])
    assert words[words.index("--rpc") + 1] == "10.0.0.7:50052,10.0.0.6:50052"
    assert shlex.split(values(unit, "ExecStartPre")[0])[-4:] == ["10.0.0.7", "50052", "10.0.0.6", "50052"]


def test_a_head_without_workers_waits_for_none(tmp_path):
    unit = head_unit(
        tmp_path, hosts_yml="all:\n  children:\n    head:\n      hosts:\n        h1: {ansible_host: 10.0.0.1}\n"
    )
    assert "--rpc" not in shlex.split(values(unit, "ExecStart")[0])
    assert values(unit, "ExecStartPre") == []
    assert values(unit, "IPAddressAllow") == ["10.0.0.1 localhost"]


# -- who may connect ----------------------------------------------------------------------------


def test_workers_admit_the_head_and_loopback_only(tmp_path):
    unit = worker_unit(tmp_path)
    assert values(unit, "IPAddressDeny") == ["any"]
    assert values(unit, "IPAddressAllow") == ["10.0.0.1 localhost"]
    unit = worker_unit(tmp_path / "b", **{"host_vars/h1.yml": "rpc_host: 10.10.0.1\n"})
    assert values(unit, "IPAddressAllow") == ["10.10.0.1 localhost"]


def test_head_admits_api_clients_workers_and_loopback(tmp_path):
    unit = head_unit(tmp_path)
    assert values(unit, "IPAddressDeny") == ["any"]
    assert values(unit, "IPAddressAllow") == ["10.0.0.1 10.0.0.2 10.0.0.3 localhost"]
    unit = head_unit(tmp_path / "b", **{"host_vars/h1.yml": "api_allow: [192.168.7.0/24, 10.0.0.3]\n"})
    assert values(unit, "IPAddressAllow") == ["192.168.7.0/24 10.0.0.3 10.0.0.2 localhost"]


# -- the API key --------------------------------------------------------------------------------


def test_the_key_is_a_credential_never_a_value(tmp_path):
    (tmp_path / "key.txt").write_text(SECRET + "\n")
    unit = head_unit(tmp_path, **{"host_vars/h1.yml": "api_key_file: key.txt\n"})
    assert values(unit, "LoadCredential") == ["api-key:/etc/llamafleet/api-key"]
    words = shlex.split(values(unit, "ExecStart")[0])
    assert words[words.index("--api-key-file") + 1] == "%d/api-key"
    assert SECRET not in unit and "key.txt" not in unit and "--api-key " not in unit


def test_without_a_key_file_the_api_asks_for_no_key(tmp_path):
    unit = head_unit(tmp_path)
    assert "--api-key" not in unit and values(unit, "LoadCredential") == []


def test_a_key_in_the_extra_args_is_refused_without_showing_it(tmp_path):
    with pytest.raises(InventoryError) as caught:
        head_unit(tmp_path, extra={"llama_server_extra_args": ["--threads", 4, f"--api-key={SECRET}"]})
    assert "host h1: llama_server_extra_args: --api-key would show the key" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({"llama_server_extra_args": ["--x", "two\nlines"]}, "host h1: llama_server_extra_args: item 'two\\nlines'"),
        ({"model_alias": "a\nExecStartPre=/bin/evil"}, "host h1: model_alias: "),
        ({"tensor_split": [1, "abc"]}, "host h1: tensor_split: item 'abc' does not match"),
        ({"tensor_split": [1, -1]}, "host h1: tensor_split: item '-1' does not match"),
        ({"api_host": "my.host"}, "host h1: api_host: 'my.host' is not an IP address"),
        ({"parallel": 0}, "host h1: parallel: 0 is not a whole number >= 1"),
        ({"n_gpu_layers": -1}, "host h1: n_gpu_layers: -1 is not a whole number >= 0"),
    ],
)
def test_head_values_that_cannot_go_into_a_unit_are_refused_naming_host_and_key(tmp_path, variables, fragment):
    with pytest.raises(InventoryError) as caught:
        head_unit(tmp_path, extra=variables)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({"rpc_devices": ["CUDA0,CUDA1"]}, "host w1: rpc_devices: item 'CUDA0,CUDA1' does not match"),
        ({"rpc_threads": 0}, "host w1: rpc_threads: 0 is not a whole number >= 1"),
        ({"rpc_cache_max_size": "lots"}, "host w1: rpc_cache_max_size: 'lots' does not match"),
    ],
)
def test_worker_values_that_cannot_go_into_a_unit_are_refused_naming_host_and_key(tmp_path, variables, fragment):
    with pytest.raises(InventoryError) as caught:
        worker_unit(tmp_path, extra=variables)
    assert fragment in str(caught.value)


def test_quoting_refuses_control_characters():
    assert units.exec_line(["/bin/x", "a b", 'q"', "back\\slash", "50%", "$X"]) == (
        '/bin/x "a b" "q\\"" "back\\\\slash" "50%%" "$$X"'
    )
    with pytest.raises(ValueError, match="control characters"):
        units.quote("a\nb")


# -- the sandbox --------------------------------------------------------------------------------


@pytest.mark.parametrize("render", [worker_unit, head_unit])
def test_cpu_units_get_the_strict_sandbox(tmp_path, render):
    unit = render(tmp_path)
    for line in ("PrivateDevices=yes", "PrivateUsers=yes", "MemoryDenyWriteExecute=yes", "ProcSubset=pid"):
        assert line in unit.splitlines()
    assert values(unit, "DeviceAllow") == [] and values(unit, "SupplementaryGroups") == []
    assert values(unit, "CapabilityBoundingSet") == [""] and values(unit, "AmbientCapabilities") == [""]
    assert values(unit, "User") == values(unit, "Group") == ["llama"]
    assert values(unit, "WorkingDirectory") == ["/opt/llama.cpp/current/bin"]


@pytest.mark.parametrize("backend", sorted(GPU_DEVICES))
@pytest.mark.parametrize("render", [worker_unit, head_unit])
def test_gpu_units_get_exactly_their_devices(tmp_path, render, backend):
    unit = render(tmp_path, extra={"llama_cpp_backend": backend})
    assert values(unit, "DeviceAllow") == GPU_DEVICES[backend]
    assert values(unit, "DevicePolicy") == ["closed"]
    assert values(unit, "SupplementaryGroups") == [GPU_GROUPS[backend]]
    for key in ("PrivateDevices", "PrivateUsers", "MemoryDenyWriteExecute", "ProcSubset"):
        assert values(unit, key) == [], key


def test_worker_cache_lives_in_a_systemd_cache_directory(tmp_path):
    unit = worker_unit(tmp_path)
    assert values(unit, "Environment") == ["LLAMA_CACHE=%C/llamafleet"]
    assert values(unit, "CacheDirectory") == ["llamafleet/rpc"]
    assert values(unit, "CacheDirectoryMode") == ["0700"]
    assert values(unit, "Restart") == ["always"]  # rpc-server exits 0 when it cannot bind
    assert values(head_unit(tmp_path / "h"), "Restart") == ["on-failure"]


# -- systemd's own checks -----------------------------------------------------------------------


def systemd_root(tmp_path: Path, rendered: dict[str, str]) -> Path:
    """A root for `systemd-analyze --root`: the host's unit folder, the units, and stubs of what they execute."""
    root = tmp_path / "root"
    shutil.copytree(UNIT_FOLDER, root / "usr/lib/systemd/system", symlinks=True)
    for name, text in rendered.items():
        (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
        (root / "etc/systemd/system" / name).write_text(text)
        for line in values(text, "ExecStart") + values(text, "ExecStartPre"):
            stub = root / shlex.split(line)[0].lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    return root


@needs_systemd_analyze
@pytest.mark.parametrize("backend", ["cpu", *sorted(GPU_DEVICES)])
def test_systemd_analyze_verify_accepts_the_units(tmp_path, backend):
    extra = {"llama_cpp_backend": backend, "api_key_file": "key.txt"}
    rendered = {"llama-rpc.service": worker_unit(tmp_path / "w", extra=extra)}
    rendered["llama-server.service"] = head_unit(tmp_path / "h", extra=extra)
    root = systemd_root(tmp_path, rendered)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", *rendered],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_systemd_analyze
def test_systemd_analyze_verify_complains_about_an_unknown_key(tmp_path):
    unit = worker_unit(tmp_path).replace("Restart=always\n", "Restart=always\nRestartSecs=5\n")
    systemd_root(tmp_path, {"llama-rpc.service": unit})
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={tmp_path / 'root'}", "llama-rpc.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unknown key" in done.stderr and "RestartSecs" in done.stderr


def exposure(path: Path) -> float:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match[1])


@needs_systemd_analyze
def test_units_stay_within_their_systemd_exposure_targets(tmp_path):
    worker, head = tmp_path / "llama-rpc.service", tmp_path / "llama-server.service"
    worker.write_text(worker_unit(tmp_path / "w"))
    head.write_text(head_unit(tmp_path / "h", extra={"api_key_file": "key.txt"}))
    assert exposure(worker) <= WORKER_EXPOSURE
    assert exposure(head) <= HEAD_EXPOSURE


# -- the wait for the workers, run for real against loopback --------------------------------------


def wait_command(tmp_path: Path, ports: list[int], seconds: int) -> list[str]:
    hosts = HEAD_AND_WORKERS + "".join(
        f"        w{i}: {{ansible_host: 127.0.0.{i + 2}, rpc_host: 127.0.0.1, rpc_port: {port}}}\n"
        for i, port in enumerate(ports)
    )
    inv, view = load(tmp_path, hosts_yml=hosts)
    unit = head_role.render_unit(head_role.settings.settings(inv.head), view, wait_seconds=seconds)
    (line,) = values(unit, "ExecStartPre")
    return systemd_words(line)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not Path("/bin/bash").exists() or not Path("/usr/bin/timeout").exists(), reason="no bash")
def test_the_wait_opens_and_closes_a_connection_and_sends_nothing(tmp_path):
    received: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def serve_once() -> None:
            connection, _ = server.accept()
            with connection:
                received.append(connection.recv(1024))  # b"" once the peer closes without sending

        thread = threading.Thread(target=serve_once, daemon=True)
        thread.start()
        done = subprocess.run(wait_command(tmp_path, [server.getsockname()[1]], 10), capture_output=True, timeout=30)
        thread.join(timeout=10)
    assert (done.returncode, done.stderr) == (0, b"")
    assert received == [b""]


@pytest.mark.skipif(not Path("/bin/bash").exists() or not Path("/usr/bin/timeout").exists(), reason="no bash")
def test_the_wait_gives_up_naming_the_worker(tmp_path):
    port = free_port()
    done = subprocess.run(wait_command(tmp_path, [port], 1), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == f"llamafleet: worker 127.0.0.1:{port} does not accept connections after 1 s\n"


# -- invoke render ------------------------------------------------------------------------------


def test_invoke_render_writes_every_unit_per_host(tmp_path, command_env):
    inventory_file = write_tree(tmp_path / "inv", {"hosts.yml": TWO_WORKERS})
    out = tmp_path / "out"
    done = invoke("render", "-i", str(inventory_file), "--out", str(out), "--model", "/data/tiny.gguf", env=command_env)
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "h1/etc/systemd/system/llama-server.service",
        "w1/etc/systemd/system/llama-rpc.service",
        "w2/etc/systemd/system/llama-rpc.service",
    ]
    assert done.stdout.split() == [str(out / host / _unit(host)) for host in ("w1", "w2", "h1")]
    assert done.stderr == ""  # --model given: no note
    head_text = (out / "h1/etc/systemd/system/llama-server.service").read_text()
    inv = inventory.load(inventory_file)  # the key provision would give the head, as a credential
    head = head_role.settings.settings(inv.head, str(inventory_file))
    assert head_text == head_role.render_unit(head, cluster.view(inv), "/var/lib/llamafleet/models/tiny.gguf")
    assert values(head_text, "LoadCredential") == ["api-key:/etc/llamafleet/api-key"]
    assert (out / "w2/etc/systemd/system/llama-rpc.service").read_text() == worker_unit(tmp_path / "w", name="w2")


def _unit(host: str) -> str:
    return "etc/systemd/system/" + ("llama-server.service" if host == "h1" else "llama-rpc.service")


def test_invoke_render_bad_inventory_is_one_line_and_exit_2(tmp_path, command_env):
    inventory_file = write_tree(tmp_path / "inv", {"hosts.yml": TWO_WORKERS.replace("10.0.0.2}", "w1.lan}")})
    out = tmp_path / "out"
    done = invoke("render", "-i", str(inventory_file), "--out", str(out), env=command_env)
    error_line(done, f"{inventory_file}: host w1: rpc_host: not set, and ansible_host 'w1.lan'")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "--out DIR is required"),
        (["--out", "OUT", "-e", "llamafleet_user=root"], "llamafleet_user: 'root' is root"),
        (["--out", "OUT", "-e", "llama_server_extra_args=[--api-key, x]"], "--api-key would show the key"),
        (["--out", "FILE"], "--out: cannot write"),
    ],
)
def test_invoke_render_bad_flags_are_one_line_and_exit_2(tmp_path, command_env, args, fragment):
    inventory_file = write_tree(tmp_path / "inv", {"hosts.yml": TWO_WORKERS})
    (tmp_path / "FILE").write_text("not a folder")
    args = [str(tmp_path / a) if a in ("OUT", "FILE") else a for a in args]
    error_line(invoke("render", "-i", str(inventory_file), *args, env=command_env), fragment)


def test_invoke_render_warns_about_workers_bound_to_every_address(tmp_path, command_env):
    inventory_file = write_tree(
        tmp_path / "inv", {"hosts.yml": TWO_WORKERS, "group_vars/workers.yml": "rpc_host: 0.0.0.0\n"}
    )
    out = tmp_path / "out"
    done = invoke("render", "-i", str(inventory_file), "--out", str(out), "--model", "m.gguf", env=command_env)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.splitlines()
    assert [line.split(": rpc_host: ")[0] for line in warnings] == [
        f"warning: {inventory_file}: host w1",
        f"warning: {inventory_file}: host w2",
    ]
    head_text = (out / "h1/etc/systemd/system/llama-server.service").read_text()
    assert "--rpc 10.0.0.2:50052,10.0.0.3:50053 " in head_text
