"""Role rollback: links read from the host, the swap planned from them; release's switch is planned from facts."""

from __future__ import annotations

import os
import subprocess

from llamafleet.operations.base import Change, Facts
from llamafleet.roles.rollback import role as rollback


def links_on(root) -> list[str]:
    """LINKS' output on a real folder tree (its fixed paths pointed at `root`)."""
    command = rollback.LINKS.command().replace("/opt/llama.cpp", str(root))
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout.splitlines()


def test_links_tell_current_previous_and_whether_previous_is_complete(tmp_path):
    (tmp_path / "releases/a").mkdir(parents=True)
    (tmp_path / "releases/b").mkdir()
    (tmp_path / "releases/b/BUILD.json").write_text("{}")
    assert rollback.links(links_on(tmp_path)) == ("", "", False)
    os.symlink("releases/a", tmp_path / "current")
    os.symlink("releases/b", tmp_path / "previous")
    assert rollback.links(links_on(tmp_path)) == ("releases/a", "releases/b", True)
    (tmp_path / "releases/b/BUILD.json").unlink()
    assert rollback.links(links_on(tmp_path)) == ("releases/a", "releases/b", False)


def test_the_swap_exchanges_current_and_previous(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"releases/{name}").mkdir(parents=True)
    os.symlink("releases/a", tmp_path / "current")
    os.symlink("releases/b", tmp_path / "previous")
    operation = rollback.rolled_back()
    change = operation.plan(Facts({rollback.LINKS.key: ["releases/a", "releases/b", "staged"]}))
    assert isinstance(change, Change) and change.reason == "releases/a -> releases/b"
    assert set(operation.notify) == {"restart llama-rpc", "restart llama-server"}
    command = change.steps[0].command.replace("cd /opt/llama.cpp", f"cd {tmp_path}")
    subprocess.run(["bash", "-c", command], check=True)
    assert (os.readlink(tmp_path / "current"), os.readlink(tmp_path / "previous")) == ("releases/b", "releases/a")
    again = operation.plan(Facts({rollback.LINKS.key: links_on(tmp_path)}))
    assert again.reason == "releases/b -> releases/a", "a second rollback swaps back: it never settles"
