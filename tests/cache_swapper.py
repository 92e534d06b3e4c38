"""A hostile owner of the RPC cache, for the seeding race tests: swaps every temporary file that appears in its
directory for a symlink to a canary file, and plants symlinks at the names of the entries to come.

It is the compromised rpc-server of issue 18: it runs as the service user (the cache's owner), in Perl (every
Debian host has perl-base; the lab hosts have no Python), busy-looping without a fork so it wins the race
between the writer's `mktemp` and its next command. It prints the number of swaps when it ends (after
`seconds`, or on SIGTERM). Canaries are files whose owner, mode and content must never change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

# Arguments: the cache directory, seconds to run, then canaries: NAME=PATH is the canary for the temporary files of
# entry NAME (a canary of the entry's size passes the old writer's size check) and is planted at NAME; a bare PATH
# serves any other temporary file, in turn.
SWAPPER = r"""
use strict; use warnings;
my ($dir, $seconds, @targets) = @ARGV;
my (%for, @any);
for (@targets) { if (/^([0-9a-f]{16})=(.+)$/) { $for{$1} = $2; push @any, $2 } else { push @any, $_ } }
my ($swaps, $i, $stop) = (0, 0, 0);
$SIG{TERM} = sub { $stop = 1 };
$| = 1;
for my $name (keys %for) {
    symlink($for{$name}, "$dir/$name");
    symlink($for{$name}, "$dir/.$name.planted");
}
print "planted\n";
my $end = time + $seconds;
while (!$stop && time < $end) {
    opendir(my $handle, $dir) or last;
    my @names = grep { /^\.[^.]/ && !/\.planted$/ } readdir($handle);
    closedir($handle);
    for my $name (@names) {
        my $path = "$dir/$name";
        next if -l $path || !-f _;
        my ($entry) = $name =~ /^\.([0-9a-f]{16})\./;
        my $target = (defined $entry && $for{$entry}) || $any[$i++ % @any];
        unlink($path) and symlink($target, $path) and $swaps++;
    }
}
print "swaps $swaps\n";
"""


@dataclass(frozen=True)
class Canary:
    """What must not change about a file: owner, group, mode and the sha256 of its content."""

    path: str
    uid: int
    gid: int
    mode: int
    sha256: str


def canary(path: Path) -> Canary:
    """The state of a local file now."""
    stat = os.lstat(path)
    return Canary(
        str(path), stat.st_uid, stat.st_gid, stat.st_mode & 0o7777, hashlib.sha256(path.read_bytes()).hexdigest()
    )


# On a remote host: one line per path, "PATH UID GID MODE SHA256" (lstat; octal mode), read with parse_states.
STATES = 'for p in "$@"; do echo "$p $(stat -c \'%u %g %a\' -- "$p") $(sha256sum < "$p" | cut -d" " -f1)"; done'


def parse_states(text: str) -> dict[str, Canary]:
    found = {}
    for line in text.splitlines():
        path, uid, gid, mode, sha = line.split()
        found[path] = Canary(path, int(uid), int(gid), int(mode, 8), sha)
    return found


def swaps(output: str) -> int:
    """The number of temporary files the swapper replaced, from what it printed."""
    lines = [line for line in output.splitlines() if line.startswith("swaps ")]
    return int(lines[-1].split()[1]) if lines else -1
