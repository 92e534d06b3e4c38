"""Seeding the workers' RPC tensor caches from the model, so the head's first load sends hashes, not weights.

rpc-server (started with -c) looks a weight tensor larger than 10 MiB up in its cache directory under the
16 lowercase hex digits of FNV-1a-64 over the tensor's bytes; the head sends that hash first and the data
only on a miss. The controller reads the GGUF header, hashes each large tensor once (fnv-c: C, about
350 MB/s, against 13 MB/s in pure Python; results kept in the controller cache per model sha256) and
streams exactly those byte ranges into each worker's cache: a worker needs neither the GGUF file nor a
hasher of its own. The entries are written and removed by the cache's owner, never by root (see cachedir).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import fnv_c

from llamafleet import paths
from llamafleet.controller_cache import cache_root, private_dir
from llamafleet.facts import CommandOutput, FileContent
from llamafleet.operations.base import Change, Facts, Feed, NoChange, Operation, Shell, Upload
from llamafleet.shell import quote

from . import cachedir, layout

THRESHOLD = 10 << 20  # rpc-server caches tensors strictly larger than this (HASH_THRESHOLD)
SEEDED_DIR = f"{paths.STATE_DIR}/rpc-seeded"  # one file per seeded model sha256: its entry names
ENTRY = r"[0-9a-f]{16}"


@dataclass(frozen=True)
class Entry:
    """One cache entry: its name (FNV-1a-64 of the bytes) and where the bytes lie on the controller."""

    name: str
    source: Path
    offset: int
    size: int


def entries(model) -> tuple[Entry, ...]:
    """The cache entries of every tensor over 10 MiB of `model`, hashed once per model (kept in the cache)."""
    record = private_dir(cache_root() / "tensors") / f"{model.sha256}.json"
    try:
        saved = json.loads(record.read_text())
        return tuple(Entry(n, model.parts[i].path, o, s) for i, n, o, s in saved)
    except (OSError, ValueError, TypeError, IndexError):
        pass
    found, seen = [], set()
    for index, part in enumerate(model.parts):
        for name, offset, size in _hashed(part.path):
            if name not in seen:  # identical tensors share one entry
                seen.add(name)
                found.append((index, name, offset, size))
    record.write_text(json.dumps(found))
    return tuple(Entry(n, model.parts[i].path, o, s) for i, n, o, s in found)


def _hashed(path: Path) -> list[tuple[str, int, int]]:
    large = [t for t in layout.tensors(path) if t.size > THRESHOLD]
    found = []
    with path.open("rb") as handle:
        for tensor in large:  # one tensor in memory at a time
            handle.seek(tensor.offset)
            found.append((f"{fnv_c.fnv1a_64(handle.read(tensor.size)):016x}", tensor.offset, tensor.size))
    return found


def seeded(model, found: tuple[Entry, ...], user: str) -> Operation:
    """Every large tensor of `model` is in the worker's RPC cache (by name and size), and the worker records
    which entries are the model's (pruning keeps them while the model is kept)."""
    listing = CommandOutput(quote("find %s -maxdepth 1 -type f -printf '%%f %%s\\n' 2>/dev/null || true", CACHE))
    record = f"{SEEDED_DIR}/{model.sha256}"
    names = "".join(f"{e.name}\n" for e in found)
    recorded = FileContent(record)

    def plan(facts: Facts):
        present = _sizes(facts[listing])
        missing = [e for e in found if present.get(e.name) != e.size]
        steps: list = [Shell(quote("install -d -m 0700 %s", SEEDED_DIR))] if facts[recorded] is None else []
        if facts[recorded] != names.rstrip("\n"):
            steps.append(Upload(record, names.encode(), "0600"))
        if not missing and not steps:
            return NoChange(f"{len(found)} cache entries of {model.name} present")
        for source in dict.fromkeys(e.source for e in missing):
            steps.insert(0, feed(CACHE, user, [e for e in missing if e.source == source]))
        total = sum(e.size for e in missing)
        return Change(tuple(steps), f"{len(missing)} of {len(found)} entries missing ({total / 1e6:.1f} MB)")

    return Operation(f"rpc cache seeded with {model.name}", [listing, recorded], plan)


CACHE = paths.RPC_CACHE_DIR


def feed(cache: str, user: str, batch: list[Entry]) -> Feed:
    """Entries of one controller file streamed into `cache`, written by its owner (`user`'s, when made here)."""
    pairs = [str(v) for e in batch for v in (e.name, e.size)]
    return Feed(cachedir.write_command(cache, user, pairs), batch[0].source, tuple((e.offset, e.size) for e in batch))


def _sizes(lines: list[str]) -> dict[str, int]:
    found = {}
    for line in lines:
        name, _, size = line.partition(" ")
        if size.isdigit():
            found[name] = int(size)
    return found


def cache_pruned(model, current: tuple[Entry, ...], keep_models: int, max_size: int | None) -> Operation:
    """The cache holds the entries of the deployed model and of the keep_models - 1 models seeded before it, and
    (with rpc_cache_max_size) no more bytes than that allows, the oldest entries of other models going first."""
    listing = CommandOutput(
        quote("find %s -maxdepth 1 -type f -printf '%%T@ %%f %%s\\n' 2>/dev/null || true", CACHE)
        + quote("; echo records; ls -t -- %s 2>/dev/null | while read -r f; do echo \"@$f\"; cat -- %s/\"$f\"; done",
                SEEDED_DIR, SEEDED_DIR)
    )  # fmt: skip
    wanted = {e.name for e in current}

    def plan(facts: Facts):
        files, records = _cache_state(facts[listing])
        earlier = [(sha, names) for sha, names in records if sha != model.sha256]
        kept = wanted.union(*(names for _, names in earlier[: keep_models - 1]))
        doomed = [name for _, name, _ in files if name not in kept]
        total = sum(size for _, name, size in files if name in kept)
        for _, name, size in sorted(f for f in files if f[1] in kept - wanted):  # oldest first
            if max_size is None or total <= max_size:
                break
            doomed.append(name)
            total -= size
        stale = [sha for sha, _ in earlier[keep_models - 1 :]]
        if not doomed and not stale:
            return NoChange(f"{len(files)} cache entries ({total / 1e6:.1f} MB), all of kept models")
        steps = [Shell(cachedir.remove_command(CACHE, doomed))] if doomed else []
        if stale:  # root's own records
            steps.append(Shell(quote("rm -f --" + " %s" * len(stale), *(f"{SEEDED_DIR}/{sha}" for sha in stale))))
        why = f"{len(doomed)} cache entries of models no longer deployed or over rpc_cache_max_size"
        return Change(tuple(steps), why)

    return Operation("rpc cache holds the kept models only", [listing], plan)


def parse_size(text: str | None) -> int | None:
    """rpc_cache_max_size (20G, 512M, 1024) in bytes; None for unbounded."""
    if not text:
        return None
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    unit = text[-1].upper() if text[-1].isalpha() else ""
    return int(text[: -1 if unit else None]) * units[unit]


def _cache_state(lines: list[str]) -> tuple[list[tuple[float, str, int]], list[tuple[str, list[str]]]]:
    """(mtime, name, size) of cache files (temporary ones too), and (model sha256, names) records, newest first."""
    files, records = [], []
    in_records = False
    for line in lines:
        if line == "records":
            in_records = True
        elif in_records and line.startswith("@"):
            records.append((line[1:], []))
        elif in_records and records:
            records[-1][1].append(line.strip())
        elif not in_records and line.count(" ") == 2:
            stamp, name, size = line.split(" ")
            if size.isdigit():
                files.append((float(stamp), name, int(size)))
    return files, records
