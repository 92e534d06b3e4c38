"""Planning code (operations, facts, roles, inventory) imports nothing of the SSH layer (paramiko, fabric)."""

from __future__ import annotations

import json
import subprocess
import sys
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
