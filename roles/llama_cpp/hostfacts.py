"""Where llama.cpp lives on a host, and the facts read about it (the CPU, the releases, the running one)."""

from __future__ import annotations

from llamafleet import paths
from llamafleet.facts import CommandOutput
from llamafleet.shell import quote

from . import sums

NAME = "llama_cpp"
BUILD_ROOT = paths.BUILD_DIR
BUILT = "built.env"  # what build.sh reports last, kept beside its artifact
INCOMING = paths.INCOMING_DIR
RELEASES = paths.RELEASES_DIR
CURRENT = paths.CURRENT_LINK
PREVIOUS = paths.PREVIOUS_LINK
CPU_FLAGS = CommandOutput("grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2")
# Each release's files as installed: their stat listing, then `@@sums` and their sha256 (sums.SUMS_*, written by
# install.sh.j2). While the listing holds, no file was written since it was hashed.
SUMS_RECORD = sums.SUMS_RECORD
_HASHES = sums.SUMS_HASHES
_RECORDED = (
    quote('[ -f %s ] && [ "$(sed %s %s)" = "$(', SUMS_RECORD, "/^@@sums$/,$d", SUMS_RECORD) + sums.SUMS_LISTING + ')" ]'
)
# The running release's BUILD.json and the checksums of its files, for the identity gate. Read
# with the role's other facts: when nothing changed on a host the gate needs no round trip of its own.
# The checksums recorded at install are used while no file's stat changed (a file replaced or written
# since changes its inode or ctime); otherwise every file is hashed now.
_MANIFEST = f"{CURRENT}/BUILD.json"
_IN_CURRENT = quote("if [ -f %s ]; then cat %s; echo '@@files'; cd %s && ", _MANIFEST, _MANIFEST, f"{CURRENT}/")
_RECORDED_SUMS = quote("sed '1,/^@@sums$/d' %s", SUMS_RECORD)
IDENTITY = CommandOutput(f"{_IN_CURRENT}if {_RECORDED}; then {_RECORDED_SUMS}; else {_HASHES}; fi; fi")
# The same, every file hashed now (invoke verify measures, it does not trust a record).
IDENTITY_MEASURED = CommandOutput(f"{_IN_CURRENT}{_HASHES}; fi")
INSTALLED = CommandOutput(
    quote('cd %s 2>/dev/null && for f in */BUILD.json; do [ -f "$f" ] && sha256sum "$f"; done', RELEASES)
)
