"""Every host runs the pinned llama.cpp release, unchanged since it was installed; every host runs the same one."""

from __future__ import annotations

from llamafleet import paths
from llamafleet.verify.expected import build_manifest, identity
from llamafleet.verify.plugin import require

LOOK = f"{paths.CURRENT_LINK}/BUILD.json; `invoke provision` reinstalls the pinned release"
testinfra_hosts = ["all", "!balancers"]  # balancers run HAProxy, no llama.cpp


def test_pinned_release_current(node, observed, expect):
    """The pinned llama.cpp release is installed, current and unchanged since."""
    facts = observed.facts
    wanted = expect.release_id(node, facts["os"], facts["cpu_flags"])
    link = facts["current"]
    current = link.target if link is not None and link.type == "link" else None
    manifest = build_manifest(facts["identity"])
    problems = identity.identity_problems({node.name: manifest}, {node.name: expect.llama_settings(node)})
    target = f"releases/{wanted}" if wanted else f"releases/{expect.llama_settings(node).version}-*"
    linked = current == target if wanted else bool(current) and current.startswith(target[:-1])
    require(
        linked and not problems,
        node.name,
        "pinned llama.cpp release installed and current",
        f"{paths.CURRENT_LINK} -> {target}, every file as its BUILD.json records",
        "; ".join([f"{paths.CURRENT_LINK} -> {current or 'nothing'}", *problems]),
        LOOK,
    )


def test_builds_identical(suite):
    """Every host of a cluster runs one identical llama.cpp build."""
    # One build inside each cluster; clusters may differ from each other (a rolling upgrade goes one at a time).
    clusters = suite.expect.fleet.clusters
    for view in clusters:
        members = {view.head, *(worker.name for worker in view.workers)}
        hosts = [h for h in suite.hosts if h.name in members]
        seen_hosts = {name: seen for name, seen in suite.gathered.hosts.items() if name in members}
        manifests = {
            name: build_manifest(seen.facts["identity"]) for name, seen in seen_hosts.items() if not seen.error
        }
        wanted = {h.name: suite.expect.llama_settings(h) for h in hosts}
        problems = identity.identity_problems(manifests, wanted, view.head if view.head in manifests else None)
        require(
            len(manifests) == len(hosts) and not problems,
            "cluster" if len(clusters) == 1 else f"cluster {view.name}",
            "one identical llama.cpp build on every host",
            f"the same version, source and files on all {len(hosts)} hosts",
            "; ".join(problems) or f"only {len(manifests)} hosts could be read",
            LOOK,
        )
