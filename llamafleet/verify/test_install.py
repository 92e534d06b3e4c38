"""Every host runs the pinned llama.cpp release, unchanged since it was installed; every host runs the same one."""

from __future__ import annotations

from llamafleet import paths
from llamafleet.verify.expected import build_manifest, identity
from llamafleet.verify.plugin import require

LOOK = f"{paths.CURRENT_LINK}/BUILD.json; `invoke provision` reinstalls the pinned release"


def test_pinned_release_current(node, observed, expect):
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
    manifests = {
        name: build_manifest(seen.facts["identity"]) for name, seen in suite.gathered.hosts.items() if not seen.error
    }
    head = suite.expect.view.head
    wanted = {h.name: suite.expect.llama_settings(h) for h in suite.hosts}
    problems = identity.identity_problems(manifests, wanted, head if head in manifests else None)
    require(
        len(manifests) == len(suite.hosts) and not problems,
        "cluster",
        "one identical llama.cpp build on every host",
        f"the same version, source and files on all {len(suite.hosts)} hosts",
        "; ".join(problems) or f"only {len(manifests)} hosts could be read",
        LOOK,
    )
