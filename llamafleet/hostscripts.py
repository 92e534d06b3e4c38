"""The shell scripts a host runs to receive files: uploads renamed into place only when complete, resumable
transfers hashed as they stream (arguments are quoted by shell.quote; nothing here runs on the controller)."""

from __future__ import annotations

from .operations.base import Transfer
from .shell import quote

# sha256 of stdin with OpenSSL (4x faster than coreutils), else sha256sum.
DIGEST = (
    "if command -v openssl >/dev/null 2>&1; then digest() { openssl dgst -sha256 -r; }; "
    "else digest() { sha256sum; }; fi; "
)
PUT_SCRIPT = (
    "set -e; p=%s; size=%s; sum=%s; " + DIGEST + 'd=$(dirname "$p"); t=$(mktemp "$d/.lf.XXXXXX"); '
    'trap \'rm -f "$t"\' EXIT; trap "exit 1" HUP INT TERM PIPE; '
    'got=$(head -c "$size" | tee "$t" | digest | cut -d" " -f1); n=$(stat -c %%s "$t"); '
    '[ "$n" -eq "$size" ] || { echo "upload cut short: $n of $size bytes arrived; $p left as it was" >&2; exit 1; }; '
    '[ "$got" = "$sum" ] || { echo "upload damaged: sha256 $got, expected $sum; $p left as it was" >&2; exit 1; }; '
    'chown %s:%s "$t"; chmod %s "$t"; mv -fT "$t" "$p"; trap - EXIT'
)


# Before an attempt starts, the files of earlier ones (<part>.XXXXXX) become the part: a writer still running
# (a cut link the host has not noticed yet) is stopped, and its exit renames its file to the part; a file
# whose writer is gone is taken when it is longer. Each holds a prefix of the model, in order. When the part
# then holds more than the controller planned to resume from, that many bytes of the stream are skipped.
ADOPT_EARLIER_ATTEMPTS = (
    'skip() { [ "$1" -eq 0 ] || head -c "$1" > /dev/null; }; '
    "adopt() { f=$1; stopped=0; "
    'for fd in /proc/[0-9]*/fd/*; do [ "$(readlink -- "$fd" 2>/dev/null)" = "$f" ] || continue; '
    'pid=${fd#/proc/}; kill -TERM "${pid%%%%/*}" 2>/dev/null && stopped=1; done; '
    'i=0; while [ "$stopped" = 1 ] && [ -f "$f" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; '
    '[ -f "$f" ] || return 0; '
    'if [ "$(stat -c %%s -- "$f")" -gt "$(stat -c %%s -- "$t" 2>/dev/null || echo 0)" ]; '
    'then mv -fT -- "$f" "$t"; else rm -f -- "$f"; fi; }; '
    'for f in "$t".*; do [ -f "$f" ] && adopt "$f"; done; '
)
# Each attempt writes a file of its own (mktemp), seeded with the part that arrived before: a writer of an earlier
# attempt that outlives its connection (a cut link; the controller's kernel may still deliver what it had
# buffered once the link is back) can only ever complete or extend its own file, never the one this attempt
# verifies and renames. An attempt cut short leaves its longer prefix as the part to resume from.
RESUMABLE_SCRIPT = (
    "set -e; t=%s; p=%s; size=%s; offset=%s; sum=%s; owner=%s; group=%s; mode=%s; record=%s; "
    + DIGEST
    + ADOPT_EARLIER_ATTEMPTS
    + 'have=$(stat -c %%s -- "$t" 2>/dev/null || echo 0); '
    '[ "$have" -ge "$offset" ] || { rm -f -- "$t"; '
    'echo "$t held $have bytes, not the $offset expected: removed, run again" >&2; exit 1; }; '
    'w=$(mktemp -- "$t.XXXXXX"); '
    'keep() { n=$(stat -c %%s -- "$w" 2>/dev/null || echo 0); '
    'if [ "$n" -gt "$offset" ] && [ "$n" -lt "$size" ]; then mv -fT -- "$w" "$t"; else rm -f -- "$w"; fi; }; '
    "trap keep EXIT; trap 'exit 1' HUP INT TERM PIPE; "
    '[ "$have" -eq 0 ] || cp --reflink=auto -- "$t" "$w"; '
    'got=$( { [ "$have" -eq 0 ] || cat -- "$t"; skip "$((have - offset))"; tee -a -- "$w"; } '
    '| digest | cut -d" " -f1); '
    'n=$(stat -c %%s -- "$w"); '
    '[ "$n" -le "$size" ] || { rm -f -- "$t" "$w"; '
    'echo "transfer overran: $n bytes arrived, $size expected; removed, $p left as it was" >&2; exit 1; }; '
    '[ "$n" -eq "$size" ] || { '
    'echo "transfer cut short: $n of $size bytes arrived; kept to resume, $p left as it was" >&2; exit 1; }; '
    '[ "$got" = "$sum" ] || { rm -f -- "$t" "$w"; '
    'echo "transfer damaged: sha256 $got, expected $sum; removed, $p left as it was" >&2; exit 1; }; '
    'sync -- "$w"; chown -- "$owner:$group" "$w"; chmod -- "$mode" "$w"; mv -fT -- "$w" "$p"; trap - EXIT; '
    'rm -f -- "$t"; sync -- "$(dirname "$p")"; '
    'echo "$(stat -c "%%s %%Y %%i %%Z" -- "$p") $sum" > "$record.lf-new"; mv -fT -- "$record.lf-new" "$record"'
)


def put(remote: str, size: int, sha256: str, owner: str, group: str, mode: str) -> str:
    """The command that writes stdin to `remote` once exactly `size` bytes with `sha256` arrived."""
    return quote(PUT_SCRIPT, remote, size, sha256, owner, group, mode)


def resumable(t: Transfer) -> str:
    """The command that receives `t` from byte `t.offset` on (see RESUMABLE_SCRIPT)."""
    return quote(RESUMABLE_SCRIPT, t.partial, t.path, t.size, t.offset, t.sha256, t.owner, t.group, t.mode, t.record)
