"""Role base: packages, the service user and the directory layout every llamafleet host has."""

from __future__ import annotations

from llamafleet import paths, variables
from llamafleet.errors import InventoryError
from llamafleet.operations import files, packages, users
from llamafleet.roles import Role, templates_beside
from llamafleet.run import HostContext

from . import settings

ROOT_DIRS = (paths.INSTALL_ROOT, paths.RELEASES_DIR, paths.STATE_DIR)


def validate(run, hosts) -> None:
    """Before any connection: the service user is never root or the account llamafleet logs in with."""
    for host in hosts:
        user = settings.settings(host).user
        logins = {"root", host.connection.user}
        if user in logins:
            raise InventoryError(
                f"'{user}' is {'root' if user == 'root' else 'the SSH login user'}; the services need a system "
                f"account of their own (default: {variables.catalogue()['llamafleet_user'].default})",
                where=f"host {host.name}",
                key="llamafleet_user",
            )


def operations(ctx: HostContext):
    base = settings.settings(ctx.host, ctx.run.inventory_file)
    user = base.user
    yield packages.present(list(base.packages), ctx.os["family"])
    yield users.system_user(user)
    for path in ROOT_DIRS:
        yield files.directory(path)
    # Models are readable by the service user only; transfers land in .incoming first.
    yield files.directory(paths.MODELS_DIR, mode="0750", group=user)
    yield files.directory(paths.INCOMING_DIR, mode="0700")
    # Configuration, including the API key file, is never world-readable.
    yield files.directory(paths.CONFIG_DIR, mode="0750", group=user)
    yield files.template(paths.HOST_CONFIG, ctx.render("host.yml.j2"), mode="0640", group=user)


ROLE = Role("base", operations, template_dir=templates_beside(__file__), validate=validate)
