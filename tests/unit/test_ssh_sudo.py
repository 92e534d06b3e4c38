"""The command line sent for a command, and sudo's markers taken out of stderr (no SSH)."""

from __future__ import annotations

import shlex

import pytest

from llamafleet import connvars, variables
from llamafleet.channel import _Stderr
from llamafleet.inventory import Host
from llamafleet.ssh import HostConnection

PROMPT, READY = b"[llamafleet sudo 0a1b]", b"[llamafleet started 0a1b]\n"


def connection(**host_vars) -> HostConnection:
    values = {**variables.defaults(), "ansible_host": "10.0.0.5", **host_vars}  # as the inventory resolves them
    return HostConnection(Host("w1", [], values, connvars.read("w1", values)[0]))


def test_a_plain_command_is_bounded_by_timeout_on_the_host():
    wrapped = connection()._wrap("echo 'a b' | wc -c", 90)
    assert shlex.split(wrapped.line) == ["timeout", "-k", "10", "90", "sh", "-c", "echo 'a b' | wc -c"]
    assert (wrapped.password, wrapped.prompt, wrapped.ready) == (b"", b"", b"")


def test_become_without_a_password_never_waits_for_a_prompt():
    wrapped = connection(ansible_user="deploy", ansible_become=True)._wrap("id -u", 5)
    assert shlex.split(wrapped.line)[:7] == ["sudo", "-H", "-n", "-u", "root", "--", "timeout"]
    assert wrapped.password == b""


def test_become_with_a_password_sends_it_only_after_the_prompt_marker():
    conn = connection(ansible_user="deploy", ansible_become=True, ansible_sudo_pass="s3cret w0rd")
    wrapped = conn._wrap("cat > /etc/x", 5)
    words = shlex.split(wrapped.line)
    assert words[:3] == ["sudo", "-H", "-S"] and words[3] == "-p" and words[4].encode() == wrapped.prompt
    assert "s3cret" not in wrapped.line and "s3cret" not in repr(wrapped)
    assert wrapped.password == b"s3cret w0rd\n"
    assert wrapped.ready.strip().decode() in words[-1], "the command announces itself before it reads stdin"
    assert wrapped.prompt != conn._wrap("true", 5).prompt, "a new random marker for every command"


def test_become_to_the_login_user_is_no_become():
    wrapped = connection(ansible_user="root", ansible_become=True, ansible_become_password="x")._wrap("true", 5)
    assert wrapped.line.startswith("timeout ")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_markers_split_across_reads_are_found(size):
    stream = b"We trust you have received the usual lecture\n" + PROMPT + b"Sorry, try again.\n" + PROMPT
    stream += READY + b"real stderr " + PROMPT + b"\n"
    stderr = _Stderr(PROMPT, READY)
    for at in range(0, len(stream), size):
        stderr.feed(stream[at : at + size])
    stderr.end()
    assert (stderr.prompts, stderr.started) == (2, True)
    expected = "We trust you have received the usual lecture\nSorry, try again.\nreal stderr " + PROMPT.decode() + "\n"
    assert stderr.text() == expected, "after the start marker, stderr is the command's own, kept whole"


def test_stderr_without_markers_is_kept_whole():
    stderr = _Stderr(PROMPT, READY)
    stderr.feed(b"sudo: a password is required\n[llamafleet")
    stderr.end()
    assert (stderr.prompts, stderr.started, stderr.ended) == (0, False, True)
    assert stderr.text() == "sudo: a password is required\n[llamafleet"


def test_without_sudo_markers_everything_passes_through():
    stderr = _Stderr(b"", b"")
    stderr.feed(b"warning: x\n")
    assert (stderr.started, stderr.text()) == (True, "warning: x\n")
