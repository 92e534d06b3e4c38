"""Lab tier fixtures: one lab of real systemd hosts per test session, always torn down."""

from __future__ import annotations

import pytest

from llamafleet import lab as lab_api

# Test labs carry names of their own so a developer's `lab` is never touched.
SESSION_LAB = "tsess"
SESSION_FIREWALLS = "none,ufw,nftables"  # head: none, w1: ufw, w2: nftables
SESSION_LINK_RATE = "1gbit"


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest):
    """LabInfo of a lab with a head and 2 workers (inventory, known_hosts, key, hosts with addresses)."""
    keep = request.config.getoption("--keep-lab", default=False)
    info = None
    try:
        info = lab_api.up(SESSION_LAB, workers=2, firewall=SESSION_FIREWALLS, link_rate=SESSION_LINK_RATE)
        yield info
    finally:  # also on KeyboardInterrupt and when up itself failed half-way
        if not (keep and info is not None):
            lab_api.down(SESSION_LAB)
