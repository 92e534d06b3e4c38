"""A sample role of a dozen everyday provisioning steps, for the no-op benchmark and idempotence tests."""

from __future__ import annotations

import json
import os
import random
import tempfile
import threading
from functools import cache
from pathlib import Path

from llamafleet.operations import files, packages, systemd, users
from llamafleet.roles import Role, templates_beside
from llamafleet.run import HostContext

NAME = "sample"
UNITS = ("lfsample-a.service", "lfsample-b.service")
PAYLOAD_SIZE = 10 * 1024 * 1024
_PAYLOAD_LOCK = threading.Lock()


def payload() -> tuple[Path, str]:
    """A deterministic 10 MB file on the controller and its sha256.

    Every host's thread plans at once, and other processes may share the file: it is made once
    under a lock and appears whole (written beside it, then renamed), never half-written.
    """
    with _PAYLOAD_LOCK:
        return _payload()


@cache
def _payload() -> tuple[Path, str]:
    path = Path(tempfile.gettempdir()) / "llamafleet-sample-10M.bin"
    if not path.exists() or path.stat().st_size != PAYLOAD_SIZE:
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        partial.write_bytes(random.Random(11434).randbytes(PAYLOAD_SIZE))
        partial.replace(path)
    return path, files.source_sha256(path)


def operations(ctx: HostContext):
    blob, blob_sha = payload()
    yield packages.present(["procps", "iproute2", "ca-certificates"], ctx.os["family"])
    yield users.system_user("lfsample")
    for path in ("/srv/lfsample", "/srv/lfsample/data", "/etc/lfsample"):
        yield files.directory(path)
    yield files.copy("/srv/lfsample/data/blob.bin", blob, blob_sha)
    yield files.file("/etc/lfsample/meta.json", json.dumps({"host": ctx.name, "blob": blob_sha}, indent=2) + "\n")
    yield files.symlink("/srv/lfsample/current", "/srv/lfsample/data")
    for name in ("a", "b", "c"):
        yield files.template(f"/etc/lfsample/{name}.conf", ctx.render("sample.conf.j2", part=name))
    for unit in UNITS:
        yield systemd.unit_file(unit, ctx.render("sample.service.j2", unit=unit), notify=(f"restart {unit}",))
        yield systemd.service(unit, running=True, enabled=True)


HANDLERS = {f"restart {unit}": (lambda ctx, unit=unit: systemd.restarted(unit)) for unit in UNITS}


ROLE = Role(NAME, operations, template_dir=templates_beside(__file__), handlers=HANDLERS)
