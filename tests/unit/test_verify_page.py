"""verify --html: the page built from verify's JSON document (recorded from a lab run), read back as a browser would.

tests/fixtures/recorded/verify/report_*.json are `invoke verify --json` documents of a 3-host lab (see the README
there); the page is a pure function of such a document, so these tests read the page's rows, not its markup.
"""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from xml.etree import ElementTree

import pytest
from inventory_tree import write_tree
from recordings import RECORDED, recorded_lines

from llamafleet import inventory
from llamafleet.verify import page, probes
from llamafleet.verify.gather import Observed

pytest_plugins = ["pytester"]
SHA = "f16e936814972690b98a22c2036eea773d326e5662d69568028b42258ff08beb"  # the lab's deployed model


def recorded_doc(name: str) -> dict:
    return json.loads((RECORDED / "verify" / f"report_{name}.json").read_text())


class Page(HTMLParser):
    """What a reader sees: the title, text per element id, and each table row's cells and dt/dd pairs."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title, self.rows, self.items, self.paragraphs, self.links = "", [], [], [], []
        self._in: list[str] = []
        self._row: dict | None = None
        self._dt = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in.append(tag)
        if tag == "li":
            self.items.append("")
        elif tag == "p":
            self.paragraphs.append("")
        if tag == "tr":
            self._row = {"id": attrs.get("id", ""), "class": attrs.get("class", ""), "cells": [], "detail": {}}
        elif tag in ("td", "th") and self._row is not None:
            self._row["cells"].append("")
        if tag in ("link", "script", "img", "iframe") or (tag == "a" and not attrs.get("href", "#").startswith("#")):
            self.links.append((tag, attrs))

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        where = self._in[-1] if self._in else ""
        if where == "title":
            self.title += data
        for tag, found in (("li", self.items), ("p", self.paragraphs)):
            if tag in self._in:
                found[-1] = " ".join(f"{found[-1]} {data}".split())
        if self._row is not None and self._row["cells"]:
            self._row["cells"][-1] = " ".join(f"{self._row['cells'][-1]} {data}".split())
            if where == "dt":
                self._dt = data
            elif where == "dd":
                self._row["detail"][self._dt] = self._row["detail"].get(self._dt, "") + data

    def row(self, row_id: str) -> dict:
        return next(r for r in self.rows if r["id"] == row_id)


def test_the_page_is_titled_with_the_inventory_and_shows_its_cluster_build_and_model():
    shown = Page(page.render(recorded_doc("w2_unreachable")))
    assert shown.title.startswith("h2a.yml")
    cluster = next(r for r in shown.rows if r["cells"][:1] == ["default"])
    name, head, workers, build, model = cluster["cells"]
    assert head.startswith("head 10.213.221.2") and "8 failed" in head
    assert workers.startswith("w1 10.213.221.3") and "w2 10.213.221.4 unreachable" in workers
    assert build == "b11434 (b11434-cpu-3e42ed0fa662)", "w2 was not read: it does not make the build differ"
    assert model == f"demo-llama.gguf · 21.3 MB sha256 {SHA}"


def test_each_check_is_a_row_in_words_with_its_code_name_small_and_no_durations():
    text = page.render(recorded_doc("passed"))
    shown = Page(text)
    checks = [r for r in shown.rows if r["id"].startswith(("head-", "w1-", "w2-", "cluster-"))]
    assert len(checks) == 37  # 35 passed, 2 skipped: every test id of the run, one row each
    assert shown.row("head-test_api_key_required")["cells"][:2] == [
        "passed",
        "The API key is enforced test_api_key_required",
    ]
    assert (
        shown.row("w1-test_service_running")["cells"][1] == "llama-rpc.service enabled and running test_service_running"
    )
    assert shown.row("w1-test_rpc_cache_seeded")["cells"] == [
        "skipped",
        "rpc cache seeded test_rpc_cache_seeded",
        "w1: rpc_cache_seed is off",
    ]
    for dropped in ("Python", "pytest", "Duration", "duration", " s</td>"):
        assert dropped not in text, "no environment table, no per-test durations"


def test_a_failure_shows_expected_found_and_where_to_look():
    shown = Page(page.render(recorded_doc("w2_unreachable")))
    health = shown.row("head-test_health")
    assert health["class"] == "failed" and health["cells"][:2] == ["failed", "/health test_health"]
    assert health["detail"] == {
        "expected": "HTTP 200",
        "found": "HTTP no answer",
        "look at": "journalctl -u llama-server.service -n 50 on head; "
        "unit file /etc/systemd/system/llama-server.service",
    }
    # Needs attention: the unreachable host first, then each failed check linking to its row.
    assert shown.items[:2] == [
        "w2 could not be read: w2: cannot connect to 10.213.221.4:22: [Errno 111] Connection refused",
        "/health on head",
    ]
    assert len(shown.items) == 1 + 15 and "One identical llama.cpp build on every host on Across hosts" in shown.items


def test_an_unreachable_host_is_one_row_for_the_checks_it_blocked_and_the_others_stay():
    shown = Page(page.render(recorded_doc("w2_unreachable")))
    blocked = next(r for r in shown.rows if r["cells"][:1] == ["unreachable"])
    assert blocked["cells"][1].startswith("Could not be read over SSH: 9 of its checks could not run")
    assert blocked["detail"]["found"] == "w2: cannot connect to 10.213.221.4:22: [Errno 111] Connection refused"
    assert shown.row("w2-test_rpc_closed_to_others")["cells"][0] == "passed", "probed from w1: it ran"
    assert not [r for r in shown.rows if r["id"] == "w2-test_health"]
    # On w1 the check ran into its precondition, w2 could not be read: named as such, below the description.
    closed = shown.row("w1-test_rpc_closed_to_others")
    assert closed["detail"]["check"] == "reachable over SSH (to probe from it)"


def test_hostile_host_names_and_messages_are_text_not_markup():
    doc = recorded_doc("w2_unreachable")
    evil = "<script>alert('x')</script>&\"'"
    check = dict(doc["hosts"]["head"][1], description=f"answers {evil}", found=f"HTTP 500 <img src=x onerror=1> {evil}")
    doc = copy.deepcopy(doc) | {"hosts": {evil: [check]}, "unreachable": {}}
    doc["overview"]["hosts"] = {evil: {"role": "head", "cluster": evil, "address": evil, "build": evil}}
    doc["overview"]["clusters"] = [{"name": evil, "head": evil, "workers": [], "model": {"name": evil, "sha256": evil}}]
    doc["overview"]["inventory"] = evil
    text = page.render(doc)
    shown = Page(text)
    assert "<script" not in text and "<img" not in text and shown.links == [], "nothing fetched, nothing run"
    assert shown.title.startswith(evil)
    row = next(r for r in shown.rows if r["class"] == "failed")
    assert row["cells"][1] == f"Answers {evil} test_health"
    assert row["detail"]["found"] == f"HTTP 500 <img src=x onerror=1> {evil}"
    assert next(r for r in shown.rows if r["cells"][:1] == [evil])["cells"][1].startswith(evil)


CLUSTERS = """\
all:
  vars: {api_allow: [10.0.0.1]}
  children:
    head:
      hosts:
        c1-head: {ansible_host: 10.0.0.2, cluster: c1}
        c2-head: {ansible_host: 10.0.0.5, cluster: c2}
    workers:
      hosts:
        c1-w1: {ansible_host: 10.0.0.3, cluster: c1}
        c1-w2: {ansible_host: 10.0.0.4, cluster: c1}
        c2-w1: {ansible_host: 10.0.0.6, cluster: c2}
    balancers:
      hosts:
        lb1: {ansible_host: 10.0.0.9}
"""


@pytest.fixture
def clusters(tmp_path):
    """Two clusters and a balancer; every head and worker read as the recorded lab's head (build and model)."""
    write_tree(tmp_path, {"fleet.yml": CLUSTERS})
    inv = inventory.load(tmp_path / "fleet.yml")
    facts = {"identity": recorded_lines("verify/head_identity.txt")}
    model = probes.DeployedModel().process(recorded_lines("verify/head_model.txt"))
    observed = {
        name: Observed(host, facts | ({"model": model} if name.endswith("head") else {}))
        for name, host in inv.hosts.items()
        if name != "c2-w1"
    }
    observed["c2-w1"] = Observed(inv.hosts["c2-w1"], error="c2-w1: cannot connect to 10.0.0.6:22: timed out")
    return inv, observed


def test_the_overview_reads_clusters_heads_workers_and_balancers_from_the_inventory(clusters):
    inv, observed = clusters
    about = page.overview(inv, list(inv.hosts.values()), observed)
    assert about["inventory"] == "fleet.yml"
    assert [(c["name"], c["head"], c["workers"]) for c in about["clusters"]] == [
        ("c1", "c1-head", ["c1-w1", "c1-w2"]),
        ("c2", "c2-head", ["c2-w1"]),
    ]
    assert about["clusters"][0]["model"]["name"] == "vdev-tiny.gguf"
    assert about["balancers"] == ["lb1"] and about["hosts"]["lb1"] == {
        "role": "balancer", "cluster": None, "address": "10.0.0.9", "build": "b11434 (b11434-cpu-374e3cb274cd)"
    }  # fmt: skip
    assert about["hosts"]["c2-w1"]["build"] is None, "not read"
    limited = page.overview(inv, [inv.hosts["c2-head"], inv.hosts["c2-w1"]], observed)
    assert [c["name"] for c in limited["clusters"]] == ["c2"] and limited["balancers"] == []


def test_an_inventory_without_cluster_variables_is_one_default_cluster(tmp_path):
    one = CLUSTERS.replace(", cluster: c1", "").replace(", cluster: c2", "")
    inv = inventory.load(
        write_tree(tmp_path, {"hosts.yml": one.replace("        c2-head: {ansible_host: 10.0.0.5}\n", "")})
    )
    about = page.overview(inv, list(inv.hosts.values()), {})
    assert [(c["name"], c["head"]) for c in about["clusters"]] == [("default", "c1-head")]


def test_the_page_of_two_clusters_has_a_row_and_a_section_each(clusters):
    inv, observed = clusters
    doc = recorded_doc("w2_unreachable")
    doc["overview"] = page.overview(inv, list(inv.hosts.values()), observed)
    doc["hosts"] = {name: [dict(doc["hosts"]["w1"][0])] for name in inv.hosts}
    doc["unreachable"] = {}
    text = page.render(doc)
    shown = Page(text)
    fleet = [r["cells"][0] for r in shown.rows if len(r["cells"]) == 5 and r["cells"][0] != "cluster"]
    assert fleet == ["c1", "c2"]
    assert "Balancers: lb1 10.0.0.9" in shown.paragraphs
    sections = [line for line in text.splitlines() if line.startswith("<h2>")]
    assert sections == [
        "<h2>Clusters</h2>",
        "<h2>Checks of cluster c1</h2>",
        "<h2>Checks of cluster c2</h2>",
        "<h2>Checks of the balancers</h2>",
    ]


DESCRIBED = '''
from llamafleet.verify.plugin import require


def test_precondition_then_own_check():
    require(True, "other", "reachable over SSH (to probe from it)", "an SSH session", "")
    require(False, "cluster", "every build the same", "one build", "two builds", "BUILD.json")


def test_whose_precondition_failed():
    require(False, "other", "reachable over SSH (to probe from it)", "an SSH session", "timed out")
    require(True, "cluster", "port closed to others", "closed", "closed")


def test_with_a_docstring():
    """Every head answers /health with 200.

    More words that are not the description.
    """
    require(True, "cluster", "/health", "HTTP 200", "HTTP 200")


def test_that_names_no_check():
    assert True
'''

NO_SUITE = """
import pytest
from llamafleet.verify import plugin


class NoHosts:
    def close(self):
        pass


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.stash[plugin.STATE] = NoHosts()  # these tests read no host: the inventory is not needed
"""


def test_junit_xml_carries_each_tests_description(pytester):
    """The description is a JUnit property of every test that ran: its docstring, else its own last check."""
    pytester.makepyfile(test_described=DESCRIBED)
    pytester.makeconftest(NO_SUITE)
    pytester.runpytest_inprocess("-p", "llamafleet.verify.plugin", "--junit-xml", "out.xml").assert_outcomes(
        passed=2, failed=2
    )
    cases = ElementTree.parse(pytester.path / "out.xml").getroot().iter("testcase")
    properties = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")} for case in cases}
    assert properties["test_precondition_then_own_check"]["description"] == "every build the same"
    assert properties["test_precondition_then_own_check"]["expected"] == "one build"
    assert properties["test_with_a_docstring"]["description"] == "Every head answers /health with 200."
    assert "description" not in properties["test_that_names_no_check"]
    assert "description" not in properties["test_whose_precondition_failed"], "not the precondition's words"
    assert properties["test_whose_precondition_failed"]["check"] == "reachable over SSH (to probe from it)"
