"""Layers: planning code (operations, facts, roles, inventory) imports nothing of the SSH layer (paramiko, fabric),
and no module imports itself through others (no import cycle)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SSH_LAYER = ("paramiko", "fabric", "llamafleet.ssh")
PLANNING = (
    "llamafleet.shell",
    "llamafleet.variables",
    "llamafleet.hostranges",
    "llamafleet.varsfiles",
    "llamafleet.inventory",
    "llamafleet.connvars",
    "llamafleet.facts",
    "llamafleet.operations",
    "llamafleet.roles",
)
# Imports each module in turn in a fresh interpreter; prints which SSH-layer modules each one brought in.
PROBE = """
import importlib, json, sys
from pathlib import Path
layer, names, load_roles = json.loads(sys.argv[1])
brought = {}
def check(name, load):
    before = {m for m in layer if m in sys.modules}
    load()
    brought[name] = sorted(m for m in layer if m in sys.modules and m not in before)
for name in names:
    check(name, lambda: importlib.import_module(name))
if load_roles:
    from llamafleet import roles
    for path in sorted(roles.ROLES_DIR.glob("*/role.py")):
        check(f"roles/{path.parent.name}", lambda: roles.load(path.parent.name))
print(json.dumps(brought))
"""


def imported_by(names: tuple[str, ...], load_roles: bool = False) -> dict[str, list[str]]:
    """For each module (and role, with `load_roles`), the SSH-layer modules importing it brought in."""
    arg = json.dumps([SSH_LAYER, names, load_roles])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, arg], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_planning_code_and_roles_do_not_import_the_ssh_layer():
    brought = imported_by(PLANNING, load_roles=True)
    assert set(PLANNING) <= set(brought) and any(name.startswith("roles/") for name in brought)
    culprits = {name: modules for name, modules in brought.items() if modules}
    assert culprits == {}, f"planning code imported the SSH layer (module: what it brought in): {culprits}"


def test_the_probe_sees_the_ssh_layer_when_it_is_imported():
    brought = imported_by(("llamafleet.shell", "llamafleet.ssh"))
    assert brought == {"llamafleet.shell": [], "llamafleet.ssh": sorted(SSH_LAYER)}


# --------------------------------------------------------------------------- no import cycles

PACKAGES = {"llamafleet": ROOT / "llamafleet", "llamafleet.roles": ROOT / "roles"}  # roles/<name>/ is llamafleet.roles


def modules_of(packages: dict[str, Path]) -> dict[str, Path]:
    """Module name -> source file of every module under each package folder (a package's own is __init__.py)."""
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(nodes: Iterable[ast.AST], type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in `nodes`, in functions too; under `if TYPE_CHECKING:` only with `type_checking`."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _is_type_checking(node) and not type_checking:
            yield from _imports(node.orelse, type_checking)
        else:
            yield from _imports(ast.iter_child_nodes(node), type_checking)


def _targets(name: str, node: ast.Import | ast.ImportFrom, is_package: bool, modules: dict) -> list[str]:
    """The modules an import statement of module `name` names: `from X import y` names X.y when that is a
    module, else X (y is then a name X defines)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = name.split(".")
        parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    named = (f"{base}.{alias.name}" for alias in node.names)
    return [module if module in modules else base for module in named]


def import_graph(packages: dict[str, Path], type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of `packages` that importing it runs first (their enclosing packages included).

    A module's own enclosing packages are left out: they are being imported already when it runs. Imports
    under `if TYPE_CHECKING:` never run; they count only with `type_checking`.
    """
    modules = modules_of(packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for node in _imports([ast.parse(path.read_text(), str(path))], type_checking):
            for target in _targets(name, node, path.name == "__init__.py", modules):
                parts = target.split(".")
                for end in range(1, len(parts) + 1):
                    module = ".".join(parts[:end])
                    if module in modules and module != name and (module not in own or end == len(parts)):
                        graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected group of modules, as [a, b, ..., a]."""
    found, seen = [], set()
    for start in sorted(graph):
        if start in seen:
            continue
        cycle = _shortest_cycle(graph, start)
        if cycle:
            found.append(cycle)
            seen.update(_reachable(graph, start) & _reaching(graph, start))
    return found


def _shortest_cycle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    paths, queue = {start: [start]}, [start]
    for module in queue:  # breadth first: the queue grows while it is read
        for target in sorted(graph[module]):
            if target == start:
                return [*paths[module], start]
            if target not in paths:
                paths[target] = [*paths[module], target]
                queue.append(target)
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    found, queue = {start}, [start]
    for module in queue:
        for target in graph[module] - found:
            found.add(target)
            queue.append(target)
    return found


def _reaching(graph: dict[str, set[str]], start: str) -> set[str]:
    return _reachable({m: {s for s, targets in graph.items() if m in targets} for m in graph}, start)


def test_no_import_cycle_among_llamafleets_modules_and_roles():
    """Imports made only for type checking count too: a circle of types is a circle of concepts."""
    found = cycles(import_graph(PACKAGES, type_checking=True))
    assert found == [], "import cycles (fix each: move the shared piece down, or import one way only):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )


def test_the_cycle_probe_sees_the_real_imports():
    graph = import_graph(PACKAGES)
    assert "llamafleet.facts" in graph["llamafleet.runner"]  # from .facts import ...
    assert "llamafleet.connvars" in graph["llamafleet.inventory"]  # from . import connvars
    assert "llamafleet.paths" in graph["llamafleet.roles.base.role"]  # a role: from llamafleet import paths
    assert "llamafleet.roles.firewall.ruleset" in graph["llamafleet.roles.firewall.rules"]  # from . import ruleset
    assert {"llamafleet.operations", "llamafleet.lab.lifecycle"} <= set(graph), "packages and subpackages"


def test_the_cycle_probe_finds_a_cycle_and_ignores_type_checking_imports(tmp_path):
    files = {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def later():\n    from .sub.c import thing\n",  # an import inside a function counts
        "sub/__init__.py": "",
        "sub/c.py": "import pkg.a\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import e\nelse:\n    import json\n",
        "e.py": "from .d import x\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph({"pkg": tmp_path / "pkg"})
    assert graph["pkg.sub.c"] == {"pkg.a"}, "enclosing packages of its own are not edges"
    assert graph["pkg.b"] == {"pkg.sub", "pkg.sub.c"}, "importing pkg.sub.c runs pkg/sub/__init__.py first"
    assert graph["pkg.d"] == set() and graph["pkg.e"] == {"pkg.d"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    with_types = cycles(import_graph({"pkg": tmp_path / "pkg"}, type_checking=True))
    assert with_types == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"], ["pkg.d", "pkg.e", "pkg.d"]]
