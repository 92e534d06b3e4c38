"""connvars.read(): Ansible connection variables honoured, warned about or refused, per host."""

from __future__ import annotations

import json

import pytest

from llamafleet import connvars, inventory
from llamafleet.connvars import Hop
from llamafleet.errors import InventoryError
from llamafleet.ssh import HostConnection


def host_vars(tmp_path, **given) -> tuple[dict, str]:
    """Host h1's variables as a one-host inventory resolves them, with `given` set over them; the file's name.

    `given` is set after loading: inventory.load() reads the connection variables itself, and refuses the
    ones these tests are about before they could be read here.
    """
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    head:\n      hosts:\n        h1:\n")
    resolved = inventory.load(path).hosts["h1"].vars
    if "ansible_ssh_host" not in given:
        given = {"ansible_host": "10.0.0.1", **given}
    return {**resolved, **given}, str(path)


def loaded(tmp_path, **given) -> inventory.Host:
    """Host h1 of a one-host inventory setting `given` (which must load)."""
    lines = ["all:", "  children:", "    head:", "      hosts:", "        h1:"]
    lines += [f"          {name}: {json.dumps(value)}" for name, value in given.items()]
    path = tmp_path / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    return inventory.load(path).hosts["h1"]


def review(tmp_path, **given) -> list[str]:
    return connvars.read("h1", *host_vars(tmp_path, **given))[1]


def refusal(tmp_path, **given) -> str:
    values, file = host_vars(tmp_path, **given)
    with pytest.raises(InventoryError) as failure:
        connvars.read("h1", values, file)
    assert str(failure.value).startswith(f"{file}: host h1: "), "names the file and the host"
    return str(failure.value)


def settings(tmp_path, **given) -> connvars.Settings:
    return connvars.read("h1", *host_vars(tmp_path, **given))[0]


def test_the_variables_llamafleet_reads_give_no_warning(tmp_path):
    assert (
        review(
            tmp_path,
            ansible_port=2222,
            ansible_user="deploy",
            ansible_password="pw",
            ansible_ssh_private_key_file="keys/id",
            ansible_become=True,
            ansible_become_user="root",
            ansible_become_password="pw2",
            ansible_become_method="sudo",
            ansible_connection="ssh",
        )
        == []
    )


def test_older_spellings_are_honoured(tmp_path):
    found = settings(
        tmp_path,
        ansible_ssh_host="10.0.0.9",
        ansible_ssh_port=2200,
        ansible_ssh_user="ops",
        ansible_ssh_pass="login-pw",
        ansible_sudo_pass="sudo-pw",
        ansible_private_key_file="id_lab",
        ansible_become=True,
    )
    assert (found.address, found.port, found.user, found.key_file) == ("10.0.0.9", 2200, "ops", "id_lab")
    assert (found.password, found.become_password) == ("login-pw", "sudo-pw")
    assert "login-pw" not in repr(found) and "sudo-pw" not in repr(found)
    assert review(tmp_path, ansible_ssh_pass="a", ansible_become_pass="b") == []


def test_the_connection_uses_the_older_spellings(tmp_path):
    given = {"ansible_ssh_host": "10.0.0.7", "ansible_ssh_user": "ops", "ansible_become_pass": "pw"}
    host = loaded(tmp_path, ansible_become=True, **given)
    assert host.connection.address == "10.0.0.7", "read when the inventory loads"
    conn = HostConnection(host)
    assert (conn.settings.address, conn.user, conn.become) == ("10.0.0.7", "ops", True)
    assert conn._wrap("true", 5).password == b"pw\n"


@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ({"ansible_host": "10.0.0.1", "ansible_ssh_host": "10.0.0.2"}, "ansible_ssh_host: differs from ansible_host"),
        ({"ansible_port": 22, "ansible_ssh_port": 2222}, "ansible_ssh_port: differs from ansible_port"),
        ({"ansible_password": "one-secret", "ansible_ssh_pass": "two-secret"}, "ansible_ssh_pass: differs from"),
        ({"ansible_become_pass": "one-secret", "ansible_sudo_pass": "two-secret"}, "ansible_sudo_pass: differs"),
    ],
)
def test_two_spellings_that_disagree_are_refused_without_showing_values(tmp_path, given, refused):
    message = refusal(tmp_path, **given)
    assert refused in message
    assert "secret" not in message


def test_two_spellings_that_agree_are_fine(tmp_path):
    given = {"ansible_host": "10.0.0.1", "ansible_ssh_host": "10.0.0.1", "ansible_user": "a", "ansible_ssh_user": "a"}
    assert review(tmp_path, **given) == []


def test_an_older_spelling_gets_the_checks_of_the_name_it_stands_for(tmp_path):
    assert "ansible_ssh_port: must be a port number" in refusal(tmp_path, ansible_ssh_port=70000)


@pytest.mark.parametrize("connection", ["ssh", "smart", "paramiko", "ansible.builtin.ssh", "paramiko_ssh"])
def test_ssh_connections_are_accepted(tmp_path, connection):
    assert review(tmp_path, ansible_connection=connection) == []


@pytest.mark.parametrize("connection", ["local", "docker", "community.docker.docker", "winrm", "network_cli"])
def test_other_connections_are_refused(tmp_path, connection):
    message = refusal(tmp_path, ansible_connection=connection)
    assert f"ansible_connection: llamafleet reaches hosts over SSH only, not '{connection}'" in message


@pytest.mark.parametrize("method", ["su", "doas", "pbrun", "runas"])
def test_become_methods_other_than_sudo_are_refused(tmp_path, method):
    message = refusal(tmp_path, ansible_become=True, ansible_become_method=method)
    assert f"ansible_become_method: llamafleet becomes another user with sudo only, not '{method}'" in message


def test_a_become_method_without_become_is_only_a_warning(tmp_path):
    [warning] = review(tmp_path, ansible_become_method="su")
    assert "host h1: ansible_become_method: ignored: ansible_become is off" in warning


@pytest.mark.parametrize("name", ["ansible_sudo", "ansible_su"])
def test_the_old_become_switches_are_refused_when_on(tmp_path, name):
    assert f"{name}: not supported: " in refusal(tmp_path, **{name: True})
    [warning] = review(tmp_path, **{name: False})
    assert f"{name}: ignored" in warning


@pytest.mark.parametrize(
    ("args", "hops"),
    [
        ("-o ProxyJump=bastion", (Hop("bastion"),)),
        ("-o ProxyJump=ops@bastion:2222", (Hop("bastion", 2222, "ops"),)),
        ("-o 'ProxyJump ssh://ops@[fd00::1]:2222'", (Hop("fd00::1", 2222, "ops"),)),
        ("-J a.lab,ops@b.lab:2200", (Hop("a.lab"), Hop("b.lab", 2200, "ops"))),
        ("-Jbastion", (Hop("bastion"),)),
        ("-o ProxyJump=none", ()),
    ],
)
def test_proxyjump_is_honoured(tmp_path, args, hops):
    assert review(tmp_path, ansible_ssh_common_args=args) == []
    assert settings(tmp_path, ansible_ssh_common_args=args).jumps == hops


def test_the_first_proxyjump_wins_as_in_ssh(tmp_path):
    given = {"ansible_ssh_common_args": "-J first", "ansible_ssh_extra_args": "-o ProxyJump=second"}
    assert settings(tmp_path, **given).jumps == (Hop("first"),)
    [warning] = review(tmp_path, **given)
    assert "ansible_ssh_extra_args: ignored -o ProxyJump=second (an earlier value wins" in warning


def test_a_bad_jump_host_is_refused(tmp_path):
    message = refusal(tmp_path, ansible_ssh_common_args="-o ProxyJump=bastion:ssh")
    assert "ansible_ssh_common_args: ProxyJump: 'bastion:ssh' is not a jump host" in message


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        ("-o ProxyCommand='ssh -W %h:%p bastion'", "use -o ProxyJump"),
        ("-p 2222", "set ansible_port instead"),
        ("-o Port=2222", "set ansible_port instead"),
        ("-l admin", "set ansible_user instead"),
        ("-o HostName=10.9.9.9", "set ansible_host instead"),
        ("-F ./ssh_config", "reads no ssh_config file"),
        ("-o 'ProxyCommand", "cannot read as ssh arguments"),
    ],
)
def test_ssh_arguments_that_would_reach_another_host_are_refused(tmp_path, args, hint):
    message = refusal(tmp_path, ansible_ssh_extra_args=args)
    assert "ansible_ssh_extra_args: " in message and hint in message


def test_host_key_checking_cannot_be_turned_off(tmp_path):
    args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    warnings = review(tmp_path, ansible_ssh_common_args=args, ansible_host_key_checking=False)
    assert len(warnings) == 3
    assert "ansible_ssh_common_args: UserKnownHostsFile=/dev/null ignored: llamafleet always checks" in warnings[0]
    assert "ansible_ssh_common_args: StrictHostKeyChecking=no ignored: llamafleet always checks" in warnings[1]
    assert "ansible_host_key_checking: ignored: llamafleet always checks host keys" in warnings[2]
    assert settings(tmp_path, ansible_ssh_common_args=args).known_hosts == "~/.ssh/known_hosts"


def test_strict_checking_yes_is_what_llamafleet_does_anyway(tmp_path):
    args = "-o StrictHostKeyChecking=yes"
    assert review(tmp_path, ansible_ssh_common_args=args, ansible_host_key_checking=True) == []


def test_user_known_hosts_file_is_honoured(tmp_path):
    args = "-o UserKnownHostsFile=keys/lab_known_hosts"
    assert review(tmp_path, ansible_ssh_common_args=args) == []
    host = loaded(tmp_path, ansible_ssh_common_args=args)
    assert HostConnection(host, base_dir=tmp_path).known_hosts == tmp_path / "keys/lab_known_hosts"


def test_known_hosts_file_wins_over_user_known_hosts_file(tmp_path):
    given = {"known_hosts_file": "mine", "ansible_ssh_common_args": "-o UserKnownHostsFile=theirs"}
    assert settings(tmp_path, **given).known_hosts == "mine"
    [warning] = review(tmp_path, **given)
    assert "UserKnownHostsFile ignored: known_hosts_file (mine) is set" in warning


def test_other_ssh_arguments_get_one_warning_per_variable(tmp_path):
    args = "-C -o ControlMaster=auto -o ControlPersist=60s -i ~/.ssh/other"
    [warning] = review(tmp_path, ansible_ssh_args=args, ansible_ssh_common_args="-J bastion")
    assert warning.startswith(f"{tmp_path / 'hosts.yml'}: host h1: ansible_ssh_args: ignored -C, ")
    assert "-o ControlMaster=auto, -o ControlPersist=60s, -i ~/.ssh/other (llamafleet connects with paramiko" in warning


@pytest.mark.parametrize(
    ("name", "value", "instead"),
    [
        ("ansible_python_interpreter", "/usr/bin/python3", "llamafleet runs no Python on the hosts"),
        ("ansible_perl_interpreter", "/usr/bin/perl", "llamafleet runs no interpreter on the hosts"),
        ("ansible_ssh_pipelining", True, "nothing to pipeline"),
        ("ansible_become_flags", "-i", "llamafleet runs sudo from the PATH"),
        ("ansible_ssh_timeout", 30, "set ssh_connect_timeout instead"),
        ("ansible_scp_extra_args", "-l 1000", "no scp or sftp program"),
        ("ansible_winrm_transport", "ntlm", "llamafleet does not use this Ansible variable; ignored"),
    ],
)
def test_anything_else_gets_one_warning_saying_what_llamafleet_does(tmp_path, name, value, instead):
    [warning] = review(tmp_path, **{name: value})  # inventory.load() may refuse a name close to a known one
    assert warning.startswith(f"{tmp_path / 'hosts.yml'}: host h1: {name}: ignored")
    assert instead in warning


def test_variables_that_are_not_ansibles_are_not_reviewed(tmp_path):
    assert review(tmp_path, rpc_port=50052, ssh_command_timeout=60) == []


def test_a_known_hosts_path_that_is_not_a_file_is_refused(tmp_path):
    (tmp_path / "pinned").mkdir()
    message = refusal(tmp_path, known_hosts_file="pinned")
    assert message.endswith(f"known_hosts_file: {tmp_path / 'pinned'} is not a file")


def test_a_known_hosts_path_is_checked_beside_the_inventory_not_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "inv").mkdir()
    (tmp_path / "pinned").mkdir()  # not the file meant: the connection reads inv/pinned
    path = tmp_path / "inv" / "hosts.yml"
    path.write_text("all:\n  children:\n    head:\n      hosts:\n        h1: {known_hosts_file: pinned}\n")
    monkeypatch.chdir(tmp_path)
    host = inventory.load(path).hosts["h1"]
    assert HostConnection(host, base_dir=path.parent).known_hosts == tmp_path / "inv" / "pinned"
