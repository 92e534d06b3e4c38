"""Facts of role model: a model file's sha256 (recorded, re-hashed only when the file changed), partial transfers,
free disk, memory."""

from __future__ import annotations

from dataclasses import dataclass

from llamafleet.facts import Fact
from llamafleet.shell import quote

# The recorded line is "SIZE MTIME INODE CTIME SHA256": while the first four match the file, it was not rewritten
# (ctime moves on every write, chmod or rename, and cannot be set back), so its sha256 is still the recorded one.
STAT_FORMAT = "%s %Y %i %Z"
_MODEL_FILE = (
    "p=%s; r=%s; t=%s; "
    'if [ -f "$p" ] && [ ! -L "$p" ]; then s=$(stat -c %s -- "$p"); echo "file $s $(stat -c "%%a %%U %%G" -- "$p")"; '
    'line=$(cat -- "$r" 2>/dev/null || true); case "$line" in "$s "*) echo "recorded ${line##* }";; '
    '*) echo "hashed $( (openssl dgst -sha256 -r "$p" 2>/dev/null || sha256sum "$p") | cut -d" " -f1)";; esac; fi; '
    'echo "partial $( { stat -c %%s -- "$t" "$t".* 2>/dev/null; echo 0; } | sort -n | tail -n 1)"'
)


@dataclass(frozen=True)
class ModelFileState:
    """A model file on a host: its sha256 (and whether it came from the record), mode, owner; bytes of a partial."""

    sha256: str | None
    recorded: bool
    mode: int | None
    owner: str | None
    group: str | None
    partial: int


class ModelFile(Fact):
    """A model file, the record of its sha256 and its partial transfer in .incoming/."""

    def __init__(self, path: str, record: str, partial: str) -> None:
        super().__init__(path, record, partial)

    def command(self) -> str:
        path, record, partial = self.args
        return quote(_MODEL_FILE, path, record, partial, STAT_FORMAT)

    def process(self, lines: list[str]) -> ModelFileState:
        fields = dict(line.split(" ", 1) for line in lines if " " in line)
        partial = int(fields["partial"]) if fields.get("partial", "").isdigit() else 0
        stat = fields.get("file", "").split()
        if len(stat) != 7:
            return ModelFileState(None, False, None, None, None, partial)
        sha = fields.get("recorded") or fields.get("hashed") or ""
        sha = sha if len(sha) == 64 else None
        return ModelFileState(sha, "recorded" in fields, int(stat[4], 8), stat[5], stat[6], partial)


class FreeBytes(Fact):
    """Bytes free for an unprivileged writer on the filesystem of a directory (df), None when unknown."""

    def command(self) -> str:
        return quote("df -P -B1 -- %s | tail -n 1", self.args[0])

    def process(self, lines: list[str]) -> int | None:
        fields = lines[-1].split() if lines else []
        return int(fields[3]) if len(fields) >= 4 and fields[3].isdigit() else None


SERVICES = "llama-server,ggml-rpc-server,rpc-server"
SUM = "awk '{s+=$1} END {print s+0}'"


class Memory(Fact):
    """MemTotal and MemAvailable in bytes, and what llama.cpp's own services hold now (freed when they restart)."""

    def command(self) -> str:
        return f"grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; echo held $(ps -C {SERVICES} -o rss= | {SUM})"

    def process(self, lines: list[str]) -> dict[str, int]:
        found = {}
        for line in lines:
            parts = line.replace(":", " ").split()
            if len(parts) >= 2 and parts[1].isdigit():
                found[parts[0]] = int(parts[1]) * 1024
        return {
            "total": found.get("MemTotal", 0),
            "available": found.get("MemAvailable", 0),
            "held": found.get("held", 0),
        }
