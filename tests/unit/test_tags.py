"""provision --tags / --skip-tags: roles by name, what a tagged role reads from taken along, typos refused."""

from __future__ import annotations

import pytest

from llamafleet import playbooks
from llamafleet.errors import UsageError
from tests.command_line import environment, error_line, invoke


def roles(tags=(), skip=()) -> list[str]:
    return [role.name for phase in playbooks.provision(tags, skip) for role in phase.roles]


def test_no_tags_plays_every_role_in_order():
    assert roles() == [
        "base",
        "llama_cpp",
        "release",
        "firewall",
        "tunnel_keys",
        "tunnel",
        "rpc_worker",
        "head",
        "balancer",
    ]


def test_tags_play_only_those_roles_in_provisions_order():
    assert roles(("head", "firewall")) == ["firewall", "head"]


def test_release_takes_along_what_it_switches_to_and_the_services_that_restart_on_it():
    assert roles(("release",)) == ["llama_cpp", "release", "rpc_worker", "head"]


def test_skip_tags_leave_out_those_roles():
    wanted = ["llama_cpp", "release", "tunnel_keys", "tunnel", "rpc_worker", "head", "balancer"]
    assert roles(skip=("base", "firewall")) == wanted


def test_skipping_what_a_tagged_role_needs_is_refused():
    with pytest.raises(UsageError, match="release needs llama_cpp"):
        playbooks.provision(("release",), ("llama_cpp",))
    with pytest.raises(UsageError, match="release needs head"):
        playbooks.provision((), ("head",))


def test_nothing_left_is_refused():
    with pytest.raises(UsageError, match="no role left"):
        playbooks.provision(("head",), ("head",))


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--tags", "fierwall"], "--tags: 'fierwall' is not a role of this task"),
        (["--skip-tags", "workers"], "--skip-tags: 'workers' is not a role of this task"),
        (["--tags", "head,"], None),  # an empty name between commas is no name: not refused
    ],
)
def test_an_unknown_tag_is_one_line_before_the_inventory_is_read(flags, fragment, tmp_path):
    """The inventory named does not exist: a bad tag is what the line is about, exit 2."""
    done = invoke("provision", "-i", str(tmp_path / "none.yml"), *flags, env=environment())
    error_line(done, fragment or "no such inventory file")
