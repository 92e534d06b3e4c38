"""Start-up: what a task's process imports before its hosts' facts start to be read (the flags checked, the
inventory loaded, runner.read_ahead called) leaves out Jinja and the role code, which load while the hosts answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LATER = ("jinja2", "llamafleet.roles.")  # a module named so, or inside such a package (a role's own modules)
# Runs each step in turn in one fresh interpreter; prints which of LATER's modules each step brought in.
PROBE = """
import json, sys
later = tuple(json.loads(sys.argv[1]))
steps = {}
def step(name, run):
    before = set(sys.modules)
    run()
    steps[name] = sorted(m for m in set(sys.modules) - before if m == later[0] or m.startswith(later))
def check_tags():
    from llamafleet import playbooks
    playbooks.selected(playbooks.PROVISION_ROLES, ("firewall",), (), playbooks.PROVISION_NEEDS)
    assert "llamafleet.runner" not in sys.modules and "llamafleet.roles" not in sys.modules, "runner or roles"
step("tags", check_tags)
step("commands", lambda: __import__("llamafleet.commands"))
def playbook():
    from llamafleet import playbooks
    playbooks.provision(("firewall",))
step("playbook", playbook)
print(json.dumps(steps))
"""


def brought_in() -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(LATER)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_tag_check_and_the_command_line_load_neither_jinja_nor_a_role():
    steps = brought_in()
    assert steps["tags"] == [] and steps["commands"] == []
    # the probe sees them once a playbook is built
    assert "jinja2" in steps["playbook"] and "llamafleet.roles.firewall.role" in steps["playbook"]


COLLECTOR_PROBE = """
import gc, json, sys
during = []  # a collection that starts once the CLI's own modules load (llamafleet.cli is the first of them)
gc.callbacks.append(lambda phase, info: phase == "start" and "llamafleet.cli" in sys.modules and during.append(1))
import llamafleet.commands
print(json.dumps([len(during), "llamafleet.cli" in sys.modules, gc.isenabled(), gc.get_freeze_count()]))
"""


def test_the_command_line_loads_without_a_collection_and_its_modules_are_not_walked_again():
    done = subprocess.run(
        [sys.executable, "-c", COLLECTOR_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    collections, loaded, enabled, frozen = json.loads(done.stdout)
    assert (collections, loaded, enabled) == (0, True, True)
    assert frozen > 10_000  # the modules' objects, out of the collector's generations
