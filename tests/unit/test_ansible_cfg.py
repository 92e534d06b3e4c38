"""ansible.cfg found and read as ansible-core finds and reads it (`ansible-config dump` from ansible-core is the
reference, a test tool only), its settings applied below the inventory and the flags, the keys llamafleet does not
honour warned about in one line each, and its mistakes one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from command_line import ROOT, environment, error_line, invoke_argv
from test_ini_against_ansible import ansible_environment

from llamafleet import ansible_cfg, cli, loading

ANSIBLE_CONFIG_TOOL = Path(sys.executable).with_name("ansible-config")
ANSIBLE_VAULT = Path(sys.executable).with_name("ansible-vault")
PASSWORD = Path(__file__).resolve().parent.parent / "fixtures" / "vault" / "password.txt"
HOSTS = "head:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\n"

FULL = """\
# every key llamafleet reads, spelled as Ansible users spell them
[defaults]
inventory = hosts, ../other ; a comment after the value
remote_user = "deploy"
remote_port = 2222
private_key_file = keys/id_ed25519
timeout = 12
forks = 7
vault_password_file = ~/vault.txt
vault_identity_list = lab@lab.txt, ops@prompt
vault_identity = ops
inventory_ignore_extensions = .bak, ~, .draft
inventory_ignore_patterns = ^old-, \\.disabled$
host_key_checking = False
interpreter_python = auto_silent

[privilege_escalation]
become = yes
become_user = ops_admin
become_method = sudo
"""
# name -> (ansible.cfg text, ANSIBLE_* variables, where the file is: "named" by ANSIBLE_CONFIG, a "folder" it names,
# the current "cwd", "home" (~/.ansible.cfg), a "world_writable" current folder, or "missing" (ANSIBLE_CONFIG names
# no file: the current folder's is read))
CASES = {
    "full": (FULL, {}, "named"),
    "inventory_section": ("[inventory]\nignore_extensions = .x\nignore_patterns = a.*b\n", {}, "named"),
    "environment_beats_file": (
        "[defaults]\nremote_user = deploy\nforks = 7\ninventory = hosts\ntimeout = 3\nremote_port = 22\n",
        {
            "ANSIBLE_REMOTE_USER": "admin",
            "ANSIBLE_FORKS": "3",
            "ANSIBLE_INVENTORY": "env_hosts, more/",
            "ANSIBLE_PRIVATE_KEY_FILE": "key",
            "ANSIBLE_TIMEOUT": "5",
            "ANSIBLE_REMOTE_PORT": "2200",
            "ANSIBLE_BECOME": "true",
            "ANSIBLE_BECOME_USER": "root",
        },
        "named",
    ),
    "quotes_and_variables": (
        "[defaults]\nremote_user = 'admin' \nprivate_key_file = $HOME/.ssh/id_rsa\ninventory = ~/inv/hosts.ini\n"
        "[privilege_escalation]\nbecome = False\n",
        {},
        "named",
    ),
    "no_key": ("[defaults]\nroles_path = roles\n", {}, "named"),
    "folder": ("[defaults]\nremote_user = in_folder\n", {}, "folder"),
    "cwd": ("[defaults]\nremote_user = in_cwd\n", {}, "cwd"),
    "home": ("[defaults]\nremote_user = in_home\n", {}, "home"),
    "world_writable": ("[defaults]\nremote_user = in_cwd\n", {}, "world_writable"),
    "missing": ("[defaults]\nremote_user = in_cwd\n", {}, "missing"),
}
COMPARED = [
    "CONFIG_FILE",
    "DEFAULT_HOST_LIST",
    "DEFAULT_REMOTE_USER",
    "DEFAULT_REMOTE_PORT",
    "DEFAULT_PRIVATE_KEY_FILE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_FORKS",
    "DEFAULT_BECOME",
    "DEFAULT_BECOME_USER",
    "DEFAULT_BECOME_METHOD",
    "DEFAULT_VAULT_PASSWORD_FILE",
    "DEFAULT_VAULT_IDENTITY_LIST",
    "DEFAULT_VAULT_IDENTITY",
    "INVENTORY_IGNORE_EXTS",
    "INVENTORY_IGNORE_PATTERNS",
    "HOST_KEY_CHECKING",
]


def place(folder: Path, text: str, where: str) -> tuple[Path, Path, dict[str, str]]:
    """Write the case's ansible.cfg: (the current folder, HOME, the ANSIBLE_CONFIG variable if any)."""
    cwd, home = folder / "work" / "project", folder / "home"
    cwd.mkdir(parents=True)
    home.mkdir()
    named = {"named": cwd / "conf" / "site.cfg", "folder": cwd / "conf" / "ansible.cfg", "home": home / ".ansible.cfg"}
    path = named.get(where, cwd / "ansible.cfg")
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    env = {"named": {"ANSIBLE_CONFIG": str(path)}, "folder": {"ANSIBLE_CONFIG": str(path.parent)}}.get(where, {})
    if where == "missing":
        env = {"ANSIBLE_CONFIG": str(folder / "nowhere.cfg")}
    if where == "world_writable":
        cwd.chmod(0o777)
        (home / ".ansible.cfg").write_text("[defaults]\nremote_user = in_home\n")
    return cwd, home, env


def process_environment(home: Path, variables: dict[str, str]) -> dict[str, str]:
    """This process's environment without its ANSIBLE_* variables, with HOME and the case's."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    return {**kept, "HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), **variables}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[Path, Path, dict[str, str], subprocess.CompletedProcess]]:
    """Each case placed, and `ansible-config dump --only-changed` run on it (all started together)."""
    placed, started = {}, {}
    for name, (text, variables, where) in CASES.items():
        cwd, home, env = place(tmp_path_factory.mktemp(name), text, where)
        env = process_environment(home, {**env, **variables})
        placed[name] = (cwd, home, env)
        argv = [str(ANSIBLE_CONFIG_TOOL), "dump", "--only-changed", "--format", "json"]
        started[name] = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = (*placed[name], subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def ansible_reads(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    dumped = {entry["name"]: entry["value"] for entry in json.loads(result.stdout) if "name" in entry}
    return {name: dumped[name] for name in COMPARED if name in dumped}


def llamafleet_reads(settings: ansible_cfg.Settings) -> dict:
    """The settings as ansible-config names them."""
    fallback = settings.fallback
    found = {
        "CONFIG_FILE": settings.file,
        "DEFAULT_HOST_LIST": list(settings.inventory) or None,
        "DEFAULT_REMOTE_USER": fallback.get("ansible_user"),
        "DEFAULT_REMOTE_PORT": fallback.get("ansible_port"),
        "DEFAULT_PRIVATE_KEY_FILE": fallback.get("ansible_ssh_private_key_file"),
        "DEFAULT_TIMEOUT": fallback.get("ssh_connect_timeout"),
        "DEFAULT_FORKS": settings.forks,
        "DEFAULT_BECOME": fallback.get("ansible_become"),
        "DEFAULT_BECOME_USER": fallback.get("ansible_become_user"),
        "DEFAULT_BECOME_METHOD": fallback.get("ansible_become_method"),
        "DEFAULT_VAULT_PASSWORD_FILE": settings.vault_password_file,
        "DEFAULT_VAULT_IDENTITY_LIST": list(settings.vault_identity_list) or None,
        "DEFAULT_VAULT_IDENTITY": settings.vault_identity,
        "INVENTORY_IGNORE_PATTERNS": list(settings.ignored.patterns) or None,
        "HOST_KEY_CHECKING": False if any("host_key_checking" in w for w in settings.warnings) else None,
    }
    if settings.ignored.extensions != ansible_cfg.IGNORED_EXTENSIONS:
        found["INVENTORY_IGNORE_EXTS"] = list(settings.ignored.extensions)
    return {name: value for name, value in found.items() if value is not None}


@pytest.mark.parametrize("name", list(CASES))
def test_llamafleet_reads_ansible_cfg_as_ansible_config_dump_shows_it(cases, monkeypatch, name):
    cwd, home, env, result = cases[name]
    monkeypatch.setenv("HOME", str(home))  # where ~ and ~/.ansible.cfg are
    assert llamafleet_reads(ansible_cfg.read(env, cwd)) == ansible_reads(result)


def test_the_cases_hold_what_they_are_meant_to_show(cases):
    full = ansible_reads(cases["full"][3])
    project = cases["full"][0]
    assert full["DEFAULT_HOST_LIST"] == [str(project / "conf" / "hosts"), str(project / "other")]  # from conf/
    assert full["DEFAULT_PRIVATE_KEY_FILE"] == str(project / "conf" / "keys" / "id_ed25519")
    assert full["DEFAULT_REMOTE_USER"] == "deploy" and full["HOST_KEY_CHECKING"] is False
    environment_first = ansible_reads(cases["environment_beats_file"][3])
    assert environment_first["DEFAULT_FORKS"] == 3 and environment_first["DEFAULT_REMOTE_USER"] == "admin"
    assert environment_first["DEFAULT_PRIVATE_KEY_FILE"] == str(cases["environment_beats_file"][0] / "key")
    assert ansible_reads(cases["home"][3])["DEFAULT_REMOTE_USER"] == "in_home"
    assert ansible_reads(cases["world_writable"][3])["DEFAULT_REMOTE_USER"] == "in_home"
    assert ansible_reads(cases["missing"][3])["DEFAULT_REMOTE_USER"] == "in_cwd"


def test_a_world_writable_current_folder_s_ansible_cfg_is_ignored_with_a_warning(cases, monkeypatch):
    cwd, home, env, result = cases["world_writable"]
    monkeypatch.setenv("HOME", str(home))
    assert "world writable directory" in result.stderr
    settings = ansible_cfg.read(env, cwd)
    assert settings.warnings == (
        f"{cwd / 'ansible.cfg'}: ignored: the current folder is world-writable (as Ansible ignores it)",
    )


def test_the_keys_llamafleet_does_not_honour_are_one_warning_each(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "ansible.cfg"
    path.write_text(
        "[defaults]\nhost_key_checking = no\nask_pass = true\nhash_behaviour = merge\nforks = 3\n"
        "[ssh_connection]\nssh_args = -o ControlMaster=auto\npipelining = True\n"
        "[privilege_escalation]\nbecome_ask_pass = False\nbecome_flags = -H -S\n"
    )
    warnings = ansible_cfg.read({"ANSIBLE_CONFIG": str(path)}, tmp_path).warnings
    assert [line.split(": ignored: ")[0] for line in warnings] == [
        f"{path}: [defaults] host_key_checking",
        f"{path}: [defaults] ask_pass",
        f"{path}: [privilege_escalation] become_flags",
        f"{path}: [defaults] hash_behaviour",
        f"{path}: [ssh_connection] ssh_args",
    ]
    assert "llamafleet always checks host keys" in warnings[0]
    (tmp_path / "elsewhere").mkdir()
    environment_warning = ansible_cfg.read({"ANSIBLE_HOST_KEY_CHECKING": "False"}, tmp_path / "elsewhere").warnings
    assert environment_warning == (
        "ANSIBLE_HOST_KEY_CHECKING: ignored: llamafleet always checks host keys (--accept-new-host-keys records "
        "those of new hosts)",
    )


# --------------------------------------------------------------------------- applied to a run


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """An Ansible project: ansible.cfg naming its inventory, a user, a key, a time limit, become, and
    host_key_checking = False; a vaulted inventory beside it opened with the configured password file."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "inv").mkdir()
    (folder / "inv" / "hosts.yml").write_text(
        "all:\n  children:\n    head:\n      hosts:\n        h1: {ansible_host: 127.0.0.1}\n"
        "    workers:\n      hosts:\n        w1: {ansible_host: 127.0.0.2, ansible_user: other}\n"
        "        w2: {ansible_host: 127.0.0.3, ansible_ssh_user: legacy}\n"
        "        w3: {ansible_host: 127.0.0.4, ansible_become: false}\n"
    )
    (folder / "other.yml").write_text(HOSTS)
    (folder / "vault.txt").write_text(PASSWORD.read_text())
    (folder / "vaulted.yml").write_text(HOSTS)
    command = [str(ANSIBLE_VAULT), "encrypt", "--vault-password-file", str(PASSWORD), str(folder / "vaulted.yml")]
    subprocess.run(command, env=ansible_environment(folder / "home"), capture_output=True, check=True)
    (folder / "ansible.cfg").write_text(
        "[defaults]\ninventory = inv/hosts.yml\nremote_user = deploy\nprivate_key_file = keys/id\ntimeout = 7\n"
        "host_key_checking = False\nvault_password_file = vault.txt\n[privilege_escalation]\nbecome = true\n"
    )
    return folder


def project_env(project: Path, **extra: str) -> dict[str, str]:
    kept = {name: value for name, value in environment().items() if not name.startswith("ANSIBLE_")}
    return {**kept, "ANSIBLE_CONFIG": str(project / "ansible.cfg"), **extra}


@pytest.fixture(scope="module")
def runs(project) -> dict[str, subprocess.CompletedProcess]:
    """`invoke inventory --json` in the project, in each way of naming the inventory, started together."""
    listing = ["inventory", "--json"]
    other = str(project / "other.yml")
    started = {
        "configured": (listing, {}),
        "flag": ([*listing, "-i", other], {}),
        "llamafleet_inventory": (listing, {"LLAMAFLEET_INVENTORY": other}),
        "ansible_inventory": (listing, {"ANSIBLE_INVENTORY": other}),
        "extra_vars": ([*listing, "-e", "ssh_connect_timeout=9"], {}),
        "vaulted": ([*listing, "-i", str(project / "vaulted.yml")], {}),
    }
    return together({name: (args, project_env(project, **extra)) for name, (args, extra) in started.items()})


def together(runs: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, subprocess.CompletedProcess]:
    """`invoke ARGS` for each run (name -> (args, environment)), started together; name -> result."""
    started = {
        name: subprocess.Popen(
            invoke_argv(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (args, env) in runs.items()
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def host_vars(result: subprocess.CompletedProcess) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {name: host["vars"] for name, host in json.loads(result.stdout)["hosts"].items()}


def test_ansible_cfg_names_the_inventory_and_gives_what_the_inventory_does_not_set(project, runs):
    found = host_vars(runs["configured"])
    assert set(found) == {"h1", "w1", "w2", "w3"}
    assert [found[name].get("ansible_user") for name in ("h1", "w1", "w2")] == ["deploy", "other", None]
    assert found["w2"]["ansible_ssh_user"] == "legacy"  # an older spelling set in the inventory wins too
    assert found["h1"]["ansible_ssh_private_key_file"] == str(project / "keys" / "id")  # beside ansible.cfg
    assert found["h1"]["ssh_connect_timeout"] == 7
    assert (found["h1"]["ansible_become"], found["w3"]["ansible_become"]) == (True, False)


def test_a_key_llamafleet_does_not_honour_is_one_warning_line(project, runs):
    assert runs["configured"].stderr == (
        f"warning: {project / 'ansible.cfg'}: [defaults] host_key_checking: ignored: llamafleet always checks host "
        "keys (--accept-new-host-keys records those of new hosts)\n"
    )


@pytest.mark.parametrize("name", ["flag", "llamafleet_inventory", "ansible_inventory"])
def test_the_flag_and_the_environment_beat_ansible_cfg_s_inventory(runs, name):
    assert list(host_vars(runs[name])) == ["h1"]


def test_extra_vars_beat_ansible_cfg(runs):
    assert {values["ssh_connect_timeout"] for values in host_vars(runs["extra_vars"]).values()} == {9}


def test_the_configured_vault_password_file_opens_a_vaulted_inventory(runs):
    assert host_vars(runs["vaulted"])["h1"]["ansible_host"] == "(vault)"


def test_forks_default_to_ansible_cfg_s_and_the_flag_beats_it(project, monkeypatch):
    for config, variables, flag, expected in [
        ("[defaults]\nforks = 3\n", {}, None, 3),
        ("[defaults]\nforks = 3\n", {}, "5", 5),
        ("[defaults]\nforks = 3\n", {"ANSIBLE_FORKS": "4"}, None, 4),
        ("[defaults]\n", {}, None, 10),
    ]:
        monkeypatch.delenv("ANSIBLE_FORKS", raising=False)
        (project / "forks.cfg").write_text(config)
        monkeypatch.setenv("ANSIBLE_CONFIG", str(project / "forks.cfg"))
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        loading.configuration.cache_clear()
        try:
            assert cli.options(False, False, flag, None, False).forks == expected
        finally:
            loading.configuration.cache_clear()


MISTAKES = {
    "forks": ("[defaults]\nforks = many\n", "{cfg}: [defaults] forks: must be a whole number, not 'many'"),
    "port": ("[defaults]\nremote_port = 70000\n", "{cfg}: [defaults] remote_port: must be from 1 to 65535, not 70000"),
    "user": ("[defaults]\nremote_user = -oProxyCommand=x\n", "{cfg}: [defaults] remote_user: "),
    "timeout": ("[defaults]\ntimeout = 0\n", "{cfg}: [defaults] timeout: must be at least 1, not 0"),
    "transport": ("[defaults]\ntransport = local\n", "{cfg}: [defaults] transport: llamafleet reaches hosts over SSH"),
    "su": (
        "[privilege_escalation]\nbecome = true\nbecome_method = su\n",
        "{cfg}: [privilege_escalation] become_method: llamafleet becomes another user with sudo only, not 'su'",
    ),
    "not_ini": ("remote_user = deploy\n", "{cfg}: cannot read as an INI file: File contains no section headers"),
    "duplicate": ("[defaults]\nforks = 1\nforks = 2\n", "{cfg}: cannot read as an INI file: While reading from"),
    "missing_inventory": (
        "[defaults]\ninventory = nowhere.yml\n",
        "{folder}/nowhere.yml: no such inventory file or folder (named by {cfg} [defaults] inventory)",
    ),
}


def test_every_mistake_in_ansible_cfg_is_one_line_and_exit_2_before_any_connection(tmp_path):
    runs, expected = {}, {}
    base = {name: value for name, value in environment().items() if not name.startswith("ANSIBLE_")}
    for name, (text, message) in MISTAKES.items():
        cfg = tmp_path / name / "ansible.cfg"
        cfg.parent.mkdir()
        cfg.write_text(text)
        (cfg.parent / "hosts.yml").write_text(HOSTS)
        inventory = [] if name == "missing_inventory" else ["-i", str(cfg.parent / "hosts.yml")]
        runs[name] = (["provision", *inventory], {**base, "ANSIBLE_CONFIG": str(cfg)})
        expected[name] = message.format(cfg=cfg, folder=cfg.parent)
    for name, result in together(runs).items():
        error_line(result, f"error: {expected[name]}")


def test_an_ansible_config_variable_naming_a_file_of_another_kind_is_refused(tmp_path):
    (tmp_path / "ansible.yml").write_text("defaults: {}\n")
    with pytest.raises(ansible_cfg.ConfigError, match="must end in .cfg or .ini"):
        ansible_cfg.read({"ANSIBLE_CONFIG": str(tmp_path / "ansible.yml")}, tmp_path)


def test_the_configured_ignore_patterns_apply_to_an_inventory_folder(tmp_path, monkeypatch):
    from llamafleet import inventory

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yml").write_text(HOSTS)
    (tmp_path / "inv" / "old-hosts.yml").write_text("[broken\n")
    (tmp_path / "inv" / "notes.md").write_text("[broken\n")
    (tmp_path / "ansible.cfg").write_text("[defaults]\ninventory_ignore_patterns = ^old-\n")
    settings = ansible_cfg.read({"ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}, tmp_path)
    assert list(inventory.load(tmp_path / "inv", ignored=settings.ignored).hosts) == ["h1"]
    with pytest.raises(Exception, match="old-hosts.yml"):
        inventory.load(tmp_path / "inv")
    (tmp_path / "ansible.cfg").write_text("[defaults]\ninventory_ignore_extensions = .bak\n")
    settings = ansible_cfg.read({"ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}, tmp_path)
    with pytest.raises(Exception, match="notes.md"):  # the configured list replaces Ansible's own
        inventory.load(tmp_path / "inv", ignored=settings.ignored)
