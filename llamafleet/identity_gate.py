"""A phase of its own for role llama_cpp's identity gate: deploy starts no model on a cluster of mixed builds."""

from __future__ import annotations

from . import roles

NAME = "llama_cpp identity"
# Read with the run's first batch (runner.prefetch): the gate needs no round trip of its own.
PREFETCH = (roles.load("llama_cpp").IDENTITY,)


def operations(ctx):
    """Nothing to converge: this phase only reads each host's running release (in gate)."""
    return iter(())


def gate(run, hosts) -> list[str]:
    """Every host runs the same llama.cpp, its files as recorded at install (see roles/llama_cpp/identity.py)."""
    return roles.load("llama_cpp").identity_gate(run, hosts, NAME)
