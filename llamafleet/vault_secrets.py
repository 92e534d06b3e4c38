"""The vault passwords of a run, read from password files, password scripts, prompts and the environment as Ansible
reads them; kept in memory only."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import vault
from .errors import UsageError
from .vault import DEFAULT_ID, VaultError, VaultSecrets
from .yamlfile import printable, shorten

PROMPT_SOURCES = ("prompt", "prompt_ask_vault_pass")  # --vault-id [label@]prompt; the second is --ask-vault-pass
SCRIPT_TIMEOUT = 60  # seconds a password script may take (it may ask a keyring, or a person, first)
MAX_PASSWORD_FILE_BYTES = 1024 * 1024  # a password file is a line; this is far beyond any


@dataclass(frozen=True)
class _Source:
    """One place a password comes from: a file, a script or a prompt, under a vault id, and what gave it."""

    label: str
    where: str  # the flag or setting that named it, for messages
    path: str | None = None  # None: ask on the terminal
    ask_vault_pass: bool = False


def vault_secrets(
    password_files: Sequence[str] = (),
    vault_ids: Sequence[str] = (),
    ask_vault_pass: bool = False,
    *,
    environ: Mapping[str, str] | None = None,
    configured_password_file: str | None = None,
    configured_ids: Sequence[str] = (),
    prompt: Callable[[str], str] = getpass.getpass,
) -> VaultSecrets:
    """The passwords of --vault-password-file FILE (repeatable), --vault-id [LABEL@]FILE|prompt (repeatable) and
    --ask-vault-pass, with the environment's ANSIBLE_VAULT_IDENTITY_LIST and ANSIBLE_VAULT_PASSWORD_FILE (which
    beat the configured values, as in Ansible), read now, in Ansible's order: identity list, --vault-id, password
    files, the prompt. An executable file is run (no shell, no arguments; a `*-client` script gets
    `--vault-id LABEL`) and its output is the password. Raises VaultError (exit 2) naming the file and flag."""
    environ = os.environ if environ is None else environ
    if ask_vault_pass and password_files:
        raise UsageError("--ask-vault-pass and --vault-password-file cannot be used together (as in Ansible)")
    default_id = environ.get("ANSIBLE_VAULT_IDENTITY") or DEFAULT_ID
    sources = _sources(
        password_files, vault_ids, ask_vault_pass, environ, configured_password_file, configured_ids, default_id
    )
    passwords: list[tuple[str, bytes]] = []
    for source in sources:
        known = VaultSecrets(tuple(passwords), default_id)
        passwords.append((source.label, _read(source, known, prompt)))
    return VaultSecrets(tuple(passwords), default_id)


def _sources(
    password_files: Sequence[str],
    vault_ids: Sequence[str],
    ask_vault_pass: bool,
    environ: Mapping[str, str],
    configured_password_file: str | None,
    configured_ids: Sequence[str],
    default_id: str,
) -> list[_Source]:
    listed = environ.get("ANSIBLE_VAULT_IDENTITY_LIST")
    identity_list = [i.strip() for i in listed.split(",") if i.strip()] if listed else list(configured_ids)
    slugs = [(slug, "vault_identity_list") for slug in identity_list] + [(slug, "--vault-id") for slug in vault_ids]
    sources = [_parse_slug(slug, where, default_id) for slug, where in slugs]
    files = [(path, "--vault-password-file") for path in password_files]
    if environ.get("ANSIBLE_VAULT_PASSWORD_FILE"):
        files.append((environ["ANSIBLE_VAULT_PASSWORD_FILE"], "ANSIBLE_VAULT_PASSWORD_FILE"))
    elif configured_password_file:
        files.append((configured_password_file, "vault_password_file"))
    sources += [_Source(default_id, where, path) for path, where in files]
    if ask_vault_pass:
        sources.append(_Source(default_id, "--ask-vault-pass", ask_vault_pass=True))
    return sources


def _parse_slug(slug: str, where: str, default_id: str) -> _Source:
    """[LABEL@]FILE or [LABEL@]prompt; an empty label is the default one, as in Ansible. Messages name the file,
    and the flag with the label."""
    label, at, source = slug.partition("@")
    if not at:
        label, source = "", slug
    if not source:
        raise VaultError("expected [LABEL@]FILE or [LABEL@]prompt", where=f"{where} {printable(shorten(slug))}")
    if source in PROMPT_SOURCES:
        return _Source(label or default_id, f"{where} {printable(shorten(slug))}")
    return _Source(label or default_id, f"{where} {printable(shorten(label))}" if label else where, source)


def _read(source: _Source, known: VaultSecrets, prompt: Callable[[str], str]) -> bytes:
    if source.path is None:
        return _ask(source, prompt)
    path = Path(os.path.expandvars(source.path)).expanduser()
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError) as exc:
        problem = "not found" if isinstance(exc, FileNotFoundError) else f"cannot read: {_reason(exc)}"
        raise VaultError(f"vault password file {problem}", file=printable(str(path)), where=source.where) from None
    if stat.S_ISDIR(mode):
        raise VaultError("a vault password file cannot be a folder", file=printable(str(path)), where=source.where)
    if mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):  # any execute bit, as Ansible decides it is a script
        password = _run_script(path, source)
    else:
        password = _read_file(path, source, known)
    if not password:
        raise VaultError("the vault password is empty", file=printable(str(path)), where=source.where)
    return password


def _read_file(path: Path, source: _Source, known: VaultSecrets) -> bytes:
    """The file's content without surrounding white space; a password file may itself be a vault, opened with the
    passwords given before it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise VaultError(f"cannot read: {_reason(exc)}", file=printable(str(path)), where=source.where) from None
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        message = f"larger than {MAX_PASSWORD_FILE_BYTES // 1024} KiB: not a vault password file"
        raise VaultError(message, file=printable(str(path)), where=source.where)
    data = data.strip()
    if vault.is_vault(data):
        data = vault.open_bytes(data, known, printable(str(path)))
    return data.strip(b"\r\n")


def _run_script(path: Path, source: _Source) -> bytes:
    """The script's standard output without its line ends; its standard error and input stay the terminal's, so it
    can ask for something."""
    client = Path(path.name).stem.endswith("-client")  # Ansible's rule: a script that is told the vault id
    argv = [str(path.absolute())] + (["--vault-id", source.label] if client else [])
    file = printable(str(path))
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, timeout=SCRIPT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise VaultError(
            f"vault password script did not finish within {SCRIPT_TIMEOUT} s", file=file, where=source.where
        ) from None
    except OSError as exc:
        message = f"cannot run the vault password script: {_reason(exc)} (not a script? remove its execute bit)"
        raise VaultError(message, file=file, where=source.where) from None
    if client and done.returncode == 2:
        message = f"vault password client script has no password for vault id {source.label!r}"
        raise VaultError(message, file=file, where=source.where)
    if done.returncode < 0:
        message = f"vault password script was killed by signal {-done.returncode}"
        raise VaultError(message, file=file, where=source.where)
    if done.returncode != 0:
        raise VaultError(f"vault password script exited {done.returncode}", file=file, where=source.where)
    return done.stdout.strip(b"\r\n")


def _ask(source: _Source, prompt: Callable[[str], str]) -> bytes:
    question = "Vault password: " if source.ask_vault_pass else f"Vault password ({source.label}): "
    try:
        typed = prompt(question)
    except EOFError:
        raise VaultError("no vault password typed (end of input)", where=source.where) from None
    password = typed.encode("utf-8", "surrogateescape").strip()
    if not password:
        raise VaultError("the vault password typed is empty", where=source.where)
    return password


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
