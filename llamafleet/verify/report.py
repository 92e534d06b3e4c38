"""`invoke verify`: the suite run by pytest in-process, then a summary per host (or JSON) and the exit status."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest

from llamafleet.errors import UsageError

from . import page, plugin
from .suite import Suite

SUITE_DIR = Path(__file__).resolve().parent
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3
CLUSTER = "cluster"


@dataclass
class Outcome:
    """One test id's result: passed, failed or skipped, with what it expected and found when it failed.

    `description` says in words what the test checks (its docstring, else the checks it named), when known.
    """

    test: str
    host: str
    status: str
    check: str = ""
    expected: str = ""
    found: str = ""
    look: str = ""
    message: str = ""
    description: str = ""


def outcome_of(report: pytest.TestReport) -> Outcome:
    """An Outcome from a pytest report (setup errors count as failures: the check could not run)."""
    match = re.search(r"\[([^\]]+)\]$", report.nodeid)
    name = report.nodeid.split("::")[-1].split("[")[0]
    props = dict(report.user_properties)
    status = "passed" if report.passed else "skipped" if report.skipped else "failed"
    message = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed and not props.get("check"):
        message = (report.longreprtext or "").strip().splitlines()[-1:][0][:300] if report.longreprtext else "failed"
    return Outcome(
        name,
        match.group(1) if match else CLUSTER,
        status,
        props.get("check", ""),
        props.get("expected", ""),
        props.get("found", ""),
        props.get("look", ""),
        message,
        props.get("description", ""),
    )


class Collector:
    """pytest plugin object: hands the suite to the run and keeps one Outcome per test id."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.outcomes: list[Outcome] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[plugin.STATE] = self.suite

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.outcomes.append(outcome_of(report))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = (report.longreprtext or "collection failed").strip().splitlines()[-1]
            self.outcomes.append(Outcome(report.nodeid or "collect", CLUSTER, "failed", message=text[:300]))


def pytest_args(junit_xml: str | None, paths: Iterable[str] = ()) -> list[str]:
    """The suite's pytest command line: quiet (the summary is ours), JUnit XML when asked (the HTML page is ours)."""
    args = [str(SUITE_DIR), *paths, "-c", str(SUITE_DIR / "pytest.ini"), "--rootdir", str(SUITE_DIR)]
    # Third-party plugins are not autoloaded (hypothesis, testinfra's own host parametrisation): only these.
    args += ["-p", "no:terminal", "-p", "no:cacheprovider", "-p", "llamafleet.verify.plugin"]
    if junit_xml:
        args += ["--junit-xml", str(Path(junit_xml).expanduser())]
    return args


def run(suite: Suite, *, junit_xml: str | None, html: str | None) -> tuple[int, dict[str, Any]]:
    """Run every check; (exit status, the JSON document of the run). `html`: the page of the run written there."""
    collector = Collector(suite)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    code = pytest.main(pytest_args(junit_xml), plugins=[collector])
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.INTERRUPTED):
        raise UsageError(f"verify: the suite could not run (pytest exit {int(code)})")
    result = document(suite, collector.outcomes, time.monotonic() - suite.started, junit_xml, html)
    if html:
        page.write(result[1], Path(html).expanduser())
    return result


def document(
    suite: Suite, outcomes: list[Outcome], seconds: float, junit_xml: str | None, html: str | None
) -> tuple[int, dict[str, Any]]:
    unreachable = {n: o.error for n, o in (suite.gathered.hosts if suite._gathered else {}).items() if o.error}
    order = [h.name for h in suite.hosts] + [CLUSTER]
    # A check of a group --limit left out has an empty parameter set: pytest skips it, it concerns no host.
    outcomes = [o for o in outcomes if o.host in order]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("passed", "failed", "skipped")}
    code = EXIT_UNREACHABLE if unreachable else EXIT_FAILED if counts["failed"] or not outcomes else EXIT_OK
    hosts = {name: [asdict(o) for o in outcomes if o.host == name] for name in order}
    doc = {
        "exit_code": code,
        **counts,
        "seconds": round(seconds, 2),
        "hosts": {name: checks for name, checks in hosts.items() if checks or name in unreachable},
        "unreachable": unreachable,
        "ssh_commands": suite.commands(),
        "waited_for_head": _waited(suite),
        "junit_xml": junit_xml,
        "html": html,
        "overview": page.overview(suite.inventory, suite.hosts, suite.gathered.hosts if suite._gathered else {}),
    }
    return code, doc


def _waited(suite: Suite) -> int:
    """Seconds verify waited for the heads to finish loading their model (/health 503): the one retry."""
    hosts = suite.gathered.hosts if suite._gathered else {}
    heads = [hosts.get(name) for name in suite.expect.heads]
    return max(
        (int(h.facts.get("api", {}).get("waited", 0)) for h in heads if h is not None and not h.error), default=0
    )


def print_summary(doc: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    """Per host: passed / failed / skipped, and for each failure the check, expected, found and where to look."""
    for host, checks in doc["hosts"].items():
        passed = sum(c["status"] == "passed" for c in checks)
        skipped = sum(c["status"] == "skipped" for c in checks)
        line = f"{host:<14} {passed}/{len(checks)} passed" + (f", {skipped} skipped" if skipped else "")
        if host in doc["unreachable"]:
            line += f"  UNREACHABLE: {doc['unreachable'][host]}"
        print(line, file=stream)
        for check in checks:
            if check["status"] == "failed" and host not in doc["unreachable"]:
                print(f"  FAILED {check['test']}[{host}]: {check['check'] or check['message']}", file=stream)
                for key in ("expected", "found", "look"):
                    if check[key]:
                        print(f"      {key + ':':<10}{check[key]}", file=stream)
            elif check["status"] == "skipped":
                print(f"  skipped {check['test']}: {check['message']}", file=stream)
    if doc.get("waited_for_head"):
        print(f"waited {doc['waited_for_head']} s for the head to load its model (/health 503)", file=stream)
    verdict = "PASSED" if doc["exit_code"] == EXIT_OK else "FAILED"
    commands = ", ".join(f"{h} {n}" for h, n in doc["ssh_commands"].items())
    print(
        f"\nverify {verdict}: {doc['passed']} passed, {doc['failed']} failed, {doc['skipped']} skipped "
        f"in {doc['seconds']:.1f} s (SSH commands per host: {commands})",
        file=stream,
    )
    for kind in ("junit_xml", "html"):
        if doc[kind]:
            print(f"{kind.replace('_', ' ')}: {doc[kind]}", file=stream)


def print_json(doc: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    print(json.dumps(doc, indent=2), file=stream)
