"""An Ansible user's way in: a wheel built from a clean clone, installed, run as `llamafleet` from a folder outside
the checkout, on an INI inventory whose become password (a non-root login, sudo with a password) is vaulted.

Runs after the other lab tests but teardown's (files run in name order), on the session's provisioned lab.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from scripts import make_gguf
from tests.command_line import ROOT
from tests.lab.labtools import VERSION

VAULT_PASSWORD = "an ansible project's vault password"


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`llamafleet` from a wheel of a clean clone, in a venv of its own; its dependencies are this environment's
    (no package index is reached from a test), llamafleet itself only the wheel's."""
    folder = tmp_path_factory.mktemp("wheel")
    clone = folder / "clone"
    done = run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], folder, {"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    tools = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}
    wheel_argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    built = run([*wheel_argv, "-w", str(folder / "dist"), "."], clone, tools)
    assert built.returncode == 0, built.stderr[-3000:]
    venv = folder / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", str(venv)], folder, tools).returncode == 0
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # not its .pth files: no llamafleet
    [wheel] = (folder / "dist").glob("llamafleet-*.whl")
    done = run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q", "--no-deps",
                "--no-index", str(wheel)], folder, tools)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "llamafleet"


@pytest.fixture(scope="module")
def project(lab, admin_inventory, source, tmp_path_factory) -> Path:
    """An Ansible project's folder: hosts.ini, group_vars/all.yml with the vaulted become password, the vault's
    password file; outside the checkout."""
    folder = tmp_path_factory.mktemp("ansible-project")
    admin = yaml.safe_load(Path(admin_inventory).read_text())["all"]
    lab_vars = admin["vars"]
    hosts = {
        name: host["ansible_host"] for group in admin["children"].values() for name, host in group["hosts"].items()
    }
    head_line = f"head ansible_host={hosts['head']}"
    workers = "\n".join(f"{name} ansible_host={hosts[name]}" for name in ("w1", "w2"))
    (folder / "hosts.ini").write_text(
        f"# The cluster, as an Ansible project writes it\n[head]\n{head_line}\n\n[workers]\n{workers}\n\n"
        "[llama:children]\nhead\nworkers\n\n[llama:vars]\n"
        f"ansible_user={lab_vars['ansible_user']}\nansible_become=yes\n"
        f"ansible_ssh_private_key_file={lab_vars['ansible_ssh_private_key_file']}\n"
        f"known_hosts_file={lab_vars['known_hosts_file']}\n"
        f"api_key_file={lab_vars['api_key_file']}\n"
        f"api_allow={lab_vars['api_allow']!r}\n"  # a Python literal, as Ansible reads :vars values
        f"llama_cpp_cpu_variants={lab_vars['llama_cpp_cpu_variants']}\n"
        f"llama_cpp_version={VERSION}\nllama_cpp_source_archive={source}\n"
    )
    password_file = folder / "vault-pass.txt"
    password_file.write_text(VAULT_PASSWORD + "\n")
    # ansible-vault itself makes the vault (the reference tool, as an Ansible user would); the value on stdin.
    vaulted = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(password_file), "--stdin-name", "ansible_become_password"],
        cwd=folder, env={"PATH": "/usr/bin:/bin", "HOME": str(folder)}, input=lab_vars["ansible_become_password"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert vaulted.returncode == 0 and "!vault" in vaulted.stdout, vaulted.stderr
    (folder / "group_vars").mkdir()
    (folder / "group_vars" / "all.yml").write_text(vaulted.stdout)
    make_gguf.make_model(folder / "wheel-test.gguf", size="1M", seed=11)
    return folder


def test_the_installed_command_provisions_deploys_and_verifies_from_an_ini_inventory_with_a_vault(
    installed, project, env, admin_inventory
):
    vault = ["--vault-password-file", str(project / "vault-pass.txt")]
    steps = [
        ["provision", "-i", "hosts.ini", *vault],
        ["deploy", "-i", "hosts.ini", *vault, "--model", "wheel-test.gguf"],
        ["verify", "-i", "hosts.ini", *vault],
        ["inventory", "-i", "hosts.ini", *vault],
    ]
    password = yaml.safe_load(Path(admin_inventory).read_text())["all"]["vars"]["ansible_become_password"]
    outputs = []
    for argv in steps:
        done = run([str(installed), *argv], project, env)
        assert done.returncode == 0, (argv[0], done.stdout[-4000:], done.stderr[-2000:])
        outputs.append(done.stdout + done.stderr)
    assert "ansible_become_password: (vault)" in outputs[-1], outputs[-1]
    assert not [out for out in outputs if password in out], "the vaulted password was shown"
    assert not (project / "inventory").exists(), "nothing written beside the project"
