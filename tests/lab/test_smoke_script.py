"""scripts/ci-smoke.sh as a CI job runs it: its own lab up, provision, deploy, verify with JUnit XML, lab down.

It runs after test_llama_cpp.py (files run in name order), so it reuses the session's one build.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from llamafleet import lab as lab_api
from llamafleet.lab.paths import lab_dir
from tests.command_line import ROOT
from tests.lab.conftest import SESSION_LAB
from tests.lab.labtools import VERSION, lab_build_artifact

SMOKE_LAB = SESSION_LAB[:9] + "s"  # a lab name of its own (at most 10 characters), beside the session's


def test_the_smoke_script_passes_end_to_end_and_leaves_no_lab(env, tmp_path):
    cache = Path(env["LLAMAFLEET_CACHE"])
    lab_build_artifact(cache)  # the session built VERSION already: the script must reuse it, not build again
    junit = tmp_path / "smoke-junit.xml"
    smoke_env = {
        **env,
        "LLAMAFLEET_SMOKE_LAB": SMOKE_LAB,
        "LLAMAFLEET_SMOKE_VERSION": VERSION,
        "LLAMAFLEET_SMOKE_JUNIT": str(junit),
    }
    try:
        done = subprocess.run(
            ["bash", "scripts/ci-smoke.sh"], cwd=ROOT, env=smoke_env, capture_output=True, text=True, timeout=2400
        )
    finally:
        lab_api.down(SMOKE_LAB)  # the script's own trap removes it; this is for a test stopped half-way
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "smoke test passed" in done.stdout, output[-4000:]
    rebuilt = re.findall(r"^changed +\S+ +llama_cpp: .* built for .*$", done.stdout, re.M)
    assert not rebuilt, f"the smoke run built llama.cpp again instead of reusing the session's build: {rebuilt}"
    suites = ET.parse(junit).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    assert tests >= 10 and bad == 0, (tests, bad)
    assert not lab_dir(SMOKE_LAB).exists(), "the script's lab was not removed"
