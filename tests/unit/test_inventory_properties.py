"""Property tests: whatever the files and -e values hold, a load keeps its promises or raises one error line."""

from __future__ import annotations

import os
import string
import tempfile
from datetime import timedelta
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inventory_tree import GOOD

from llamafleet import inventory, variables
from llamafleet.errors import LlamafleetError

SETTINGS = settings(
    max_examples=int(os.environ.get("LLAMAFLEET_HYPOTHESIS_EXAMPLES", "150")),
    deadline=timedelta(seconds=20),  # generous: a busy machine is slow, a hang is endless
    database=None,  # no .hypothesis folder in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Names that mean something to the loader, mixed with hostile ones, so generated documents reach deep code paths.
KNOWN_VARS = sorted(variables.catalogue()) + sorted(variables.CONNECTION_VARS)
NAMES = ["all", "head", "workers", "ungrouped", "h1", "w1", "w[1:3]", "w[3:1]", "w[1:9:0]", "..", "a/b", "-x", ""]
PLAUSIBLE = [
    None,
    True,
    0,
    1,
    22,
    50052,
    -1,
    70000,
    "",
    "10.0.0.5",
    "fe80::1",
    "root",
    "root@h",
    "h:22",
    "-oX",
    "b11434",
    "https://x/{version}",
    "https://x/{0}",
    "ftp://x",
    ["curl"],
    ["-o"],
    ["10.0.0.0/8"],
    {},
]
WEIRD_TEXT = st.text(alphabet=string.printable + "\x00\x1b\x85\u2028\ufeff{}[]&*!|>%@`", max_size=20)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | WEIRD_TEXT
    | WEIRD_TEXT.map(lambda text: "https://" + text)
    | st.sampled_from(NAMES + KNOWN_VARS + PLAUSIBLE[:-3])
)
keys = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | WEIRD_TEXT
    | st.sampled_from(NAMES + KNOWN_VARS + ["hosts", "vars", "children"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
known_vars = st.dictionaries(st.sampled_from(KNOWN_VARS), st.sampled_from(PLAUSIBLE) | values, max_size=5)
var_blocks = st.none() | known_vars | known_vars | values | st.dictionaries(keys, values, max_size=3)
group_names = st.sampled_from(NAMES) | st.sampled_from(["gpu", "site-a", "zone_1"]) | keys
host_names = st.sampled_from(NAMES) | st.sampled_from(["w2", "10.0.0.7", "w[01:02]", "n[a:b]"]) | keys


def groups(depth: int) -> st.SearchStrategy:
    """Group bodies shaped like Ansible's (hosts, vars, children), with anything at any place."""
    children = st.dictionaries(group_names, groups(depth - 1), max_size=3) if depth else st.none()
    body = st.fixed_dictionaries(
        {},
        optional={
            "hosts": st.dictionaries(host_names, var_blocks, max_size=4) | values,
            "vars": var_blocks,
            "children": children | values,
        },
    )
    return st.none() | body | body | values


def with_head(children: dict, head_vars: object, all_vars: object) -> dict:
    """An inventory with one head host, so that documents often get past the cluster rules."""
    return {"all": {"vars": all_vars, "children": {"head": {"hosts": {"h1": head_vars}}, **children}}}


inventories = st.builds(with_head, st.dictionaries(group_names, groups(2), max_size=3), var_blocks, var_blocks)
documents = inventories | inventories | st.dictionaries(group_names, groups(3), max_size=4) | values


def dumped(document) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


contents = (
    documents.map(dumped)
    | st.binary(max_size=200)
    | WEIRD_TEXT
    | st.sampled_from([GOOD, GOOD + "  vars: &a {x: *a}\n", "[" * 200, "a: &x [*x]", "- " * 100])
)
vars_files = st.dictionaries(
    st.sampled_from(["group_vars/all.yml", "group_vars/workers", "group_vars/head/a.yaml", "host_vars/w1.json",
                     "host_vars/h1/x.yml", "group_vars/all/sub/z.yml", "host_vars/w2.yml"]),
    contents,
    max_size=3,
)  # fmt: skip
extra_items = st.lists(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KNOWN_VARS) | WEIRD_TEXT, WEIRD_TEXT | values.map(dumped))
    | WEIRD_TEXT
    | st.sampled_from(["@extra.yml", "@extra.yml", "@missing.yml", "@", "=x", "a b=1"]),
    max_size=3,
)


def write(root: Path, name: str, content: str | bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    path.write_bytes(content)


def assert_loaded_as_promised(inv: inventory.Inventory, extra_vars: dict) -> None:
    """What a load that succeeds promises: one head that is no worker, valid host names, one host per address and
    port, every llamafleet variable set on every host, every known variable of its declared type, -e values on all."""
    __tracebackhide__ = True
    assert len(inv.groups["head"]) == 1 and inv.head.name not in inv.groups.get("workers", []), inv.groups
    endpoints = [(host.connection.address, host.connection.port) for host in inv.hosts.values()]
    assert len(set(endpoints)) == len(endpoints), endpoints
    declared = set(variables.catalogue()) | set(variables.CONNECTION_VARS)
    for host in inv.hosts.values():
        assert variables.name_problem(host.name, "host") is None, host.name
        assert set(variables.catalogue()) <= set(host.vars), f"{host.name}: a default is missing"
        for name, value in host.vars.items():
            assert variables.check_variable_name(name) is None, (host.name, name)
            if name in declared:
                assert variables.check_value(name, value) is None, (host.name, name, value)
        for name, value in extra_vars.items():
            assert repr(host.vars[name]) == repr(value), f"{host.name}: -e {name} lost"  # repr: NaN is not NaN


@SETTINGS
@given(hosts=contents, files=vars_files, extra_file=contents, extra=extra_items)
def test_load_either_works_or_raises_a_llamafleet_error(hosts, files, extra_file, extra):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write(root, "hosts.yml", hosts)
        write(root, "extra.yml", extra_file)
        for name, content in files.items():
            write(root, name, content)
        items = [f"@{root / item[1:]}" if item.startswith("@") else item for item in extra]
        try:
            extra_vars = inventory.parse_extra_vars(items)
            inv = inventory.load(root / "hosts.yml", extra_vars)
        except LlamafleetError as error:
            assert "\n" not in str(error), "one line"
        else:
            assert_loaded_as_promised(inv, extra_vars)


@SETTINGS
@given(documents)
def test_shaped_documents_either_load_or_raise(document):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "hosts.yml"
        path.write_text(dumped(document))
        try:
            inv = inventory.load(path)
        except LlamafleetError as error:
            assert "\n" not in str(error), "one line"
        else:
            assert_loaded_as_promised(inv, {})


@SETTINGS
@given(extra_items)
def test_extra_vars_either_parse_and_reach_every_host_or_raise(items):
    try:
        parsed = inventory.parse_extra_vars(items)
        assert all(variables.check_variable_name(name) is None for name in parsed)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "hosts.yml"
            path.write_text(GOOD)
            inv = inventory.load(path, parsed)
    except LlamafleetError as error:
        assert "\n" not in str(error), "one line"
    else:
        assert_loaded_as_promised(inv, parsed)
