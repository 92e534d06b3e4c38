"""Facts: a shell snippet plus a pure parser of its output; many are gathered in one round trip."""

from __future__ import annotations

import re
import secrets
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
    lines += [f"_lf_fact{index}() {{ {fact.command()}\n}}" for index, fact in enumerate(facts)]
    # The batch's own names start with _lf_: a fact's command runs in this shell and may set its own variables.
    each = f"for _lf_i in {' '.join(str(i) for i in range(len(facts)))}; do"
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
    pattern = re.compile(rf"^@{token} (\d+)\n(.*?)\n@{token} end (\d+)$", re.S | re.M)
    found: dict[int, list[str]] = {}
    for match in pattern.finditer(stdout):
        text = match.group(2)
        text = text[:-1] if text.endswith("\n") else text
        found[int(match.group(1))] = text.split("\n") if text else []
    missing = [fact for index, fact in enumerate(facts) if index not in found]
    if missing:
        raise ValueError(f"fact output incomplete, missing {missing[0]!r}")
    return [(fact, found[index]) for index, fact in enumerate(facts)]


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

    def process(self, lines: list[str]) -> dict[str, str]:
        return dict(line.split("=", 1) for line in lines if "=" in line)


class CommandOutput(Fact):
    """The output lines of an arbitrary read-only command (the caller quotes it)."""

    def command(self) -> str:
        return self.args[0]

    def process(self, lines: list[str]) -> list[str]:
        return lines
