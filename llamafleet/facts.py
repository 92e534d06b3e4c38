"""Facts: a shell snippet plus a pure parser of its output; many are gathered in one round trip."""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Any

from .shell import quote


class Fact:
    """What a host looks like in one respect. Subclasses set `command()` and `process(lines)`."""

    static = False  # true when nothing we apply can change it (OS release, architecture)

    def __init__(self, *args: Any) -> None:
        self.args = args

    @property
    def key(self) -> tuple:
        return (type(self).__name__, *map(_hashable, self.args))

    def command(self) -> str:
        raise NotImplementedError

    def process(self, lines: list[str]) -> Any:
        raise NotImplementedError

    def joins(self) -> bool:
        """Whether a batch may read this fact with the others of its kind, by one command (`together`)."""
        return False

    @classmethod
    def together(cls, facts: list[Fact]) -> str:
        """One command reading all of `facts` (of this kind, each joins()) at once, in fewer processes."""
        raise NotImplementedError

    @classmethod
    def apart(cls, facts: list[Fact], lines: list[str]) -> list[list[str]]:
        """together()'s output split into each fact's own: the lines its command prints alone (process() reads
        them as usual); ValueError when the output cannot be split."""
        raise NotImplementedError

    @classmethod
    def of_command(cls, command: str) -> Fact | None:
        """The fact of this kind whose command is exactly `command`, when a batch may join it; else None."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.args!r}"


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def batch_script(facts: list[Fact], token: str | None = None, *, at_once: bool = False) -> tuple[str, str]:
    """One shell script printing every fact's output between markers; returns (script, token).

    The facts run one after another, or with `at_once` each in a subshell of its own (a fact's `exit`
    ends that fact only) with its output kept in a private temporary folder: the batch then takes about
    as long as its slowest fact, not their sum (verify's probes wait; a run's facts are quick, and
    hundreds of processes at once cost a small host more than they save). Without a temporary folder
    they run one after another.
    """
    token = token or secrets.token_hex(6)
    lines = ["LC_ALL=C; export LC_ALL"]
    groups = [] if at_once else _groups(facts)
    joined = {index for group in groups for index in group}
    alone = [index for index in range(len(facts)) if index not in joined]
    lines += [f"_lf_fact{index}() {{ {facts[index].command()}\n}}" for index in alone]
    for number, group in enumerate(groups):
        members = [facts[index] for index in group]
        lines.append(f"_lf_factg{number}() {{ {type(members[0]).together(members)}\n}}")
    # The batch's own names start with _lf_: a fact's command runs in this shell and may set its own variables.
    order = sorted([*((index, str(index)) for index in alone), *((g[0], f"g{n}") for n, g in enumerate(groups))])
    each = f"for _lf_i in {' '.join(name for _, name in order)}; do"
    begin, end = f'echo "@{token} $_lf_i"', f"printf '\\n@{token} end %s\\n'"
    one_after_another = f"{each} {begin}; {{ _lf_fact$_lf_i; }} </dev/null 2>/dev/null; {end} $?; done"
    if not at_once:
        return "\n".join([*lines, one_after_another]) + "\n", token
    lines += [
        "if _lf_d=$(mktemp -d 2>/dev/null); then trap 'rm -rf \"$_lf_d\"' EXIT",
        f'{each} {{ (_lf_fact$_lf_i) </dev/null >"$_lf_d/$_lf_i" 2>/dev/null; echo $? >"$_lf_d/$_lf_i.rc"; }} & done',
        "wait",
        f'{each} {begin}; cat "$_lf_d/$_lf_i"; {end} "$(cat "$_lf_d/$_lf_i.rc")"; done',
        "else",
        one_after_another,
        "fi",
    ]
    return "\n".join(lines) + "\n", token


def parse_batch(facts: list[Fact], stdout: str, token: str) -> dict[tuple, Any]:
    """Split a batch script's output by its markers and run each fact's parser on its part."""
    return {fact.key: fact.process(lines) for fact, lines in split_batch(facts, stdout, token)}


def split_batch(facts: list[Fact], stdout: str, token: str) -> list[tuple[Fact, list[str]]]:
    """Each fact with its output lines, from a batch script's output; ValueError when one is missing."""
    pattern = re.compile(rf"^@{token} (g?\d+)\n(.*?)\n@{token} end (\d+)$", re.S | re.M)
    found: dict[str, list[str]] = {}
    for match in pattern.finditer(stdout):
        text = match.group(2)
        text = text[:-1] if text.endswith("\n") else text
        found[match.group(1)] = text.split("\n") if text else []
    by_index = {str(index): found[str(index)] for index in range(len(facts)) if str(index) in found}
    for number, group in enumerate(_groups(facts)):
        if f"g{number}" in found:
            members = [facts[index] for index in group]
            by_index.update(zip(map(str, group), type(members[0]).apart(members, found[f"g{number}"]), strict=True))
    missing = [fact for index, fact in enumerate(facts) if str(index) not in by_index]
    if missing:
        raise ValueError(f"fact output incomplete, missing {missing[0]!r}")
    return [(fact, by_index[str(index)]) for index, fact in enumerate(facts)]


def _groups(facts: list[Fact]) -> list[list[int]]:
    """The indexes of the facts a batch reads together, by kind (two or more of a kind that joins)."""
    kinds: dict[type, list[int]] = {}
    for index, fact in enumerate(facts):
        if fact.joins():
            kinds.setdefault(type(fact), []).append(index)
    return [group for group in kinds.values() if len(group) > 1]


def from_command(command: str) -> Fact:
    """The fact a remembered command reads: one a batch may join with others of its kind, else CommandOutput."""
    for kind in (PathInfo, DebPackages, SystemdUnit):
        fact = kind.of_command(command)
        if fact is not None:
            return fact
    return CommandOutput(command)


def _quoted_words(text: str) -> list[str] | None:
    try:
        return shlex.split(text)
    except ValueError:
        return None


class OsRelease(Fact):
    """Distribution, version, family and CPU architecture."""

    static = True

    def command(self) -> str:
        return "cat /etc/os-release; echo ARCH=$(uname -m); echo UID=$(id -u)"

    def process(self, lines: list[str]) -> dict[str, str]:
        data: dict[str, str] = {}
        for line in lines:
            key, sep, value = line.partition("=")
            if sep:
                data[key] = value.strip().strip('"')
        like = f"{data.get('ID', '')} {data.get('ID_LIKE', '')}".split()
        family = (
            "debian"
            if "debian" in like or "ubuntu" in like
            else "redhat"
            if {"rhel", "fedora", "centos"} & set(like)
            else "unknown"
        )
        return {
            "id": data.get("ID", "unknown"),
            "version_id": data.get("VERSION_ID", ""),
            "family": family,
            "arch": data.get("ARCH", "unknown"),
            "uid": data.get("UID", ""),
        }


@dataclass(frozen=True)
class FileState:
    """What is at a path: type (file, directory, link, other), mode, owner, group, size, sha256."""

    type: str
    mode: int
    owner: str
    group: str
    size: int
    sha256: str | None = None
    target: str | None = None


LARGE_FILE = 4 << 20  # bytes from which OpenSSL's faster hashing pays for its slower start


class PathInfo(Fact):
    """stat of a path (not following links), with the content's sha256 for regular files."""

    def __init__(self, path: str, checksum: bool = True) -> None:
        super().__init__(path, checksum)

    def command(self) -> str:
        path, checksum = self.args
        script = "s=$(stat -c '%%F|%%a|%%U|%%G|%%s' %s) && echo \"$s\" && if [ -L %s ]; then readlink %s; fi"
        text = quote(script, path, path, path)
        if checksum:
            # sha256sum starts faster, OpenSSL hashes faster (SHA extensions): the one that wins for the size.
            text += quote(
                ' && if [ -f %s ] && [ ! -L %s ]; then if [ "${s##*|}" -lt %s ]; then sha256sum %s; '
                "else openssl dgst -sha256 -r %s 2>/dev/null || sha256sum %s; fi; fi",
                path,
                path,
                LARGE_FILE,
                path,
                path,
                path,
            )
        return text

    def joins(self) -> bool:
        return not any(c in self.args[0] for c in "\n\\")  # names sha256sum would escape

    @classmethod
    def together(cls, facts: list[Fact]) -> str:
        """One stat of every path; each link read, each regular file hashed (by one sha256sum below LARGE_FILE):
        lines `S<stat>|<path>`, `L<link>` then `T<target>`, and the hashers' own lines."""
        paths = " ".join(shlex.quote(p) for p in dict.fromkeys(f.args[0] for f in facts))
        summed = "|".join(shlex.quote(p) for p in dict.fromkeys(f.args[0] for f in facts if f.args[1]))
        hashing = (
            f" 'regular file'|'regular empty file') case $_lf_n in {summed}) "
            f'if [ "$_lf_s" -lt {LARGE_FILE} ]; then set -- "$@" "$_lf_n"; '
            'else openssl dgst -sha256 -r "$_lf_n" 2>/dev/null || sha256sum "$_lf_n"; fi;; esac;;'
        )
        return (
            f"stat -c '%F|%a|%U|%G|%s|%n' -- {paths} 2>/dev/null | {{ set --\n"
            """while IFS= read -r _lf_l; do printf 'S%s\\n' "$_lf_l"; """
            "_lf_k=${_lf_l%%|*}; _lf_r=${_lf_l#*|*|*|*|}; _lf_s=${_lf_r%%|*}; _lf_n=${_lf_r#*|}; "
            """case $_lf_k in 'symbolic link') printf 'L%s\\n' "$_lf_n"; """
            """_lf_t=$(readlink -- "$_lf_n") && printf 'T%s\\n' "$_lf_t";;"""
            + (hashing if summed else "")
            + ' esac; done; [ $# -eq 0 ] || sha256sum -- "$@"; }'
        )

    @classmethod
    def apart(cls, facts: list[Fact], lines: list[str]) -> list[list[str]]:
        stats: dict[str, str] = {}
        targets: dict[str, str] = {}
        sums: dict[str, str] = {}
        link = None
        for line in lines:
            if line.startswith("S") and line.count("|") >= 5:
                *fields, name = line[1:].split("|", 5)
                stats[name] = "|".join(fields)
            elif line.startswith("L"):
                link = line[1:]
            elif line.startswith("T") and link is not None:
                targets[link] = line[1:]
            elif _HASHED.match(line):
                sums[line[66:]] = line
        outputs = []
        for fact in facts:
            path, checksum = fact.args
            if path not in stats:
                outputs.append([])
                continue
            kind = stats[path].split("|")[0]
            extra = targets.get(path) if kind == "symbolic link" else None
            if checksum and kind in ("regular file", "regular empty file"):
                extra = sums.get(path)
            outputs.append([stats[path]] if extra is None else [stats[path], extra])
        return outputs

    @classmethod
    def of_command(cls, command: str) -> Fact | None:
        match = re.match(r"s=\$\(stat -c '%F\|%a\|%U\|%G\|%s' (.+?)\) && echo", command)
        words = _quoted_words(match.group(1)) if match else None
        if not words or len(words) != 1:
            return None
        return next((f for f in (cls(words[0]), cls(words[0], False)) if f.command() == command and f.joins()), None)

    def process(self, lines: list[str]) -> FileState | None:
        if not lines or lines[0].count("|") != 4:
            return None
        kind, mode, owner, group, size = lines[0].split("|")
        kinds = {
            "regular file": "file",
            "regular empty file": "file",
            "directory": "directory",
            "symbolic link": "link",
        }
        kind = kinds.get(kind, "other")
        target = lines[1] if kind == "link" and len(lines) > 1 else None
        sha = lines[1].split()[0].lstrip("*") if kind == "file" and len(lines) > 1 and lines[1] else None
        return FileState(kind, int(mode, 8), owner, group, int(size), sha, target)


_HASHED = re.compile(r"^[0-9a-f]{64} [ *]")  # a line of sha256sum or of `openssl dgst -r`: hash, mark, path


class FileContent(Fact):
    """A small text file's content (None when absent)."""

    def command(self) -> str:
        return quote("if [ -f %s ]; then echo present; cat %s; fi", self.args[0], self.args[0])

    def process(self, lines: list[str]) -> str | None:
        return "\n".join(lines[1:]) if lines and lines[0] == "present" else None


class DebPackages(Fact):
    """Installed versions of the named Debian packages ({} entries absent when not installed)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(tuple(sorted(names)))

    def command(self) -> str:
        return (
            quote("dpkg-query -W -f='${Package}|${db:Status-Abbrev}|${Version}\\n'")
            + " -- "
            + " ".join(quote("%s", n) for n in self.args[0])
        )

    def joins(self) -> bool:
        return all(re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", name) for name in self.args[0])  # no arch, no pattern

    @classmethod
    def together(cls, facts: list[Fact]) -> str:
        return cls(sorted({name for fact in facts for name in fact.args[0]})).command()

    @classmethod
    def apart(cls, facts: list[Fact], lines: list[str]) -> list[list[str]]:
        return [[line for line in lines if line.split("|")[0] in fact.args[0]] for fact in facts]

    @classmethod
    def of_command(cls, command: str) -> Fact | None:
        prefix = cls([]).command()
        words = _quoted_words(command[len(prefix) :]) if command.startswith(prefix) else None
        fact = cls(words) if words else None
        return fact if fact is not None and fact.command() == command and fact.joins() else None

    def process(self, lines: list[str]) -> dict[str, str]:
        found = {}
        for line in lines:
            parts = line.split("|")
            if len(parts) == 3 and parts[1][1:2] == "i":  # ii, hi (held): installed
                found[parts[0].split(":")[0]] = parts[2]
        return found


class RpmPackages(Fact):
    """Installed versions of the named RPM packages."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(tuple(sorted(names)))

    def command(self) -> str:
        return "rpm -q --qf '%{NAME}|%{VERSION}-%{RELEASE}\\n' -- " + " ".join(quote("%s", n) for n in self.args[0])

    def process(self, lines: list[str]) -> dict[str, str]:
        return dict(line.split("|", 1) for line in lines if line.count("|") == 1)


class Passwd(Fact):
    """A user's passwd entry as a dict, or None."""

    def command(self) -> str:
        return quote("getent passwd -- %s", self.args[0])

    def process(self, lines: list[str]) -> dict[str, str] | None:
        if not lines or lines[0].count(":") != 6:
            return None
        name, _, uid, gid, comment, home, shell = lines[0].split(":")
        return {"name": name, "uid": uid, "gid": gid, "comment": comment, "home": home, "shell": shell}


class SystemdUnit(Fact):
    """systemctl show of a unit: LoadState, ActiveState, SubState, UnitFileState, FragmentPath."""

    def command(self) -> str:
        props = "LoadState,ActiveState,SubState,UnitFileState,FragmentPath,NeedDaemonReload"
        return quote("systemctl show --no-pager -p %s %s", props, self.args[0])

    def joins(self) -> bool:
        return re.fullmatch(r"[A-Za-z0-9:_.@-]+\.[a-z]+", self.args[0]) is not None  # a valid unit name

    @classmethod
    def together(cls, facts: list[Fact]) -> str:
        """One systemctl show of every unit: one block each, in the order named, blocks parted by an empty line."""
        units = list(dict.fromkeys(fact.args[0] for fact in facts))
        return cls(units[0]).command() + "".join(quote(" %s", unit) for unit in units[1:])

    @classmethod
    def apart(cls, facts: list[Fact], lines: list[str]) -> list[list[str]]:
        units = list(dict.fromkeys(fact.args[0] for fact in facts))
        blocks: list[list[str]] = [[]]
        for line in lines:
            if line:
                blocks[-1].append(line)
            else:
                blocks.append([])
        if len(blocks) != len(units):
            raise ValueError(f"systemctl show gave {len(blocks)} block(s) for {len(units)} unit(s)")
        by_unit = dict(zip(units, blocks, strict=True))
        return [by_unit[fact.args[0]] for fact in facts]

    @classmethod
    def of_command(cls, command: str) -> Fact | None:
        words = _quoted_words(command)
        fact = cls(words[-1]) if words and len(words) == 6 else None
        return fact if fact is not None and fact.command() == command and fact.joins() else None

    def process(self, lines: list[str]) -> dict[str, str]:
        return dict(line.split("=", 1) for line in lines if "=" in line)


class CommandOutput(Fact):
    """The output lines of an arbitrary read-only command (the caller quotes it)."""

    def command(self) -> str:
        return self.args[0]

    def process(self, lines: list[str]) -> list[str]:
        return lines
