"""INI inventories: sections, host lines, typed values, the format told by content, and one error line for each
mistake. test_ini_against_ansible.py checks the same files against ansible-inventory itself."""

from __future__ import annotations

import json
import os
import string
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from command_line import error_line, invoke_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamafleet import ini_inventory, inventory
from llamafleet.errors import InventoryError, LlamafleetError

HEAD = "[head]\nh0 ansible_host=127.0.0.1\n"  # lines 1-2 of most inventories below

SETTINGS = settings(
    max_examples=int(os.environ.get("LLAMAFLEET_HYPOTHESIS_EXAMPLES", "150")),
    deadline=timedelta(seconds=20),  # generous: a busy machine is slow, a hang is endless
    database=None,  # no .hypothesis folder in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def load(tmp_path: Path, text: str, name: str = "hosts.ini") -> inventory.Inventory:
    path = tmp_path / name
    path.write_text(text)
    return inventory.load(path)


def load_error(tmp_path: Path, text: str | bytes, name: str = "hosts.ini") -> str:
    """The one-line message of the InventoryError loading `text` raises, without the file name."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert message.startswith(str(path))
    return message[len(str(path)) :]


# --------------------------------------------------------------------------- typed values
# What ansible-inventory (ansible-core 2.19) gives for each spelling; test_ini_against_ansible.py asks it again.

HOST_LINE_VALUES = [
    ("a=1", 1),
    ("a=-3", -3),
    ("a=+3", 3),
    ("a=1.5", 1.5),
    ("a=0x1f", 31),
    ("a=1e999", float("inf")),
    ("a=True", True),
    ("a=true", "true"),
    ("a=yes", "yes"),
    ("a=None", None),
    ('a="1"', 1),  # the shell-like split takes the quotes away before the value is read
    ("a=\"'03'\"", "03"),
    ('a="x y"', "x y"),
    ("a='[1,2]'", [1, 2]),
    ("a=(1,2)", [1, 2]),
    ("a={'k':[1,2]}", "{k:[1,2]}"),
    ("a='{\"k\": [1, 2]}'", {"k": [1, 2]}),
    ("a=1j", "1j"),
    ("a=...", "..."),
    ("a=b'xy'", "bxy"),
    ("a=\"b'xy'\"", "xy"),
    ('a="{{ x }}"', "{{ x }}"),
    ("a=b=c", "b=c"),
    ('a=" sp "', " sp "),
    ("a=", ""),
    ("a=x#y", "x"),  # a comment starts at # even inside a word, as in shlex
]

VARS_LINE_VALUES = [
    ("a=23", 23),
    ("a = True", True),
    ("a=yes", "yes"),
    ('a="quoted"', "quoted"),
    ("a=[1, 2]", [1, 2]),
    ("a=x # note", "x # note"),  # the rest of the line is the value
    ("a=1 # note", 1),  # ... but a Python literal may carry a comment
    ("a=", ""),
    ("a='it''s'", "its"),
    ("a=x y  z", "x y  z"),
    ("a={'k': 1}", {"k": 1}),
    ("a=b=c", "b=c"),
]


@pytest.mark.parametrize(("written", "value"), HOST_LINE_VALUES, ids=[w for w, _ in HOST_LINE_VALUES])
def test_a_host_line_value_is_split_like_a_shell_word_then_read_as_a_python_literal(tmp_path, written, value):
    inv = load(tmp_path, HEAD + f"[x]\nh1 ansible_host=127.0.0.2 {written}\n")
    assert_same(inv.hosts["h1"].vars["a"], value)


@pytest.mark.parametrize(("written", "value"), VARS_LINE_VALUES, ids=[w for w, _ in VARS_LINE_VALUES])
def test_a_vars_section_value_is_the_rest_of_the_line_read_as_a_python_literal(tmp_path, written, value):
    inv = load(tmp_path, HEAD + f"[head:vars]\n{written}\n")
    assert_same(inv.hosts["h0"].vars["a"], value)


def assert_same(found, expected) -> None:
    """Equal, and of the same type all the way down (1 is not True, 2 is not 2.0)."""
    __tracebackhide__ = True
    assert (type(found), found) == (type(expected), expected)
    if isinstance(found, list):
        for item, wanted in zip(found, expected, strict=True):
            assert_same(item, wanted)
    if isinstance(found, dict):
        for key in found:
            assert_same(found[key], expected[key])


TYPED_VARIABLES = [
    ("ansible_become=yes", "ansible_become", True),
    ("ansible_become=False", "ansible_become", False),
    ("ansible_become=off", "ansible_become", False),
    ("ansible_become=1", "ansible_become", True),
    ("metrics=true", "metrics", True),
    ("rpc_cache_seed=No", "rpc_cache_seed", False),
    ('ansible_port="2222"', "ansible_port", 2222),
    ("ansible_port='2222'", "ansible_port", 2222),
    ("ctx_size='8192'", "ctx_size", 8192),
    ("keep_models=2.0", "keep_models", 2),
    ("ansible_become_password=123456", "ansible_become_password", "123456"),
    ("model_alias=4096", "model_alias", "4096"),
    ("llama_cpp_version=1.5", "llama_cpp_version", "1.5"),
    ("unknown_to_llamafleet=yes", "unknown_to_llamafleet", "yes"),
]


@pytest.mark.parametrize(("written", "name", "value"), TYPED_VARIABLES, ids=[w for w, _, _ in TYPED_VARIABLES])
def test_llamafleet_variables_get_the_type_ansible_gives_them_when_it_reads_them(tmp_path, written, name, value):
    for text in (HEAD.replace("127.0.0.1", f"127.0.0.1 {written}"), HEAD + f"[head:vars]\n{written}\n"):
        assert_same(load(tmp_path, text).hosts["h0"].vars[name], value)


def test_a_value_llamafleet_cannot_take_as_its_type_is_refused_naming_line_and_key(tmp_path):
    message = load_error(tmp_path, HEAD + "[head:vars]\nmetrics=maybe\n")
    assert message == ":4: group head: metrics: must be true or false, not a string"


# --------------------------------------------------------------------------- groups and hosts


def test_hosts_groups_children_and_vars_resolve_as_in_a_yaml_inventory(tmp_path):
    inv = load(
        tmp_path,
        "[workers:children]\ngpu\n"  # a child named before its own section
        "[gpu]\nw1 ansible_host=127.0.0.2 rpc_port=50053\nw[2:3]\n"
        "[gpu:vars]\nrpc_threads=4\nrpc_port=50060\n"
        "[workers:vars]\nrpc_threads=2\nctx_size=1024\n"
        "[all:vars]\nctx_size=2048\n" + HEAD,
    )
    assert list(inv.hosts) == ["w1", "w2", "w3", "h0"]
    assert {g: set(m) for g, m in inv.groups.items()} == {
        "all": {"w1", "w2", "w3", "h0"},
        "workers": {"w1", "w2", "w3"},
        "gpu": {"w1", "w2", "w3"},
        "head": {"h0"},
    }
    w1, w2 = inv.hosts["w1"].vars, inv.hosts["w2"].vars
    assert (w1["rpc_port"], w1["rpc_threads"], w1["ctx_size"]) == (50053, 4, 1024)  # host > child > parent > all
    assert (w2["rpc_port"], w2["rpc_threads"]) == (50060, 4)
    assert inv.hosts["h0"].vars["ctx_size"] == 2048
    assert inv.hosts["w3"].groups == ["workers", "gpu"]


def test_hosts_outside_groups_are_ungrouped_wherever_they_are_listed(tmp_path):
    text = HEAD + "[ungrouped]\nu1 ansible_host=127.0.0.2\n[all]\nu2 ansible_host=127.0.0.3\nh0\n[x]\nu3\n"
    inv = load(tmp_path, "u3 ansible_host=127.0.0.4\n" + text + "[ungrouped:vars]\nmark=1\n")
    assert set(inv.groups["ungrouped"]) == {"u1", "u2"}  # u3 and h0 are in groups of their own
    assert inv.hosts["u1"].vars["mark"] == 1 and "mark" not in inv.hosts["u3"].vars
    assert inv.hosts["u3"].groups == ["x"]


def test_a_hosts_port_is_the_one_of_its_first_line_and_its_own_variables_come_after(tmp_path):
    inv = load(tmp_path, HEAD + "[a]\nh1:2201 ansible_host=127.0.0.2\nh2:2202 ansible_port=2203\n[b]\nh1:2299\nh3:0\n")
    assert inv.hosts["h1"].connection.port == 2201
    assert inv.hosts["h2"].vars["ansible_port"] == 2203
    assert inv.hosts["h3"].vars.get("ansible_port") is None  # Ansible ignores a port 0


def test_a_host_listed_in_several_sections_keeps_the_value_of_its_last_line(tmp_path):
    text = HEAD + "[a]\nh2 ansible_host=127.0.0.3\n[b]\nh1 ansible_host=127.0.0.2 x=2\n[a]\nh1 x=1 y=1\n"
    inv = load(tmp_path, text)
    assert (inv.hosts["h1"].vars["x"], inv.hosts["h1"].vars["y"]) == (1, 1)
    assert set(inv.groups["a"]) == {"h1", "h2"}


def test_host_ranges_expand_as_in_yaml_with_their_port(tmp_path):
    inv = load(tmp_path, HEAD + "[w]\nn[01:03].localhost:2222\n127.0.0.[5:9:2]\nrack[a:b]-u[1:2]\n")
    assert list(inv.groups["w"]) == [
        *("n01.localhost", "n02.localhost", "n03.localhost"),
        *("127.0.0.5", "127.0.0.7", "127.0.0.9"),
        *("racka-u1", "racka-u2", "rackb-u1", "rackb-u2"),
    ]
    assert inv.hosts["n02.localhost"].connection.port == 2222


def test_ipv6_addresses_take_a_port_only_in_brackets(tmp_path):
    inv = load(tmp_path, "[head]\n[::1]:2222\n[w]\n::2\n")
    assert (inv.hosts["::1"].connection.port, inv.hosts["::2"].connection.port) == (2222, 22)


def test_comments_blank_lines_crlf_and_a_byte_order_mark_are_read_as_nothing(tmp_path):
    text = (
        "\ufeff; one\r\n  # two\r\n\r\n[head]   # three\r\nh0 ansible_host=127.0.0.1 # four\r\n[w:children] # five\r\n"
    )
    inv = load(tmp_path, text + "[w]\n")
    assert list(inv.hosts) == ["h0"] and inv.groups["w"] == []


def test_group_vars_and_host_vars_files_beside_an_ini_inventory_apply(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "group_vars" / "head.yml").write_text("ctx_size: 512\nrpc_threads: 3\n")
    (tmp_path / "host_vars" / "h0.yml").write_text("rpc_threads: 5\n")
    inv = load(tmp_path, HEAD + "[head:vars]\nctx_size=256\nrpc_threads=1\n")
    assert (inv.hosts["h0"].vars["ctx_size"], inv.hosts["h0"].vars["rpc_threads"]) == (512, 5)


def test_the_read_document_is_the_yaml_inventory_shape_with_lines(tmp_path):
    text = "loner x=1\n[g:children]\nc\n[c]\nh1:2222 y=2\n[g:vars]\nz=3\n"
    document = ini_inventory.parse(text, "x")
    assert document == {
        "all": {"hosts": {"loner": {"x": 1}}},
        "g": {"children": {"c": None}, "vars": {"z": 3}},
        "c": {"hosts": {"h1": {"ansible_port": 2222, "y": 2}}},
    }
    assert document.line_of("c") == 3
    assert document["c"]["hosts"].line_of("h1") == 5
    assert document["c"]["hosts"]["h1"].line_of("y") == 5
    assert document["g"]["vars"].line_of("z") == 7
    assert document["g"]["children"].line_of("c") == 3


# --------------------------------------------------------------------------- which format


@pytest.mark.parametrize("name", ["hosts", "hosts.yml", "hosts.yaml", "hosts.json", "hosts.ini", "inventory.cfg"])
def test_an_ini_inventory_is_read_as_ini_whatever_its_name(tmp_path, name):
    inv = load(tmp_path, HEAD + "[workers]\nw1 ansible_host=127.0.0.2\n", name)
    assert set(inv.groups["workers"]) == {"w1"}


YAML_INVENTORY = "all:\n  children:\n    head:\n      hosts:\n        h0: {ansible_host: 127.0.0.1}\n"


@pytest.mark.parametrize("name", ["hosts", "hosts.yml", "hosts.ini", "inventory.cfg"])
def test_a_yaml_inventory_is_read_as_yaml_whatever_its_name(tmp_path, name):
    assert list(load(tmp_path, YAML_INVENTORY, name).hosts) == ["h0"]


def test_hosts_alone_are_ini_though_yaml_reads_them_as_one_string(tmp_path):
    inv = load(tmp_path, "h1 ansible_host=127.0.0.2\nh0 ansible_host=127.0.0.1\n[head]\nh0\n", "hosts")
    assert set(inv.groups["ungrouped"]) == {"h1"}


def test_a_host_line_yaml_reads_as_a_mapping_is_ini(tmp_path):
    path = tmp_path / "hosts"
    path.write_text('h0 ansible_host=127.0.0.1 note="a: b"\n')  # YAML: {'h0 ansible_host=127.0.0.1 note="a': 'b"'}
    assert ini_inventory.read(path) == {"all": {"hosts": {"h0": {"ansible_host": "127.0.0.1", "note": "a: b"}}}}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "hosts.yml",
            YAML_INVENTORY + "  bad_indent\n",
            ":7: invalid YAML: could not find expected ':'",
        ),  # a YAML mistake stays a YAML error
        ("hosts.yml", "all:\n  children:\n    head: [h0]\n", ":3: group head: a group must be a mapping"),
        ("hosts.yml", "- all\n", ": the top level must be a mapping of groups"),
        ("hosts", "h1\nh2 x='abc\n", ":2: group ungrouped: h2 x='abc: cannot split the host line"),
        ("hosts", '# c\n[web]\nh1 ansible_host="x\n', ':3: group web: h1 ansible_host="x: cannot split'),
        ("hosts.ini", YAML_INVENTORY + "  bad_indent\n", ":1: group ungrouped: all:: a host name cannot end in ':'"),
        ("hosts.ini", "", ": the inventory is empty"),
        ("hosts", "; only a comment\n", ": the inventory is empty"),
    ],
)
def test_when_neither_format_reads_the_file_the_error_is_the_one_that_got_further(tmp_path, name, text, expected):
    assert load_error(tmp_path, text, name).startswith(expected)


# --------------------------------------------------------------------------- mistakes: one line, file and line

# Mistakes in the INI format: Ansible refuses each of these files too (test_ini_against_ansible.py).
FORMAT_MISTAKES = [
    ("[web server]\nh1\n", ":3: [web server]: not a section header ([group], [group:vars] or [group:children])"),
    ("[web:hostz]\nh1\n", ":3: [web:hostz]: unknown section type 'hostz' (hosts, vars or children)"),
    ("[g:children]\ng\n[g]\n", ":4: group g: g: a group cannot be its own child"),
    ("[a:children]\nall\n[a]\n", ":4: group a: all: 'all' holds every group; it cannot be a child"),
    ("[a:children]\nb\n[b:children]\nc\n[c:children]\na\n", ":8: group c: child group 'a' contains 'c': a loop"),
    ("[a:children]\nb\n[b:children]\na\n", ":6: group b: child group 'a' contains 'b': a loop (a > b > a)"),
    ('[a]\nh1 x="abc\n', ':4: group a: h1 x="abc: cannot split the host line: no closing quotation'),
    ("[a]\nh1 x=\\\n", ":4: group a: h1 x=\\: cannot split the host line: no escaped character"),
    ("[a]\nh1 foo\n", ":4: group a: foo: expected key=value after the host name"),
    ("[g]\n[g:vars]\nfoo\n", ":5: group g: foo: expected key=value in a [group:vars] section"),
    ("[g:vars]\nx=1\n", ":3: group g: vars for a group that no [group] or [group:children] section declares"),
    ("[p:children]\nnope\n[p]\n", ":4: group p: child group 'nope' is declared by no [nope] or [nope:children]"),
    ("[p:children]\na b\n", ":4: group p: a b: expected one group name per line in a [group:children] section"),
    ("[a]\nh1:\n", ":4: group a: h1:: a host name cannot end in ':' (it introduces a port: host:2222)"),
    ("---\n", ":3: group head: ---: '---' starts a YAML document, not an INI host line"),
    ("[a]\nw[1:3:0]\n", ":4: group a: w[1:3:0]: range [1:3:0]: the step must be at least 1"),
    ("[a]\nh1 x={[1]:2}\n", ":4: host h1: x: cannot read the value as a Python literal (unhashable type: 'list')"),
    ("[a]\nh1 x=" + "-" * 100_000 + "1\n", ":4: host h1: x: the value is nested too deeply to read"),
]
# llamafleet's own rules, stricter than Ansible's (which takes these, warns, or fails on output), or its cluster rules.
LLAMAFLEET_MISTAKES = [
    ("[a]\nw[3:1]\n", ":4: group a: w[3:1]: range [3:1]: runs backwards (3 is after 1)"),
    ("[a]\nh1 x={(1,2):3}\n", ":4: host h1: x: a mapping key must be a plain value, not tuple"),
    ("[a]\nh1 x=0x" + "f" * 20_000 + "\n", ":4: host h1: x: an integer with more than 4300 digits"),
    ("[a]\nh1 =1\n", ":4: host h1: '': not a valid variable name"),
    ("[a]\nh/1\n", ":4: group a: 'h/1' is not a valid host name"),
    ("[a]\nh_:2222\n", ":4: group a: 'h_:2222' looks like host:port"),  # Ansible takes no port after h_: a name
    ("[a]\nh1 rpc_prot=1\n", ":4: host h1: rpc_prot: unknown variable (did you mean 'rpc_port'?)"),
    ("[a.b]\n", ":3: 'a.b' is not a valid group name"),
    ("[a]\nh1\n[b]\nh2\n[head]\nh1\n", ": group head: must have exactly one host per cluster, found 2 (h0, h1)"),
]
MISTAKES = FORMAT_MISTAKES + LLAMAFLEET_MISTAKES


@pytest.mark.parametrize(("text", "expected"), MISTAKES, ids=[m.split(": ")[-1][:40] for _, m in MISTAKES])
def test_each_mistake_is_one_line_naming_file_and_line(tmp_path, text, expected):
    assert load_error(tmp_path, HEAD + text).startswith(expected)


def test_too_many_host_entries_are_refused_before_they_are_all_expanded(tmp_path):
    text = HEAD + "[a]\n" + "w[0001:9999]\n" * 30
    assert ":24: group a: w[0001:9999]: more than 200000 host entries" in load_error(tmp_path, text)


def test_bytes_that_are_not_utf_8_are_refused_naming_their_line(tmp_path):
    assert load_error(tmp_path, HEAD.encode() + b"[a]\nh\xe9\n").startswith(":4: not valid UTF-8 (byte 0xe9")


# --------------------------------------------------------------------------- whatever the text, one error line

FRAGMENTS = [
    "[head]", "[web]", "[web:vars]", "[web:children]", "[all:vars]", "[ungrouped]", "[x:bogus]", "[a b]", "[]",
    "h0 ansible_host=127.0.0.1", "h1 a=1 b='x y'", 'h1 x="abc', "w[1:3]", "w[3:1]", "w[01:03]:2222", "h1:", "---",
    "a=b", "metrics=maybe", "ctx_size='1'", "web", "all", "head", "# c", "; c", "\\", "h1 x={[1]:2}", "x=((((1))))",
    "[::1]:22", "h1 x=[1, {'a': (2, 3)}]", "=", "h1 ansible_port=0", "a=1 # c",
]  # fmt: skip
ini_like = st.lists(st.sampled_from(FRAGMENTS) | st.text(string.printable, max_size=15), max_size=12).map("\n".join)
any_text = ini_like | st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("utf-8", "replace"))


@SETTINGS
@given(text=any_text, name=st.sampled_from(["hosts.ini", "hosts", "hosts.yml"]))
def test_any_text_loads_or_is_refused_in_one_line(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        inv = inventory.load(path)
    except LlamafleetError as error:
        assert error.exit_code == 2 and "\n" not in str(error) and str(error).isprintable(), repr(str(error))
    else:
        assert len(inv.groups["head"]) == 1


@SETTINGS
@given(text=any_text)
def test_the_ini_reader_gives_the_yaml_shape_or_an_error_naming_a_line_of_the_text(text):
    try:
        document = ini_inventory.parse(text, "x")
    except InventoryError as error:
        assert error.line is not None and 1 <= error.line <= max(1, len(text.splitlines()))
    else:
        assert document is None or all(body is None or isinstance(body, dict) for body in document.values())


# --------------------------------------------------------------------------- the command line

CLI_INVENTORY = HEAD + "[workers]\nw1 ansible_host=127.0.0.2 rpc_port=50053 ansible_become_password=hunter2\n"


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """`invoke inventory` on a good and a bad INI inventory, started together (each costs a second of imports)."""
    folder = tmp_path_factory.mktemp("ini_cli")
    good, bad = folder / "hosts.ini", folder / "hosts"
    good.write_text(CLI_INVENTORY)
    bad.write_text(HEAD + '[workers]\nw1 x="abc\n')
    runs = invoke_all({"good": ["inventory", "-i", str(good), "--json"], "bad": ["inventory", "-i", str(bad)]})
    return {"good": (good, runs["good"]), "bad": (bad, runs["bad"])}


def test_invoke_inventory_json_shows_an_ini_inventory_with_its_secret_hidden(cli_runs):
    _, result = cli_runs["good"]
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["groups"] == {"all": ["h0", "w1"], "head": ["h0"], "workers": ["w1"]}
    assert doc["hosts"]["w1"]["vars"]["rpc_port"] == 50053
    assert doc["hosts"]["w1"]["vars"]["ansible_become_password"] == "(secret)"
    assert "hunter2" not in result.stdout + result.stderr


def test_invoke_inventory_refuses_a_broken_ini_inventory_in_one_line_with_exit_2(cli_runs):
    path, result = cli_runs["bad"]
    error_line(result, f"{path}:4: group workers: ", "no closing quotation")
