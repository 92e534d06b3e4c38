"""The sums record: a release's files listed and hashed at install, so later reads hash only when one changed.

install.sh.j2 runs both commands in the release folder and writes the record; the identity fact
(hostfacts.IDENTITY) lists the files again and, while the listing is unchanged, reads the sha256 from
the record instead of hashing every file.
"""

from __future__ import annotations

from llamafleet.shell import quote

SUMS_RECORD = ".llamafleet-sums"  # in each release, beside BUILD.json
_SUMS_FILES = quote("find . -type f ! -name BUILD.json ! -name %s", f"{SUMS_RECORD}*")
# The files' stat listing: size, mtime, inode, ctime, path (a file written since moves its ctime).
SUMS_LISTING = _SUMS_FILES + " -printf '%s %T@ %i %C@ %p\\n' | LC_ALL=C sort"
# Their sha256, OpenSSL's when it is there (faster), else coreutils'.
SUMS_HASHES = _SUMS_FILES + ' -exec sh -c \'openssl dgst -sha256 -r "$@" 2>/dev/null || sha256sum "$@"\' sh {} +'
