"""Changes inside a worker's RPC cache, made by the cache directory's owner (the service user), never by root.

The cache is the service's own directory (systemd's CacheDirectory=, mode 0700): whoever runs as the service user,
a compromised rpc-server included, can rename anything in it and put a symlink in its place at any moment. A root
process that writes, chowns or chmods a path in there follows such a link to any file on the host. So root only
makes the directory when it is missing (its parent, /var/cache/llamafleet, is root's) and reads its listing; every
write, rename and removal in it runs under setpriv as the directory's owner, with no supplementary groups and no
way to gain privileges: a link planted there leads it only to what that user may already change.
"""

from __future__ import annotations

from llamafleet.shell import quote

# Root's part: `d` is the cache; the rest of the command line runs as its owner (uid and gid read without
# following a link). A cache that is not a plain directory is refused rather than entered.
_AS_OWNER = (
    '[ -d "$d" ] && [ ! -L "$d" ] || { echo "rpc cache: $d is not a directory" >&2; exit 1; }; '
    "command -v setpriv > /dev/null || { "
    'echo "rpc cache: setpriv (util-linux) is needed to write $d as its owner" >&2; exit 1; }; '
    'o=$(stat -c %u:%g -- "$d"); exec setpriv --reuid="${o%:*}" --regid="${o#*:}" --clear-groups --no-new-privs -- '
)

# The owner's part: each entry from stdin (exact sizes, in order) under a temporary name of its own, checked, then
# renamed: rpc-server never reads a half-written entry. What was renamed is checked again (the name may have been
# swapped for a link between the check and the rename). Arguments: the cache, then NAME SIZE pairs.
_REPLACED = 'echo "rpc cache: entry $n was replaced while it was written: another process changes $d" >&2; exit 1; }; '
WRITER = (
    'set -e; umask 077; d=$1; shift; cd -- "$d"; '
    'whole() { [ -f "$1" ] && [ ! -L "$1" ] && [ "$(stat -c %s -- "$1")" -eq "$2" ]; }; '
    'while [ $# -gt 1 ]; do n=$1; s=$2; shift 2; t=$(mktemp -- ".$n.XXXXXX"); '
    'head -c "$s" > "$t" || { rm -f -- "$t"; echo "rpc cache: entry $n could not be written in $d" >&2; exit 1; }; '
    'got=$(stat -c %s -- "$t" 2> /dev/null) && [ -f "$t" ] && [ ! -L "$t" ] || { rm -f -- "$t"; '
    + _REPLACED
    + '[ "$got" -eq "$s" ] || { rm -f -- "$t"; '
    'echo "rpc cache: entry $n cut short: $got of $s bytes arrived" >&2; exit 1; }; '
    'mv -fT -- "$t" "$n" || { rm -f -- "$t"; '
    'echo "rpc cache: entry $n could not be put in place in $d" >&2; exit 1; }; '
    'whole "$n" "$s" || { rm -f -- "$n"; ' + _REPLACED + "done"
)

# Arguments: the cache, the service user (owner of a cache made here), then NAME SIZE pairs.
SEED_SCRIPT = (
    'set -e; d=$1; u=$2; shift 2; [ -e "$d" ] || [ -L "$d" ] || install -d -m 0700 -o "$u" -g "$u" -- "$d"; '
    + _AS_OWNER
    + quote('sh -c %s write "$d" "$@"', WRITER)
)

# Arguments: the cache, then the names of the entries to remove (a missing cache has none).
REMOVE_SCRIPT = (
    'd=$1; shift; [ -e "$d" ] || [ -L "$d" ] || exit 0; '
    + _AS_OWNER
    + 'sh -c \'cd -- "$1" && shift && rm -f -- "$@"\' remove "$d" "$@"'
)


def write_command(cache: str, user: str, pairs: list[str]) -> str:
    """Writes stdin into `cache` as entries (NAME SIZE pairs), as the cache's owner; makes it for `user` if missing."""
    return quote("sh -c %s seed %s %s" + " %s" * len(pairs), SEED_SCRIPT, cache, user, *pairs)


def remove_command(cache: str, names: list[str]) -> str:
    """Removes the entries `names` (file names, no path) from `cache`, as the cache's owner."""
    return quote("sh -c %s remove %s" + " %s" * len(names), REMOVE_SCRIPT, cache, *names)
