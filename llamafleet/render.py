"""`invoke render`: every file the service roles would install, written as OUT/<host>/<path>, with no connection."""

from __future__ import annotations

import sys
from pathlib import Path

from . import cluster, paths
from .errors import UsageError
from .inventory import Inventory
from .roles.base import role as base_role
from .roles.head import role as head_role
from .roles.rpc_worker import role as worker_role


def model_on_head(model: str | None) -> str:
    """Where the head unit finds the model: deploy installs --model under its file name in the models folder."""
    if model is None:
        return head_role.MODEL_PLACEHOLDER
    name = Path(model).name
    if name in ("", ".", "..") or not name.isprintable():
        raise UsageError(f"--model: {model!r} does not name a file")
    return f"{paths.MODELS_DIR}/{name}"


def write(inv: Inventory, out: Path, model: str) -> list[Path]:
    """Every host's service files under `out` (the head's unit loading `model`); the paths written."""
    base_role.validate(None, list(inv.hosts.values()))  # the service user provision would refuse
    return write_tree(out, service_files(inv, model))


def service_files(inv: Inventory, model: str) -> dict[str, dict[str, str]]:
    """host -> {path on the host: content} for the rpc_worker role on the workers, the head role on the heads and
    the balancer role on the balancers."""
    fleet = cluster.fleet(inv)
    for warning in fleet.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    file = str(inv.path)
    rendered = {}
    if fleet.balancers:
        from .roles.balancer import role as balancer_role  # only inventories with balancers need it

        tls_names = balancer_role.tls_of(inv, fleet.clusters)[0]
        for balancer in fleet.balancers:
            rendered[balancer.name] = balancer_role.files(inv.hosts[balancer.name], fleet, file, tls_names)
    for view in fleet.clusters:  # each cluster's workers, then its head
        rendered.update({worker.name: worker_role.files(inv.hosts[worker.name], view, file) for worker in view.workers})
        behind = bool(fleet.balancers)  # a head behind balancers drains its API before it stops
        rendered[view.head] = head_role.files(inv.hosts[view.head], view, file, model=model, behind_balancers=behind)
    for name, host_files in rendered.items():  # the WireGuard configuration, each peer's key as where it comes from
        links = fleet.links(name)
        if links is not None:
            from .roles.tunnel import wireguard

            host_files[wireguard.config_path(links)] = wireguard.render_config(links, name, None)
    return rendered


def write_tree(out: Path, rendered: dict[str, dict[str, str]]) -> list[Path]:
    """Each host's files as out/<host>/<path>; the paths written."""
    written = []
    for host, host_files in rendered.items():
        for path, content in host_files.items():
            target = out / host / path.lstrip("/")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--out: cannot write {target}: {exc.strerror or exc}") from None
            written.append(target)
    return written
