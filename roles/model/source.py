"""What `--model` names, made into checked GGUF files on the controller: a path, an http(s) URL or hf://."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from llamafleet import download, redaction
from llamafleet.controller_cache import known_sha256
from llamafleet.errors import UsageError

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
# The file keeps its name on the hosts (it names the model in /v1/models unless an alias is set).
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.gguf")
# A model split by gguf-split: NAME-00001-of-00003.gguf, ... ; the first part is the one to name.
SPLIT = re.compile(r"(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf")
HUB = "https://huggingface.co"  # $HF_ENDPOINT replaces it (a mirror, or a test server)
HF_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ALIAS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+/-]{0,127}")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Part:
    """One GGUF file on the controller, checked and hashed."""

    path: Path
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Model:
    """The model deploy hands over: one file, or every part of a split model, in order."""

    parts: tuple[Part, ...]
    alias: str | None = None

    @property
    def name(self) -> str:
        """The first part's name: what llama-server is given (it finds the other parts beside it)."""
        return self.parts[0].name

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def sha256(self) -> str:
        """The file's sha256; for a split model, the sha256 of its parts' sha256 lines."""
        if len(self.parts) == 1:
            return self.parts[0].sha256
        return hashlib.sha256("".join(f"{p.sha256}  {p.name}\n" for p in self.parts).encode()).hexdigest()


@dataclass(frozen=True)
class Deploying:
    """deploy's parameter to its roles: the model the run deploys (None in a run that deploys none)."""

    model: Model | None = None


def resolve(source: str, *, sha256: str | None = None, alias: str | None = None, progress: bool = True) -> Model:
    """The model behind --model, downloaded when it is a URL; refused before any byte reaches a host."""
    if sha256 is not None and not SHA256.fullmatch(sha256):
        raise UsageError(f"--sha256: {sha256!r} is not 64 hexadecimal digits")
    if alias is not None and not ALIAS.fullmatch(alias):
        raise UsageError(f"--alias: {alias!r}: use letters, digits and _ . : + / - (at most 128)")
    if source.startswith("hf://"):
        url, headers = hub_url(source)
        parts = _download_parts(url, headers, progress)
    elif source.startswith(("http://", "https://")):
        parts = _download_parts(source, {}, progress)
    elif "://" in source:
        shown = redaction.url_shown(source)
        raise UsageError(f"--model: {shown!r}: use a file, an http(s):// URL or hf://owner/repo/file.gguf")
    else:
        parts = _local_parts(Path(source).expanduser())
    model = Model(parts, alias)
    if sha256 is not None and sha256.lower() != parts[0].sha256:
        raise UsageError(
            f"--model: {parts[0].name} has sha256 {parts[0].sha256}, not the --sha256 given ({sha256.lower()}); "
            "nothing was sent"
        )
    return model


def hub_url(source: str) -> tuple[str, dict[str, str]]:
    """hf://owner/repo/path/file.gguf -> the hub's download URL, and the bearer header when HF_TOKEN is set."""
    owner, _, rest = source[len("hf://") :].partition("/")
    repo, _, file = rest.partition("/")
    folders = file.split("/")
    if not (HF_REPO_PART.fullmatch(owner) and HF_REPO_PART.fullmatch(repo) and file):
        raise UsageError(f"--model: {source!r} is not hf://owner/repo/file.gguf")
    if any(not HF_REPO_PART.fullmatch(folder) for folder in folders):
        raise UsageError(f"--model: {source!r}: the path in the repository has an unusable part")
    endpoint = os.environ.get("HF_ENDPOINT") or HUB
    token = os.environ.get("HF_TOKEN", "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return f"{endpoint.rstrip('/')}/{owner}/{repo}/resolve/main/{file}", headers


def split_names(name: str, label: str) -> list[str]:
    """Every part's file name of a split model (the name itself when it is not split)."""
    if not MODEL_NAME.fullmatch(name):
        raise UsageError(f"--model: {label}: the file name must end in .gguf and use letters, digits, _ . + -")
    match = SPLIT.fullmatch(name)
    if match is None:
        return [name]
    index, count = int(match["index"]), int(match["count"])
    if index != 1 or count < 1:
        raise UsageError(f"--model: {label} is part {index} of {count}: name the first part (-00001-of-...)")
    return [f"{match['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def check_gguf(first: bytes, label: str) -> None:
    """Refuse what is not GGUF (magic and version), with a clear message."""
    version = int.from_bytes(first[4:8], "little") if len(first) >= 8 else None
    if first[:4] != GGUF_MAGIC or version not in GGUF_VERSIONS:
        raise UsageError(f"--model: {label} is not a GGUF file (version 2 or 3); nothing was sent")


def _local_parts(path: Path) -> tuple[Part, ...]:
    names = split_names(path.name, str(path))
    parts = []
    for name in names:
        file = path.with_name(name)
        if not file.is_file():
            raise UsageError(f"--model: no such file: {file}")
        with file.open("rb") as handle:
            check_gguf(handle.read(8), str(file))
        parts.append(Part(file, name, file.stat().st_size, known_sha256(file)))
    return tuple(parts)


def _download_parts(url: str, headers: dict[str, str], progress: bool) -> tuple[Part, ...]:
    """Each part of the model `url` names, fetched as named: its query is kept (a presigned URL's signature),
    and only the file name changes from part to part. Messages show the URL without its user and query."""
    shown = redaction.url_shown(url)
    try:
        address = urlsplit(url)._replace(fragment="")
        address.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:  # its reason may quote a piece of the password
        raise UsageError(f"--model: {shown!r} is not a valid URL (its host or port cannot be read)") from None
    if "@" in address.path:  # http://user:pa/ss@host/... names host "user": never guess, never fetch
        raise UsageError(
            f"--model: {shown!r}: an '@' after the host name; write '/', '?', '#' and '@' in a user or password "
            "as %2F, %3F, %23 and %40"
        )
    folder, _, name = address.path.rpartition("/")
    parts = []
    for part_name in split_names(name, shown):
        part_url = urlunsplit(address._replace(path=f"{folder}/{part_name}"))
        target = download.slot(part_url) / part_name
        check = functools.partial(check_gguf, label=redaction.url_shown(part_url))
        digest = download.fetch(part_url, target, headers=headers, check=check, progress=progress)
        parts.append(Part(target, part_name, target.stat().st_size, digest))
    return tuple(parts)
