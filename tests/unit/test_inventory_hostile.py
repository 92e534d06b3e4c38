"""Hostile and broken inventories: each is one InventoryError line (exit 2) naming file, line, host/group and key."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from command_line import error_line, invoke_all
from inventory_tree import GOOD, HEAD_AND_WORKERS, W2_VAR_LINE, WITH_W2_VAR, write_tree

from llamafleet import inventory, variables, yamlfile
from llamafleet.errors import InventoryError

WITHOUT_W2_HOST = WITH_W2_VAR.replace("ansible_host: 10.0.0.3", "rpc_port: 50052")


def load_error(path: Path, extra: list[str] | None = None, seconds: float = 5) -> InventoryError:
    """The InventoryError loading `path` raises, checked to be one line, exit status 2, and quick (no hang)."""
    started = time.monotonic()
    with pytest.raises(InventoryError) as caught:
        inventory.load(path, inventory.parse_extra_vars(extra))
    assert time.monotonic() - started < seconds
    return one_line(caught.value)


def extra_vars_error(items: list[str]) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        inventory.parse_extra_vars(items)
    return one_line(caught.value)


def one_line(error: InventoryError) -> InventoryError:
    assert error.exit_code == 2
    assert "\n" not in str(error) and str(error).isprintable(), repr(str(error))
    return error


def w2_var_error(tmp_path: Path, line: str) -> InventoryError:
    """The error for one variable line of host w2, which must name hosts.yml, line 11 and host w2."""
    path = write_tree(tmp_path, {"hosts.yml": w2_with(line)})
    error = load_error(path)
    assert (error.file, error.line, error.where) == (str(path), W2_VAR_LINE, "host w2")
    return error


def w2_with(line: str) -> str:
    """hosts.yml with `line` as w2's variable line 11 (w2 has no ansible_host of its own when `line` sets one)."""
    return (WITHOUT_W2_HOST if line.startswith("ansible_host:") else WITH_W2_VAR) % line


def hosts_with(workers: str) -> str:
    """hosts.yml with h1 as head and `workers` as the workers' hosts block (line 8 onwards)."""
    return HEAD_AND_WORKERS + workers


# --------------------------------------------------------------------------- 1. keys and names that are not strings


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ("8080: x", "8080", "a variable name must be a string, not an integer"),
        ("true: x", "true", "a variable name must be a string, not a boolean"),
        ("no: x", "false", "a variable name must be a string, not a boolean"),
        ("~: x", "null", "a variable name must be a string, not null"),
        ("1.5: x", "1.5", "a variable name must be a string, not a number"),
        ("2024-01-01: x", None, "invalid YAML: a mapping key must be a plain value, not date"),
        ("my-label: x", "my-label", "not a valid variable name (letters, digits and _, not starting with a digit)"),
        ('"my label": x', "my label", "not a valid variable name"),
        ('"a\\nb": x', "a\\nb", "not a valid variable name"),
        ('"9lives": x', "9lives", "not a valid variable name"),
    ],
)
def test_variable_keys_must_be_names(tmp_path, line, key, message):
    error = w2_var_error(tmp_path, line) if key else load_error(write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % line}))
    assert error.key == key
    assert message in str(error)


@pytest.mark.parametrize(
    ("files", "file", "line", "where", "key"),
    [
        ({"hosts.yml": GOOD + "  vars:\n    1: x\n"}, "hosts.yml", 13, "group all", "1"),
        ({"group_vars/workers.yml": "rpc_port: 1\nfalse: x\n"}, "group_vars/workers.yml", 2, "group workers", "false"),
        ({"host_vars/w1/a.yml": "~: x\n"}, "host_vars/w1/a.yml", 1, "host w1", "null"),
        ({"group_vars/all.json": '{"ctx_size": 1, "": 2}'}, "group_vars/all.json", 1, "group all", "''"),
    ],
)
def test_a_key_that_is_not_a_string_is_refused_naming_file_line_and_place(tmp_path, files, file, line, where, key):
    error = load_error(write_tree(tmp_path, {"hosts.yml": GOOD, **files}))
    assert (error.file, error.line, error.where, error.key) == (str(tmp_path / file), line, where, key)


@pytest.mark.parametrize(
    ("text", "line", "where", "key", "message"),
    [
        (hosts_with("        1:\n"), 8, "group workers", "1", "a host name must be a string, not an integer"),
        (hosts_with("        null:\n"), 8, "group workers", "null", "a host name must be a string, not null"),
        (GOOD + "    7:\n", 12, "group all", "7", "a group name must be a string, not an integer"),
        (GOOD.replace("all:", "true:"), 1, None, "true", "a group name must be a string, not a boolean"),
    ],
)
def test_host_and_group_names_must_be_strings(tmp_path, text, line, where, key, message):
    path = write_tree(tmp_path, {"hosts.yml": text})
    error = load_error(path)
    assert (error.file, error.line, error.where, error.key) == (str(path), line, where, key)
    assert str(error).endswith(message)


# --------------------------------------------------------------------------- 2. files that are not UTF-8


@pytest.mark.parametrize(
    ("name", "content", "line", "message"),
    [
        ("hosts.yml", GOOD.encode() + b"# caf\xe9\n", 12, f"not valid UTF-8 (byte 0xe9 at offset {len(GOOD) + 5})"),
        ("hosts.yml", b"\xff\xfea\x00l\x00l\x00", 1, "not valid UTF-8 (byte 0xff at offset 0)"),
        ("group_vars/workers.yml", b"rpc_port: 1\n\x89PNG\r\n\x1a\n", 2, "not valid UTF-8 (byte 0x89 at offset 12)"),
        ("host_vars/w1.yml", b"model_alias: \xc3\x28\n", 1, "not valid UTF-8 (byte 0xc3 at offset 13)"),
        ("group_vars/all/x.yml", b"model_alias: a\x00b\n", 1, "invalid YAML: character U+0000 is not allowed"),
    ],
)
def test_a_file_that_is_not_utf8_text_is_refused_naming_line_and_byte(tmp_path, name, content, line, message):
    files = {"hosts.yml": GOOD, name: content}
    error = load_error(write_tree(tmp_path, files))
    assert (error.file, error.line) == (str(tmp_path / name), line)
    assert message in str(error)


def test_a_binary_extra_vars_file_is_refused_naming_line_and_byte(tmp_path):
    binary = tmp_path / "x.bin"
    binary.write_bytes(bytes(range(256)))
    error = extra_vars_error([f"@{binary}"])
    assert str(error) == f"{binary}:2: not valid UTF-8 (byte 0x80 at offset 128)"
    binary.write_bytes(b"ctx_size: 1\n\xfe\n")
    assert str(extra_vars_error([f"@{binary}"])) == f"{binary}:2: not valid UTF-8 (byte 0xfe at offset 12)"


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": b"\xef\xbb\xbf" + GOOD.encode()})
    assert list(inventory.load(path).hosts) == ["h1", "w1", "w2"]


# --------------------------------------------------------------------------- 3. ranges and aliases that explode

LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g"], ["a", "b", "c", "d", "e", "f", "g", "h"])
)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("w[0:99999999]", "expands to more than 10000 hosts (the limit)"),
        ("w[0:99][0:99][0:99]", "expands to more than 10000 hosts (the limit)"),
        ("r[0:9]-n[0:9]-c[0:9]-g[0:9]-x[0:1]", "expands to more than 10000 hosts (the limit)"),
        ("w[1:5:0]", "range [1:5:0]: the step must be at least 1"),
        ("w[5:1]", "range [5:1]: runs backwards (5 is after 1)"),
        ("n[c:a]", "range [c:a]: runs backwards (c is after a)"),
        ("w[0:1234567890123456789]", "range [0:1234567890123456789]: a number has more than 18 digits"),
    ],
)
def test_host_ranges_are_refused_before_expanding(tmp_path, pattern, message):
    path = write_tree(tmp_path, {"hosts.yml": hosts_with(f"        {pattern}:\n")})
    error = load_error(path, seconds=1)
    assert str(error) == f"{path}:8: group workers: {pattern}: {message}"
    assert error.key == pattern
    with pytest.raises(InventoryError, match="^" + pattern.replace("[", r"\[")):
        inventory.expand_range(pattern)


def test_ranges_adding_up_past_the_host_limit_are_refused(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": hosts_with("        a[0000:5999]:\n        b[0000:5999]:\n")})
    assert str(load_error(path)) == (
        f"{path}:9: group workers: b[0000:5999]: more than 10000 hosts in the inventory (the limit)"
    )


def test_ten_thousand_hosts_load_in_reasonable_time(tmp_path):
    # A project's inventory: a cluster, and the project's other hosts (a head takes at most 16 workers).
    spares = "    spares:\n      hosts:\n        s[0001:9998]:\n"
    path = write_tree(tmp_path, {"hosts.yml": hosts_with("        w1:\n") + spares})
    started = time.monotonic()
    inv = inventory.load(path)
    assert len(inv.hosts) == 10_000 and inv.hosts["s0500"].connection.port == 22
    assert time.monotonic() - started < 60, "quadratic in the number of hosts"  # a hang guard, not a speed target


def test_many_groups_over_many_hosts_are_refused(tmp_path):
    groups = "".join(f"    g{i}:\n      children:\n        workers:\n" for i in range(30))
    path = write_tree(tmp_path, {"hosts.yml": hosts_with("        w[0001:9000]:\n") + groups})
    error = load_error(path)
    assert "more than 200000 host memberships in all (the limit)" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (GOOD + "  vars:\n    site_label:\n" + "".join("      " + x for x in LAUGHS.splitlines(True)), 19,
         "YAML aliases expand to more than 100000 nodes (the limit)"),
        (GOOD + "  vars:\n    site_label: &x [a, *x]\n", 13, "YAML alias *x refers to a node that contains it"),
        (GOOD + "  vars:\n    site_label: &x {a: *x}\n", 13, "YAML alias *x refers to a node that contains it"),
    ],
)  # fmt: skip
def test_yaml_aliases_that_explode_or_loop_are_refused(tmp_path, text, line, message):
    path = write_tree(tmp_path, {"hosts.yml": text})
    assert str(load_error(path, seconds=2)) == f"{path}:{line}: {message}"


def test_aliases_and_merge_keys_within_limits_load(tmp_path):
    text = GOOD.replace("        w1: {ansible_host: 10.0.0.2}\n", "        w1: {<<: *gpu, ansible_host: 10.0.0.2}\n")
    text = text.replace("    head:\n", "    head:\n      vars: &gpu {rpc_devices: [CUDA0], rpc_threads: 4}\n")
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": text}))
    assert inv.hosts["w1"].vars["rpc_devices"] == ["CUDA0"] and inv.hosts["w1"].vars["rpc_threads"] == 4


def test_billion_laughs_in_extra_vars_are_refused():
    value = "{" + ", ".join(line.replace(":", ":", 1) for line in LAUGHS.splitlines()) + "}"
    error = extra_vars_error([f"site_label={value}"])
    assert str(error).startswith("-e:1: YAML aliases expand to more than 100000 nodes (the limit)")


# --------------------------------------------------------------------------- 4. nesting too deep


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("[" * 10000, 11),
        ("{" * 10000, 11),
        ("[" * 64 + "]" * 64, 11),
        ("\n" + "".join(" " * (12 + i) + f"k{i}:\n" for i in range(1000)), 11 + 57),
    ],
    ids=["flow-sequences", "flow-mappings", "just-over", "block-mappings"],
)
def test_deep_yaml_is_refused_with_the_limit(tmp_path, value, line):
    path = write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % f"site_label: {value}"})
    error = load_error(path)
    assert str(error).startswith(f"{path}:")
    assert str(error).endswith("YAML nested deeper than 64 levels (the limit)")
    assert error.line >= W2_VAR_LINE


def test_deep_yaml_just_within_the_limit_loads(tmp_path):
    # site_label sits at depth 8 (all, children, workers, hosts, w2, key, value); 56 more levels fit.
    value = "[" * 56 + "]" * 56
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % f"site_label: {value}"}))
    value, depth = inv.hosts["w2"].vars["site_label"], 1
    while value:
        value, depth = value[0], depth + 1
    assert depth == 56


def test_deep_alias_expansion_counts_towards_depth(tmp_path):
    deep = "[" * 40 + "]" * 40
    text = GOOD + f"  vars:\n    site_label: &deep {deep}\n    model_alias: {'[' * 25}*deep{']' * 25}\n"
    error = load_error(write_tree(tmp_path, {"hosts.yml": text}))
    assert str(error).endswith(":14: YAML nested deeper than 64 levels (the limit)")


def test_group_children_nested_too_deep_in_the_file_are_refused(tmp_path):
    nested = "".join("  " * (2 + 2 * i) + f"g{i}:\n" + "  " * (3 + 2 * i) + "children:\n" for i in range(40))
    error = load_error(write_tree(tmp_path, {"hosts.yml": GOOD + "  children:\n" + nested}))
    assert str(error).endswith("YAML nested deeper than 64 levels (the limit)")


def test_a_group_chain_past_the_depth_limit_is_refused_naming_the_group(tmp_path):
    chain = "".join(f"    g{i}:\n      children:\n        g{i + 1}:\n" for i in range(3000))  # no recursion
    path = write_tree(tmp_path, {"hosts.yml": GOOD + chain})
    assert str(load_error(path)) == f"{path}: group g50: nested more than 50 groups deep (the limit)"


def test_group_diamonds_do_not_take_exponential_time(tmp_path):
    both = "      children: {{l{0}a:, l{0}b:}}\n"
    layers = "".join(f"    l{i}a:\n" + both.format(i + 1) + f"    l{i}b:\n" + both.format(i + 1) for i in range(40))
    path = write_tree(tmp_path, {"hosts.yml": GOOD + layers + "    l40a:\n      hosts:\n        w1:\n"})
    started = time.monotonic()
    assert len(inventory.load(path).hosts["w1"].groups) == 82
    assert time.monotonic() - started < 60, "exponential in the number of groups"  # a hang guard, not a speed target


@pytest.mark.parametrize("value", ["[" * 5000, "{a: " * 5000])
def test_an_extra_var_nested_too_deep_is_refused(value):
    assert str(extra_vars_error([f"site_label={value}"])) == "-e:1: YAML nested deeper than 64 levels (the limit)"


# --------------------------------------------------------------------------- 5. host and group names


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("w/1", "'w/1'"),
        ("..", "'..'"),
        ("../../etc/cron.d/x", "'../../etc/cron.d/x'"),
        ("w..1", "'w..1'"),
        ('"w\\n1"', "'w\\n1'"),
        ('"w\\t1"', "'w\\t1'"),
        ('"w\\x1b[31m"', "'w\\x1b[31m'"),
        ("-oProxyCommand=x", "'-oProxyCommand=x'"),
        (".hidden", "'.hidden'"),
        ('"w 1"', "'w 1'"),
        ('" w1"', "' w1'"),
        ("w[1:2]]", "'w1]'"),
        ("wé", "'wé'"),
        ("'w;rm -rf ~'", "'w;rm -rf ~'"),
    ],
)
def test_a_host_name_that_is_not_a_plain_name_is_refused_as_written(tmp_path, name, shown):
    path = write_tree(tmp_path, {"hosts.yml": hosts_with(f"        {name}:\n")})
    error = load_error(path)
    assert str(error).startswith(f"{path}:8: group workers: {shown} is not a valid host name (letters, digits")
    assert "or an IP address)" in str(error)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ('""', "a host name must not be empty"),
        ("w" * 254, "a host name must be at most 253 characters"),
        ("w1:2222", "'w1:2222' looks like host:port; set the port in ansible_port"),
        ("root@w1", "'root@w1' looks like user@host; set the user in ansible_user"),
    ],
)
def test_an_empty_or_long_host_name_or_one_with_port_or_user_is_refused_saying_why(tmp_path, name, message):
    path = write_tree(tmp_path, {"hosts.yml": hosts_with(f"        {name}:\n")})
    assert str(load_error(path)) == f"{path}:8: group workers: {message}"


@pytest.mark.parametrize("name", ["a/b", "..", "a.b", "-g", '"g\\nx"', '"g x"', '""', "g:1", "ünï"])
def test_a_group_name_that_is_not_a_plain_name_is_refused(tmp_path, name):
    path = write_tree(tmp_path, {"hosts.yml": GOOD + f"    {name}:\n      hosts:\n        w1:\n"})
    error = load_error(path)
    assert str(error).startswith(f"{path}:12: group all: ")
    assert "group name" in str(error)


def test_plain_names_addresses_and_dashed_groups_load(tmp_path):
    hosts = "        node-1.lan:\n        w_2:\n        10.0.0.9:\n        fe80::1:\n        W3.Example.COM.:\n"
    text = hosts_with(hosts) + "    gpu-nodes_2:\n      hosts:\n        w_2:\n"
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": text}))
    assert list(inv.hosts) == ["h1", "node-1.lan", "w_2", "10.0.0.9", "fe80::1", "W3.Example.COM."]
    assert inv.groups["gpu-nodes_2"] == ["w_2"]


# --------------------------------------------------------------------------- 6. connection variables


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ansible_host: root@10.0.0.3", "must be a host name or IP address: 'root@10.0.0.3' looks like user@host"),
        ("ansible_host: 10.0.0.3:2222", "must be a host name or IP address: '10.0.0.3:2222' looks like host:port"),
        ("ansible_host: '10.0.0.3 -p 2'", "must be a host name or IP address: '10.0.0.3 -p 2' is not a valid"),
        ('ansible_host: "w\\nx"', "must be a host name or IP address: 'w\\nx' is not a valid host name"),
        ("ansible_host: -oProxyCommand=sh", "'-oProxyCommand=sh' is not a valid host name"),
        ("ansible_host: ''", "must be a host name or IP address: a host name must not be empty"),
        ("ansible_host: 42", "must be a string, not an integer"),
        ("ansible_port: 0", "must be a port number 1-65535, not 0"),
        ("ansible_port: 65536", "must be a port number 1-65535, not 65536"),
        ("ansible_port: -22", "must be a port number 1-65535, not -22"),
        ("ssh_connect_timeout: 0", "must be at least 1, not 0"),
        ("ssh_command_timeout: -5", "must be at least 1, not -5"),
        ("ssh_connect_timeout: 1.5", "must be an integer, not a number"),
        ("ansible_user: -oProxyCommand=sh", "'-oProxyCommand=sh' is not a user name"),
        ("ansible_user: 'root; reboot'", "'root; reboot' is not a user name"),
        ("ansible_user: admin@w2", "'admin@w2' is not a user name"),
        ("ansible_user: " + "a" * 33, "is not a user name: letters, digits, '_', '.' and '-', not starting with"),
        ("ansible_become_user: $(id)", "'$(id)' is not a user name"),
        ("ansible_become_user: '-u'", "'-u' is not a user name"),
    ],
)
def test_a_bad_connection_variable_is_refused_naming_its_key(tmp_path, line, message):
    error = w2_var_error(tmp_path, line)
    assert error.key == line.split(":")[0]
    assert message in str(error)


@pytest.mark.parametrize(
    "line",
    [
        "ansible_host: node-3.example.com",
        "ansible_host: fe80::3",
        "ansible_host: 2001:db8::3",
        "ansible_port: 65535",
        "ansible_user: Admin.User",
        "ansible_become_user: www-data",
        "ssh_connect_timeout: 1",
    ],
)
def test_good_connection_variables_load_as_written(tmp_path, line):
    key, value = line.split(": ", 1)
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": w2_with(line)}))
    assert str(inv.hosts["w2"].vars[key]) == value


# --------------------------------------------------------------------------- 7. packages and the service user


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("base_packages: [-oAPT::Update::Pre-Invoke::=touch]", "'-oAPT::Update::Pre-Invoke::=touch' is not a package"),
        ("base_packages: ['curl; reboot']", "'curl; reboot' is not a package name"),
        ("base_packages: ['a b']", "'a b' is not a package name"),
        ("base_packages: ['$(id)']", "'$(id)' is not a package name"),
        ("base_packages: [curl, 7]", "every package must be a string, not an integer"),
        ("base_packages: [[curl]]", "every package must be a string, not a list"),
        ("base_packages: curl", "must be a list, not a string"),
        ("llamafleet_user: -oops", "'-oops' is not a POSIX user name"),
        ("llamafleet_user: Llama", "'Llama' is not a POSIX user name"),
        ("llamafleet_user: 'llama;id'", "'llama;id' is not a POSIX user name"),
        ("llamafleet_user: l.lama", "'l.lama' is not a POSIX user name"),
        ("llamafleet_user: " + "l" * 33, "at most 32 characters"),
        ("llamafleet_user: 7", "must be a string, not an integer"),
    ],
)
def test_a_bad_package_or_user_name_is_refused_naming_its_key(tmp_path, line, message):
    error = w2_var_error(tmp_path, line)
    assert error.key == line.split(":")[0]
    assert message in str(error)


@pytest.mark.parametrize(
    "line",
    [
        "base_packages: [libstdc++6, python3-PyYAML, NetworkManager, g++, lib32z1, xz-utils, perl_x]",
        "base_packages: []",
        "llamafleet_user: _llama-rpc",
        "llamafleet_user: machine$",
        "llamafleet_user: " + "l" * 32,
    ],
)
def test_good_package_and_user_names_load_as_written(tmp_path, line):
    key, value = line.split(": ", 1)
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % line}))
    assert inv.hosts["w2"].vars[key] == yaml.safe_load(value)


def test_every_default_fits_its_own_type():
    for name, var in variables.catalogue().items():
        assert variables.check_value(name, var.default) is None, name


# --------------------------------------------------------------------------- 8. URL templates


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://mirror.example/{foo}.tar.gz", "placeholder '{foo}' is not allowed (the only placeholder allowed is "),
        ("https://mirror.example/{0}.tar.gz", "placeholder '{0}' is not allowed"),
        ("https://mirror.example/{}.tar.gz", "placeholder '{}' is not allowed"),
        ("https://mirror.example/{version.__class__}", "placeholder '{version.__class__}' is not allowed"),
        ("https://mirror.example/{version[0]}", "placeholder '{version[0]}' is not allowed"),
        ("https://mirror.example/{version!r}", "placeholder '{version!r}' is not allowed"),
        ("https://mirror.example/{version:>99999}", "placeholder '{version:>99999}' is not allowed"),
        ("https://mirror.example/{version", "has an unbalanced '{' or '}' (the only placeholder allowed is {version}"),
        ("https://mirror.example/version}", "has an unbalanced '{' or '}'"),
        ("ftp://mirror.example/{version}", "must be an http:// or https:// URL, not 'ftp://mirror.example/{version}'"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("mirror.example/{version}", "must be an http:// or https:// URL"),
        ("https:///{version}", "must be an http:// or https:// URL"),
        ("https://mirror.example/{version} x", "contains spaces or control characters"),
        ("https://:80/{version}", "has no host name"),
        ("https://[x/{version}", "is not a valid URL (Invalid IPv6 URL)"),
    ],
)
@pytest.mark.parametrize("key", ["llama_cpp_source_url", "llama_cpp_release_url"])
def test_a_bad_url_template_is_refused_naming_its_key(tmp_path, key, url, message):
    error = w2_var_error(tmp_path, f"{key}: '{url}'")
    assert error.key == key
    assert message in str(error)
    if "placeholder" in message or "unbalanced" in message:
        assert str(error).endswith("(the only placeholder allowed is {version})") or "write {{ or }}" in str(error)


@pytest.mark.parametrize(
    "url", ["https://mirror.example/llama/{version}/", "HTTP://10.0.0.1:8080/{version}.tar.gz", "https://m.example/x"]
)
def test_good_url_templates_load_as_written(tmp_path, url):
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % f"llama_cpp_release_url: '{url}'"}))
    assert inv.hosts["w2"].vars["llama_cpp_release_url"] == url


# --------------------------------------------------------------------------- 9. -e


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("=x", "-e: expected KEY=VALUE or @file.yml, got '=x'"),
        (" =x", "-e: expected KEY=VALUE or @file.yml, got ' =x'"),
        ("\x1b[2J", "-e: expected KEY=VALUE or @file.yml, got '\\x1b[2J'"),
        ("@", "-e: expected a file name after @"),
        ("@~no_such_user_here/x.yml", "~no_such_user_here/x.yml: -e: cannot read: Could not determine home directory."),
        (
            "1 2=x",
            "command line: -e: 1 2: not a valid variable name (letters, digits and _, not starting with a digit)",
        ),
        ("a\nb=x", "command line: -e: a\\nb: not a valid variable name"),
        ("site_label=\x00", "-e:1: invalid YAML: character U+0000 is not allowed (offset 0)"),
        ("site_label=a: b: c", "-e:1: invalid YAML: mapping values are not allowed here"),
        (
            "site_label=!!int x",
            "-e:1: invalid YAML: cannot read 'x' as int (invalid literal for int() with base 10: 'x')",
        ),
        ("site_label=!!bool x", "-e:1: invalid YAML: cannot read 'x' as bool"),
        ("site_label=2024-02-30", "-e:1: invalid YAML: cannot read '2024-02-30' as timestamp (day is out of range"),
        ("site_label=" + "9" * 5000, "-e:1: invalid YAML: cannot read '99999"),
        ("site_label=--- 1\n--- 2", "-e:2: invalid YAML: expected a single document in the stream, but found another"),
        ("site_label=!!python/object:os.system x", "-e:1: invalid YAML: could not determine a constructor for the tag"),
    ],
)
def test_a_malformed_extra_var_is_refused_saying_why(item, message):
    assert str(extra_vars_error([item])).startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1: x\n", ":1: -e: 1: a variable name must be a string, not an integer"),
        ("- rpc_port\n", ": -e: must be a mapping of variables"),
        ("just a sentence\n", ": -e: must be a mapping of variables"),
        (b"\x7fELF\x02\x01\x01\x00", ":1: invalid YAML: character U+007F is not allowed (offset 0)"),
        (b"\xca\xfe\xba\xbe", ":1: not valid UTF-8 (byte 0xca at offset 0)"),
        ("a: [" * 100, ":1: YAML nested deeper than 64 levels (the limit)"),
    ],
)
def test_a_bad_extra_vars_file_is_refused_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "extra.yml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert str(extra_vars_error([f"@{path}"])) == f"{path}{message}"


def test_a_missing_folder_or_overlong_extra_vars_file_is_refused_saying_why(tmp_path):
    missing = tmp_path / "missing.yml"
    assert str(extra_vars_error([f"@{missing}"])) == f"{missing}: cannot read: No such file or directory"
    assert str(extra_vars_error([f"@{tmp_path}"])) == f"{tmp_path}: cannot read: Is a directory"
    long_name = tmp_path / ("x" * 300)
    assert str(extra_vars_error([f"@{long_name}"])) == f"{long_name}: cannot read: File name too long"


def test_an_empty_extra_vars_file_sets_nothing(tmp_path):
    (tmp_path / "empty.yml").write_text("# nothing\n")
    assert inventory.parse_extra_vars([f"@{tmp_path / 'empty.yml'}"]) == {}


def test_extra_vars_are_checked_like_inventory_variables(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": GOOD})
    error = load_error(path, ["ansible_host=root@10.0.0.9"])
    assert str(error).startswith("command line: -e: ansible_host: must be a host name or IP address")


# --------------------------------------------------------------------------- files and folders that are not plain files


def test_a_vars_file_over_4_mib_is_refused(tmp_path):
    big = "# " + "x" * 1024 + "\n"
    path = write_tree(tmp_path, {"hosts.yml": GOOD, "group_vars/all.yml": big * (4 * 1024 + 1)})
    assert str(load_error(path)) == f"{tmp_path / 'group_vars/all.yml'}: larger than 4 MiB (the limit)"


def test_a_vars_folder_is_read_past_symlink_loops_and_fifos(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": GOOD, "group_vars/all/10.yml": "ctx_size: 512\n"})
    (tmp_path / "group_vars/all/loop").symlink_to("..")
    (tmp_path / "group_vars/all/again").symlink_to(".")
    os.mkfifo(tmp_path / "group_vars/all/20.yml")
    started = time.monotonic()
    assert inventory.load(path).hosts["w1"].vars["ctx_size"] == 512
    assert time.monotonic() - started < 60, "exponential in the number of groups"  # a hang guard, not a speed target


def test_vars_file_names_too_long_for_the_file_system_are_absent(tmp_path):
    name = "n" * 252
    path = write_tree(tmp_path, {"hosts.yml": hosts_with(f"        {name}:\n"), "host_vars/.keep": ""})
    assert name in inventory.load(path).hosts


def test_unreadable_vars_file_names_its_path(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = write_tree(tmp_path, {"hosts.yml": GOOD, "host_vars/w1.yml": "ctx_size: 1\n"})
    (tmp_path / "host_vars/w1.yml").chmod(0)
    assert str(load_error(path)) == f"{tmp_path / 'host_vars/w1.yml'}: cannot read: Permission denied"


def test_group_priority_may_be_null(tmp_path):
    path = write_tree(
        tmp_path,
        {"hosts.yml": GOOD.replace("    workers:\n", "    workers:\n      vars: {ansible_group_priority: ~}\n")},
    )
    assert inventory.load(path).hosts["w1"].groups == ["workers"]


def test_printable_escapes_what_would_break_a_line():
    assert yamlfile.printable("a\nb\x1b[0m\u2028c") == "a\\nb\\x1b[0m\\u2028c"
    assert yamlfile.printable("café") == "café"


# --------------------------------------------------------------------------- the command line

# A few categories, each through `invoke inventory -i FILE`; -e @FILE with a binary file is one more.
CLI_CASES = {
    "not utf-8": (GOOD.encode() + b"\xff\n", f":12: not valid UTF-8 (byte 0xff at offset {len(GOOD)})"),
    "range": (hosts_with("        w[0:99999999]:\n"), "w[0:99999999]: expands to more than 10000 hosts (the limit)"),
    "deep": (WITH_W2_VAR % ("site_label: " + "[" * 10000), "YAML nested deeper than 64 levels (the limit)"),
    "name": (hosts_with("        ../../etc/x:\n"), "'../../etc/x' is not a valid host name"),
    "url": (WITH_W2_VAR % "llama_cpp_source_url: 'https://x/{0}'", "placeholder '{0}' is not allowed"),
    "-e": (b"\x7fELF\x02\x01", ":1: invalid YAML: character U+007F is not allowed (offset 0)"),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """The command for every case, started together (each costs about a second of imports)."""
    folder = tmp_path_factory.mktemp("hostile_cli")
    paths, runs = {}, {}
    for number, (name, (content, _)) in enumerate(CLI_CASES.items()):
        path = paths[name] = folder / f"case{number}.yml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        args = ["-i", "inventory/example.yml", "-e", f"@{path}"] if name == "-e" else ["-i", str(path)]
        runs[name] = ["inventory", *args]
    results = invoke_all(runs)
    return {name: (paths[name], results[name]) for name in runs}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_exits_2_with_one_error_line(cli_runs, case):
    path, result = cli_runs[case]
    assert error_line(result, CLI_CASES[case][1]).startswith(f"error: {path}")
    assert result.stdout == ""
