"""User operations: the service account llamafleet creates, and never an account it did not create."""

from __future__ import annotations

from ..errors import OperationError
from ..facts import Passwd
from ..shell import quote
from .base import Change, Facts, NoChange, Operation, Shell

NOLOGIN = "/usr/sbin/nologin"
MARK = "llamafleet service user"  # the comment field of accounts llamafleet created
SYSTEM_UID_MAX = 999  # Debian's and Fedora's SYS_UID_MAX; 65534 is nobody


def is_system_account(uid: int) -> bool:
    return 0 < uid <= SYSTEM_UID_MAX or uid == 65534


def system_user(name: str, *, home: str = "/nonexistent") -> Operation:
    """`name` is a system user with its own group, no login shell and no home directory.

    An existing account is taken as it is: root and normal (login) accounts are refused, since
    turning them into a service account would lock people out; a system account that llamafleet
    did not create is used but never modified.
    """
    fact = Passwd(name)

    def plan(facts: Facts):
        entry = facts[fact]
        if entry is None:
            create = "useradd --system --user-group --no-create-home --home-dir %s --shell %s --comment %s -- %s"
            return Change((Shell(quote(create, home, NOLOGIN, MARK, name)),), "missing")
        uid = int(entry["uid"])
        if not is_system_account(uid):
            kind = "root" if uid == 0 else f"a normal account (uid {uid})"
            raise OperationError(
                f"llamafleet_user: '{name}' is {kind}; the services need a system account of their own "
                "(choose a name that does not exist yet, e.g. the default 'llama')"
            )
        if entry.get("comment") != MARK:
            return NoChange(f"existing system account (uid {uid}), not created by llamafleet: left as it is")
        if entry["shell"] != NOLOGIN:
            return Change((Shell(quote("usermod --shell %s -- %s", NOLOGIN, name)),), f"shell is {entry['shell']}")
        return NoChange(f"system user exists (uid {uid})")

    return Operation(f"system user {name}", [fact], plan)


def created_user_absent(name: str) -> Operation:
    """The service account llamafleet created is gone (with its group); any other account is left alone."""
    fact = Passwd(name)

    def plan(facts: Facts):
        entry = facts[fact]
        if entry is None:
            return NoChange("absent")
        if entry.get("comment") != MARK:
            return NoChange(f"not created by llamafleet (uid {entry['uid']}): left as it is")
        return Change((Shell(quote("userdel -- %s", name)),), f"created by llamafleet (uid {entry['uid']})")

    return Operation(f"no service user {name}", [fact], plan)
