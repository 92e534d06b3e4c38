"""`invoke verify --html FILE`: the page an operator reads after a deploy, built from verify's JSON document.

At the top the inventory, its clusters (head, workers, llama.cpp build, model and sha256) and balancers; then,
cluster by cluster, one row per host and check in words, with what was expected, what was found and where to
look for each failure. One self-contained file: inline CSS, no script, nothing fetched; every text escaped.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .expected import build_manifest

if TYPE_CHECKING:
    from llamafleet.inventory import Host, Inventory

    from .gather import Observed

DEFAULT_CLUSTER = "default"
ACROSS = "cluster"  # the pseudo-host of checks that concern every host at once (report.CLUSTER)


# -- what the page shows about the fleet, read from the inventory and the facts verify gathered ------------------


def overview(inv: Inventory, selected: list[Host], observed: dict[str, Observed]) -> dict[str, Any]:
    """The inventory's clusters, balancers and hosts as the run saw them, for the JSON document and the page.

    A host's cluster is its `cluster` variable (default "default"); heads are group `head`, workers group
    `workers`, balancers group `balancers`. Only the hosts the run selected (--limit) are shown, in inventory
    order; a head's model and every host's llama.cpp build are what `observed` read (None where it read nothing).
    """
    heads, workers = set(inv.groups.get("head", [])), set(inv.groups.get("workers", []))
    balancers = set(inv.groups.get("balancers", []))
    clusters: dict[str, dict[str, Any]] = {}
    hosts: dict[str, dict[str, Any]] = {}
    for host in selected:
        seen = observed.get(host.name)
        facts = seen.facts if seen is not None and not seen.error else {}
        role = "head" if host.name in heads else "worker" if host.name in workers else ""
        role = role or ("balancer" if host.name in balancers else "other")
        name = cluster_of(host) if role in ("head", "worker") else None
        hosts[host.name] = {"role": role, "cluster": name, "address": host.connection.address, "build": _build(facts)}
        if name is None:
            continue
        entry = clusters.setdefault(name, {"name": name, "head": None, "workers": [], "model": None})
        if role == "head":
            entry["head"] = host.name
            entry["model"] = facts.get("model") or None
        else:
            entry["workers"].append(host.name)
    return {
        "inventory": inv.path.name,
        "sources": inv.shown,
        "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "clusters": list(clusters.values()),
        "balancers": [name for name, host in hosts.items() if host["role"] == "balancer"],
        "hosts": hosts,
    }


def cluster_of(host: Host) -> str:
    """The cluster a head or worker belongs to: its `cluster` variable, else the one default cluster."""
    return str(host.vars.get("cluster") or DEFAULT_CLUSTER)


def _build(facts: dict[str, Any]) -> str | None:
    """The llama.cpp build a host runs, as `version (release id)`; None when it could not be read."""
    manifest = build_manifest(facts["identity"]) if facts.get("identity") else None
    if not manifest:
        return None
    release = manifest.get("release_id")
    return f"{manifest.get('version', '?')}" + (f" ({release})" if release else "")


# -- the page ------------------------------------------------------------------------------------------------------


def write(doc: dict[str, Any], path: Path) -> None:
    """Write the page of a verify document to `path`."""
    path.write_text(render(doc), encoding="utf-8")


def render(doc: dict[str, Any]) -> str:
    """The whole page of a verify document (report.document's, with its `overview`) as one HTML string."""
    about = doc.get("overview") or {}
    title = about.get("inventory") or "inventory"
    parts = [
        f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{_e(title)}: verify {_e(_verdict_word(doc))}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        _header(doc, about),
        _fleet(doc, about),
        _failed_index(doc),
        _checks(doc, about),
        _footer(doc, about),
        "</body>\n</html>\n",
    ]
    return "".join(parts)


def _header(doc: dict[str, Any], about: dict[str, Any]) -> str:
    total = doc["passed"] + doc["failed"] + doc["skipped"]
    if doc["unreachable"]:
        count = len(doc["unreachable"])
        verdict = f"{count} host{'s' * (count > 1)} could not be read; {doc['failed']} of {total} checks failed"
    elif doc["failed"]:
        verdict = f"{doc['failed']} of {total} checks failed"
    else:
        verdict = f"All {doc['passed']} checks passed" + (f", {doc['skipped']} skipped" if doc["skipped"] else "")
    kind = "ok" if doc["exit_code"] == 0 else "bad"
    sources = about.get("sources")
    subtitle = f"verify of {_e(sources)}" if sources else "verify"
    when = f" &middot; {_e(about['time'])}" if about.get("time") else ""
    return (
        f"<header>\n<h1>{_e(about.get('inventory') or 'inventory')}</h1>\n"
        f"<p class='sub'>{subtitle}{when}</p>\n"
        f"<p class='verdict {kind}'>{_e(verdict)}</p>\n</header>\n"
    )


def _fleet(doc: dict[str, Any], about: dict[str, Any]) -> str:
    """One row per cluster: head, workers, llama.cpp build, model; then the balancers."""
    clusters, hosts = about.get("clusters") or [], about.get("hosts") or {}
    parts = []
    if clusters:
        head = "<tr><th>cluster</th><th>head</th><th>workers</th><th>llama.cpp</th><th>model</th></tr>\n"
        rows = "".join(_cluster_row(cluster, hosts, doc) for cluster in clusters)
        parts.append(f"<table class='fleet'>\n{head}{rows}</table>\n")
    if about.get("balancers"):
        shown = ", ".join(_host_ref(name, hosts, doc) for name in about["balancers"])
        parts.append(f"<p class='balancers'><b>Balancers:</b> {shown}</p>\n")
    return f"<section>\n<h2>Clusters</h2>\n{''.join(parts)}</section>\n" if parts else ""


def _cluster_row(cluster: dict[str, Any], hosts: dict[str, dict[str, Any]], doc: dict[str, Any]) -> str:
    members = [n for n in [cluster.get("head"), *cluster.get("workers", [])] if n]
    builds: dict[str, list[str]] = {}
    for name in members:  # a host that could not be read has no build to show: its checks say why
        if hosts.get(name, {}).get("build"):
            builds.setdefault(hosts[name]["build"], []).append(name)
    if not builds:
        build = "<span class='warn'>not read</span>"
    elif len(builds) == 1:
        build = _build_shown(next(iter(builds)))
    else:
        build = "<br>".join(f"{_build_shown(b)} on {_e(', '.join(names))}" for b, names in builds.items())
        build = f"<span class='warn'>differs:</span><br>{build}"
    head = _host_ref(cluster["head"], hosts, doc) if cluster.get("head") else "<span class='warn'>none</span>"
    workers = "<br>".join(_host_ref(n, hosts, doc) for n in cluster.get("workers", [])) or "none"
    cells = [f"<b>{_e(cluster['name'])}</b>", head, workers, build, _model(cluster.get("model"))]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>\n"


def _build_shown(build: str) -> str:
    """`version (release id)` as the version, the release id in small type below it."""
    version, _, release = build.partition(" (")
    return f"<code>{_e(version)}</code>" + (f"<br><span class='hash ref'>({_e(release)}</span>" if release else "")


def _model(record: dict[str, Any] | None) -> str:
    if not record or not record.get("name"):
        return "<span class='warn'>no model deployed</span>"
    size = f" &middot; {int(record['size']) / 1e6:.1f} MB" if str(record.get("size", "")).isdigit() else ""
    text = f"{_e(record['name'])}{size}<br><span class='hash'>sha256 {_e(record.get('sha256') or '?')}</span>"
    measured = record.get("measured")
    if measured is not None and measured != record.get("sha256"):
        text += f"<br><span class='warn'>file on the head: sha256 {_e(measured or 'missing')}</span>"
    return text


def _host_ref(name: str, hosts: dict[str, dict[str, Any]], doc: dict[str, Any]) -> str:
    """A host's name linking to its rows, with its address and a mark when any of its checks failed."""
    address = hosts.get(name, {}).get("address")
    shown = f"<a href='#{_anchor('host', name)}'>{_e(name)}</a>"
    if address and address != name:
        shown += f" <span class='addr'>{_e(address)}</span>"
    shown = f"<span class='ref'>{shown}</span>"
    failed = sum(c["status"] == "failed" for c in doc["hosts"].get(name, []))
    if name in doc["unreachable"]:
        shown += " <span class='pill fail'>unreachable</span>"
    elif failed:
        shown += f" <span class='pill fail'>{failed} failed</span>"
    return shown


def _failed_index(doc: dict[str, Any]) -> str:
    failed = [
        (host, check)
        for host, checks in doc["hosts"].items()
        if host not in doc["unreachable"]
        for check in checks
        if check["status"] == "failed"
    ]
    items = [f"<li><b>{_e(host)}</b> could not be read: {_e(error)}</li>" for host, error in doc["unreachable"].items()]
    items += [
        f"<li><a href='#{_anchor(host, check['test'])}'>{_e(_described(check))}</a>"
        f" on <b>{_e(_host_name(host))}</b></li>"
        for host, check in failed
    ]
    if not items:
        return ""
    return f"<section class='failed'>\n<h2>Needs attention</h2>\n<ul>\n{''.join(items)}\n</ul>\n</section>\n"


def _checks(doc: dict[str, Any], about: dict[str, Any]) -> str:
    """The check rows, host by host: each cluster's head and workers, then balancers, other hosts, all hosts."""
    hosts = about.get("hosts") or {}
    sections: list[tuple[str, list[str]]] = []
    for cluster in about.get("clusters") or []:
        members = [n for n in [cluster.get("head"), *cluster.get("workers", [])] if n]
        sections.append((f"Checks of cluster {cluster['name']}", members))
    placed = {n for _, names in sections for n in names}
    balancers = [n for n in about.get("balancers") or [] if n not in placed]
    sections.append(("Checks of the balancers", balancers))
    placed |= set(balancers)
    rest = [n for n in doc["hosts"] if n not in placed and n != ACROSS]
    sections.append(("Checks of other hosts" if placed else "Checks", rest))
    sections.append(("Checks across hosts", [ACROSS] if ACROSS in doc["hosts"] else []))
    body = []
    for title, names in sections:
        names = [n for n in names if n in doc["hosts"]]
        if names:
            groups = "".join(_host_rows(n, doc["hosts"][n], hosts.get(n, {}), doc) for n in names)
            body.append(f"<h2>{_e(title)}</h2>\n<table class='checks'>\n{COLUMNS}{groups}</table>\n")
    return f"<section class='results'>\n{''.join(body)}</section>\n"


def _host_rows(name: str, checks: list[dict[str, Any]], host: dict[str, Any], doc: dict[str, Any]) -> str:
    passed = sum(c["status"] == "passed" for c in checks)
    role = {"head": "head", "worker": "worker", "balancer": "balancer"}.get(host.get("role", ""), "")
    about = " &middot; ".join(_e(x) for x in [role, host.get("address") or ""] if x)
    head = (
        f"<tbody id='{_anchor('host', name)}'>\n<tr class='host'><th colspan='3'>{_e(_host_name(name))}"
        f" <span class='addr'>{about}</span><span class='count'>{passed} of {len(checks)} passed</span></th></tr>\n"
    )
    error = doc["unreachable"].get(name)
    if error is None:
        return head + "".join(_row(name, check) for check in checks) + "</tbody>\n"
    # The checks that needed the host's facts failed with the connection's error: one row says it for them all.
    blocked = [c for c in checks if c["status"] == "failed" and c["found"] == error]
    codes = ", ".join(c["test"] for c in blocked)
    rows = (
        "<tr class='failed'><td><span class='pill fail'>unreachable</span></td>"
        f"<td>Could not be read over SSH: {len(blocked)} of its checks could not run"
        f"<div class='code'>{_e(codes)}</div></td>"
        f"<td><dl><dt>found</dt><dd>{_e(error)}</dd>"
        "<dt>look at</dt><dd>ssh connectivity: the address, the port, the host key, the login</dd></dl></td></tr>\n"
    )
    rows += "".join(_row(name, check) for check in checks if check not in blocked)
    return head + rows + "</tbody>\n"


def _row(host: str, check: dict[str, Any]) -> str:
    status = check["status"]
    pill = PILLS.get(status, PILLS["failed"])
    label = f"{_e(_described(check))}<div class='code'>{_e(check['test'])}</div>"
    detail = ""
    if status == "failed":
        items = [("check", check["check"])] if check["check"] not in ("", check.get("description")) else []
        items += [("expected", check["expected"]), ("found", check["found"]), ("look at", check["look"])]
        items += [("error", check["message"])] if check["message"] else []
        detail = "<dl>" + "".join(f"<dt>{k}</dt><dd>{_e(v)}</dd>" for k, v in items if v) + "</dl>"
    elif status == "skipped":
        detail = f"<span class='why'>{_e(check['message'])}</span>"
    return (
        f"<tr class='{_e(status)}' id='{_anchor(host, check['test'])}'>"
        f"<td>{pill}</td><td>{label}</td><td>{detail}</td></tr>\n"
    )


COLUMNS = "<colgroup><col class='status'><col class='check'><col></colgroup>\n"  # the same in every table
PILLS = {
    "passed": "<span class='pill ok'>passed</span>",
    "skipped": "<span class='pill skip'>skipped</span>",
    "failed": "<span class='pill fail'>failed</span>",
}


def _footer(doc: dict[str, Any], about: dict[str, Any]) -> str:
    notes = [f"{doc['passed']} passed, {doc['failed']} failed, {doc['skipped']} skipped"]
    notes.append(f"every host read once: {sum(doc.get('ssh_commands', {}).values())} SSH commands in all")
    if doc.get("waited_for_head"):
        notes.append(f"waited {doc['waited_for_head']} s for the head to load its model")
    if doc.get("junit_xml"):
        notes.append(f"JUnit XML: {doc['junit_xml']}")
    return f"<footer>{' &middot; '.join(_e(n) for n in notes)}</footer>\n"


def _described(check: dict[str, Any]) -> str:
    """A check in words: its description (capitalised unless it starts with a name), else its code name as words."""
    text = check.get("description") or ""
    if not text:
        return check["test"].split("::")[-1].removeprefix("test_").replace("_", " ")
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() and first.islower() else text


def _host_name(name: str) -> str:
    return "Across hosts" if name == ACROSS else name


def _verdict_word(doc: dict[str, Any]) -> str:
    return "passed" if doc["exit_code"] == 0 else "unreachable host" if doc["unreachable"] else "FAILED"


def _anchor(*parts: str) -> str:
    """An element id made of the parts, safe inside a quoted attribute and a URL fragment."""
    return "-".join("".join(ch if ch.isalnum() or ch in "_." else f"_{ord(ch):x}" for ch in p) for p in parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


CSS = """
:root { --ok: #1a7f37; --bad: #c62828; --skip: #6e7781; --line: #d8dee4; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1f2328; margin: 0 auto; max-width: 1180px; padding: 24px 28px 40px; }
h1 { font-size: 28px; margin: 0; word-break: break-all; }
h2 { font-size: 19px; margin: 28px 0 10px; }
h3 { font-size: 16px; margin: 0 0 8px; }
.sub { color: #57606a; margin: 2px 0 12px; word-break: break-all; }
.verdict { display: inline-block; font-size: 17px; font-weight: 600; padding: 6px 14px; border-radius: 6px;
  margin: 0; color: #fff; }
.verdict.ok { background: var(--ok); } .verdict.bad { background: var(--bad); }
table { border-collapse: collapse; width: 100%; }
.fleet { border: 1px solid var(--line); }
.fleet th { text-align: left; background: #eaeef2; font-weight: 600; padding: 6px 10px; font-size: 13px; }
.fleet td { border-top: 1px solid var(--line); padding: 7px 10px; vertical-align: top; }
.balancers { margin: 10px 0 0; }
.ref { white-space: nowrap; } .fleet .hash { font-size: 11.5px; }
code, .hash, .code, .addr, dd { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { font-size: 13px; }
.hash { font-size: 12px; color: #57606a; word-break: break-all; }
.addr { font-size: 12px; color: #57606a; font-weight: normal; }
.warn { color: var(--bad); font-weight: 600; }
.failed ul { margin: 0; padding-left: 20px; } .failed li { margin: 3px 0; }
section.failed { border-left: 4px solid var(--bad); background: #fff5f5; padding: 4px 16px 12px; margin-top: 22px; }
.checks { border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
.checks td { border-top: 1px solid var(--line); padding: 7px 10px; vertical-align: top; }
.checks { table-layout: fixed; } col.status { width: 112px; } col.check { width: 40%; }
tr.host th { text-align: left; background: #eaeef2; padding: 8px 10px; font-size: 15px; }
tr.host .count { float: right; font-weight: normal; color: #57606a; font-size: 13px; }
tr.failed td { background: #fff5f5; }
.code { font-size: 11.5px; color: #8c959f; margin-top: 1px; overflow-wrap: anywhere; }
.pill { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; color: #fff; }
.pill.ok { background: var(--ok); } .pill.fail { background: var(--bad); } .pill.skip { background: var(--skip); }
.why { color: #57606a; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0; }
dt { color: #57606a; font-size: 13px; } dd { margin: 0; font-size: 13px; word-break: break-word; }
footer { margin-top: 28px; color: #57606a; font-size: 13px; border-top: 1px solid var(--line); padding-top: 10px; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
@media print { .verdict, .pill { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""
