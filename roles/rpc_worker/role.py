"""Role rpc_worker: ggml-rpc-server on every worker, reachable from the head only (the unit, rendered purely)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llamafleet import paths, units
from llamafleet.cluster import Cluster
from llamafleet.operations import systemd
from llamafleet.roles import Role, templates_beside
from llamafleet.roles.tunnel import wireguard

from . import settings

NAME = "rpc_worker"
TEMPLATE_DIR = templates_beside(__file__)
TEMPLATE = "llama-rpc.service.j2"
UNIT = paths.RPC_UNIT
UNIT_PATH = f"{paths.UNIT_DIR}/{UNIT}"
BINARY = "ggml-rpc-server"  # `rpc-server` in older llama.cpp trees
# rpc-server exits 0 when it cannot bind (address not up yet) or reads an unknown flag: retry, not too fast.
RESTART_SECONDS = 5


def exec_start(worker_settings, cluster: Cluster, binary: str = BINARY) -> list[str]:
    """rpc-server's command line, its banner line-buffered so `Starting RPC server` reaches the journal."""
    worker = cluster.worker(worker_settings.host)
    args = ["/usr/bin/stdbuf", "-oL", f"{paths.BIN_DIR}/{binary}", "-H", worker.bind, "-p", str(worker.port)]
    if worker_settings.rpc_threads is not None:
        args += ["-t", str(worker_settings.rpc_threads)]
    if worker_settings.rpc_devices:
        args += ["-d", ",".join(worker_settings.rpc_devices)]
    return [*args, "-c"]


def render_unit(worker_settings, cluster: Cluster, binary: str = BINARY) -> str:
    """The text of llama-rpc.service for one worker: only the head (and loopback) may reach it."""
    s = worker_settings
    command = exec_start(s, cluster, binary)
    context = {
        **units.service_context(command, s.llamafleet_user, s.llama_cpp_backend, RESTART_SECONDS),
        "head": cluster.head,
        "head_address": cluster.head_address,
        "cache_name": paths.CACHE_NAME,
        "rpc_cache_name": paths.RPC_CACHE_NAME,
        **wireguard.unit_order(cluster.tunnel),
    }
    return units.render(TEMPLATE_DIR, TEMPLATE, context)


def files(host, cluster: Cluster, file: str | None = None, binary: str = BINARY) -> dict[str, str]:
    """Every file this role installs on a worker: absolute path on the host -> content."""
    return {UNIT_PATH: render_unit(settings.settings(host, file), cluster, binary)}


# -- provisioning: the unit on every worker, restarted only when it or the binary changed ---------------

RESTART = "restart llama-rpc"


@dataclass
class Restarted:
    """Hand-off to role head: workers whose rpc-server (re)started in this run (the head's sessions to them broke)."""

    workers: set[str] = field(default_factory=set)


def validate(run, hosts) -> None:
    """Before any connection: the cluster's addresses hold together (see llamafleet/cluster.py)."""
    _ = run.fleet  # computed once per run: this checks the addresses before any connection


def operations(ctx):
    view = ctx.run.cluster(ctx.host)
    unit = render_unit(settings.settings(ctx.host, ctx.run.inventory_file), view)
    yield systemd.unit_file(UNIT, unit, notify=(RESTART,))
    # Started again (it was stopped): the head's session to it broke as with a restart.
    yield _marks_restarted(ctx, systemd.service(UNIT, running=True, enabled=True, restarts=(RESTART,)))


def _marks_restarted(ctx, operation):
    operation.after.append(lambda: ctx.run.handoff(Restarted).workers.add(ctx.name))
    return operation


def _restart(ctx):
    return _marks_restarted(ctx, systemd.restarted(UNIT))


ROLE = Role(NAME, operations, template_dir=TEMPLATE_DIR, handlers={RESTART: _restart}, validate=validate)
