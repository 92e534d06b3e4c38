"""pytest plugin of the verify suite: testinfra hosts from the inventory, facts read once, checks that explain.

Load it with `-p llamafleet.verify.plugin` (the suite's pytest.ini and `invoke verify` do). Options:
`--inventory FILE`, `--limit NAMES`, `--extra-vars KEY=VALUE|@file`. A test taking `host` runs once per
host of the groups or hosts named by its module's `testinfra_hosts` (default: every host), as testinfra does.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest

from llamafleet.errors import LlamafleetError
from llamafleet.inventory import Host

from .expected import Expectations
from .gather import Observed
from .suite import Suite

STATE = pytest.StashKey["Suite"]()
CHECKS = pytest.StashKey[list[tuple[str, str]]]()  # (host, check) of a test's require() calls, pass or fail
_checking: ContextVar[list[tuple[str, str]] | None] = ContextVar("llamafleet_verify_checks", default=None)


class CheckFailed(AssertionError):
    """A check that did not hold: host, check, what was expected, what was found, where to look next."""

    def __init__(self, host: str, check: str, expected: Any, found: Any, look: str = "") -> None:
        self.host, self.check, self.expected, self.found, self.look = host, check, str(expected), str(found), look
        text = f"{host}: {check}: expected {self.expected}; found {self.found}"
        super().__init__(text + (f"; look at: {look}" if look else ""))


def require(ok: Any, host: str, check: str, expected: Any, found: Any, look: Any = "") -> None:
    """Fail the calling test with CheckFailed unless `ok` (hidden from the traceback, like testinfra's helpers)."""
    __tracebackhide__ = True
    named = _checking.get()
    if named is not None:
        named.append((host, check))
    if not ok:
        raise CheckFailed(host, check, expected, found, str(look))


def reach_from(suite: Any, prober: str, endpoint: str) -> str | None:
    """What host `prober` found at ip:port (session, open, closed; None: not probed): skipped when --limit leaves
    the prober out, failed when it could not be read."""
    __tracebackhide__ = True
    if prober not in suite.gathered.hosts:
        pytest.skip(f"{prober} is not in --limit: it probes {endpoint}")
    seen = suite.gathered.hosts[prober]
    require(seen.error is None, prober, "reachable over SSH (to probe from it)", "an SSH session", seen.error)
    return seen.facts["reach"].get(endpoint)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llamafleet", "llamafleet verify")
    group.addoption("--inventory", help="inventory file (default: $LLAMAFLEET_INVENTORY, else inventory/hosts.yml)")
    group.addoption("--limit", help="only these hosts or groups (comma-separated)")
    group.addoption("--extra-vars", action="append", default=[], help="KEY=VALUE or @file.yml; repeatable")


def pytest_configure(config: pytest.Config) -> None:
    if STATE in config.stash:  # handed over by `invoke verify`, which loaded the inventory already
        return
    try:
        suite = Suite.load(
            config.getoption("inventory") or os.environ.get("LLAMAFLEET_INVENTORY"),
            config.getoption("limit"),
            config.getoption("extra_vars"),
        )
    except LlamafleetError as exc:
        raise pytest.UsageError(f"error: {exc}") from None
    config.stash[STATE] = suite


def pytest_unconfigure(config: pytest.Config) -> None:
    suite = config.stash.get(STATE, None)
    if suite is not None:
        suite.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`host` is one testinfra Host per selected host of the module's testinfra_hosts (groups or host names)."""
    if "host" not in metafunc.fixturenames:
        return
    suite = metafunc.config.stash[STATE]
    names = suite.names(getattr(metafunc.module, "testinfra_hosts", None))
    metafunc.parametrize("host", [suite.testinfra_host(n) for n in names], ids=names, scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A check of a group the run has no host of (balancers in an inventory without any, a group --limit leaves
    out) is not collected: pytest would skip it as an empty parameter set, about no host at all."""
    empty = [item for item in items if _no_host(item)]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if item not in empty]


def _no_host(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    skip = item.get_closest_marker("skip")
    reason = str(skip.kwargs.get("reason", "")) if skip is not None else ""
    return callspec is not None and "host" in callspec.params and reason.startswith("got empty parameter set")


@pytest.fixture(scope="session")
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.config.stash[STATE]


@pytest.fixture(scope="session")
def expect(suite: Suite) -> Expectations:
    return suite.expect


@pytest.fixture
def node(suite: Suite, host) -> Host:
    """The inventory host behind the testinfra `host` (its variables, groups, address)."""
    return suite.inventory.hosts[host.backend.hostname]


@pytest.fixture
def observed(suite: Suite, node: Host) -> Observed:
    """The host's facts, read once for the whole run; a host that could not be read fails every check."""
    __tracebackhide__ = True
    found = suite.observed(node.name)
    require(found.error is None, node.name, "reachable over SSH", "an SSH session", found.error, "ssh connectivity")
    return found


def description(item: pytest.Item, host: str, checks: list[tuple[str, str]]) -> str:
    """What a test checks, in words: its docstring's first paragraph, else the last check its require() calls
    named about the test's own host (one about another host is a precondition: that host could be read); else ""."""
    doc = inspect.getdoc(getattr(item, "function", None)) or ""
    own = [check for about, check in checks if about == host]
    return " ".join(doc.split("\n\n")[0].split()) or (own[-1] if own else "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Collect the checks the test names through require(), passed ones too: they describe the test."""
    token = _checking.set(item.stash.setdefault(CHECKS, []))
    try:
        yield
    finally:
        _checking.reset(token)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Record host, description, check, expected, found and where to look as test properties (JUnit XML
    carries them): the description once the test ran (or failed to set up), the rest when a check failed."""
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    props = []
    host = callspec.id if callspec is not None and "host" in callspec.params else "cluster"
    if call.when == "setup":
        props.append(("host", host))
    described = description(item, host, item.stash.get(CHECKS, []))
    if described and (call.when == "call" or (call.when == "setup" and not report.passed)):
        props.append(("description", described))
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, CheckFailed):
        props += [("check", error.check), ("expected", error.expected), ("found", error.found), ("look", error.look)]
    item.user_properties.extend(props)  # JUnit XML reads them from the item
    report.user_properties = list(item.user_properties)
