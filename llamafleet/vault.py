"""Ansible Vault, formats 1.1 and 1.2 (AES256): vaults opened in memory with the run's passwords, never written or
shown; what comes out of one is marked, so that listings show it as (vault)."""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from typing import Any

from .errors import InventoryError

HEADER = b"$ANSIBLE_VAULT"
VERSIONS = ("1.1", "1.2")  # 1.2 names a vault id in the header; the encryption is the same
CIPHER = "AES256"  # the only cipher ansible-vault writes or reads
DEFAULT_ID = "default"  # Ansible's vault id for a password given without one, and for a 1.1 vault
# The format, as ansible-core writes it: PBKDF2-HMAC-SHA256 over the password and salt gives an AES-256 key, an
# HMAC-SHA256 key and the counter's initial block; the plaintext, PKCS7-padded, is encrypted with AES-256-CTR;
# the HMAC covers the ciphertext. The body is hex of "hex(salt)\nhex(hmac)\nhex(ciphertext)".
KDF_ITERATIONS = 10_000
KEY_BYTES = 32
COUNTER_BYTES = 16  # AES's block size
HMAC_BYTES = 32
SHOWN = "(vault)"  # what a listing shows instead of a value that came out of a vault
NO_SECRETS = "vaulted, give --vault-password-file/--vault-id/--ask-vault-pass"


class VaultError(InventoryError):
    """A vault that cannot be opened (no password, a wrong one, damaged data) or a password that cannot be read."""


class Damaged(ValueError):
    """The text is not a well-formed vault; the message says what is wrong with it."""


@dataclass(frozen=True)
class VaultSecrets:
    """The run's vault passwords, each with its vault id, in the order they were given; never shown in a repr."""

    passwords: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    default_id: str = DEFAULT_ID

    def __bool__(self) -> bool:
        return bool(self.passwords)

    def ids(self) -> list[str]:
        """The vault ids given, each once, in order."""
        return list(dict.fromkeys(label for label, _ in self.passwords))

    def for_vault(self, vault_id: str | None) -> list[bytes]:
        """The passwords to try on a vault: those given for its vault id first, then the others. Ansible tries
        every password too: the id in a vault's header is not protected, it only says which to try first."""
        wanted = vault_id or self.default_id
        first = [password for label, password in self.passwords if label == wanted]
        return first + [password for label, password in self.passwords if label != wanted]


@dataclass(frozen=True)
class Envelope:
    """A vault taken apart: the vault id its header names (1.2), the salt, the HMAC and the ciphertext."""

    vault_id: str | None
    salt: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class Sealed:
    """An inline `!vault` value as YAML gives it, not opened yet: its text and the line it starts on."""

    text: str = field(repr=False)
    line: int


class Vaulted:
    """Marks a value that came out of a vault; it is otherwise the value itself (a str, an int, a float)."""

    __slots__ = ()


class VaultedStr(str, Vaulted):
    __slots__ = ()

    def __repr__(self) -> str:  # a message that quotes a value with !r shows the marker, not the secret
        return repr(SHOWN)


class VaultedInt(int, Vaulted):
    __slots__ = ()


class VaultedFloat(float, Vaulted):
    __slots__ = ()


_MARKED = {str: VaultedStr, int: VaultedInt, float: VaultedFloat}  # exact types: a bool cannot be marked


def is_vault(data: bytes | str) -> bool:
    """Whether `data` is a vault: it starts with $ANSIBLE_VAULT, as Ansible decides."""
    return (data.encode("utf-8", "replace") if isinstance(data, str) else data).startswith(HEADER)


def parse(data: bytes) -> Envelope:
    """The parts of a vault, as ansible-core reads them: the header line, then the body's lines joined.
    Raises Damaged."""
    lines = data.splitlines() or [b""]
    header = [part.strip() for part in lines[0].strip().split(b";")]
    if header[0] != HEADER or len(header) not in (3, 4):
        raise Damaged("the first line is not $ANSIBLE_VAULT;1.1;AES256 or $ANSIBLE_VAULT;1.2;AES256;ID")
    version, cipher = (part.decode("ascii", "replace") for part in header[1:3])
    if version not in VERSIONS:
        raise Damaged(f"format version {version[:10]!r} is not one of {', '.join(VERSIONS)}")
    if cipher != CIPHER:
        raise Damaged(f"cipher {cipher[:20]!r} is not {CIPHER}, the one ansible-vault uses")
    vault_id = header[3].decode("utf-8", "replace") if len(header) == 4 else None
    try:
        salt, mac, ciphertext = binascii.unhexlify(b"".join(lines[1:])).split(b"\n", 2)
        salt, mac, ciphertext = (binascii.unhexlify(part) for part in (salt, mac, ciphertext))
    except ValueError:  # binascii.Error is one; so is a body with fewer than three parts
        raise Damaged("the body is not the hexadecimal salt, HMAC and ciphertext ansible-vault writes") from None
    if not salt or len(mac) != HMAC_BYTES:
        raise Damaged("the salt or the HMAC is missing or cut")
    if not ciphertext or len(ciphertext) % COUNTER_BYTES:
        raise Damaged(f"the ciphertext is cut ({len(ciphertext)} bytes, not whole blocks of {COUNTER_BYTES})")
    return Envelope(vault_id, salt, mac, ciphertext)


def decrypt(envelope: Envelope, password: bytes) -> bytes | None:
    """The plaintext, or None when the HMAC shows that `password` is not this vault's (checked, in constant
    time, before anything is decrypted). Raises Damaged when a vault whose HMAC holds has a wrong padding."""
    # The cipher's library (paramiko's dependency) is loaded only when a vault is met.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, hmac, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    material = PBKDF2HMAC(hashes.SHA256(), 2 * KEY_BYTES + COUNTER_BYTES, envelope.salt, KDF_ITERATIONS)
    keys = material.derive(password)
    aes_key, mac_key, counter = keys[:KEY_BYTES], keys[KEY_BYTES : 2 * KEY_BYTES], keys[2 * KEY_BYTES :]
    check = hmac.HMAC(mac_key, hashes.SHA256())
    check.update(envelope.ciphertext)
    try:
        check.verify(envelope.mac)
    except InvalidSignature:
        return None
    decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(counter)).decryptor()
    padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(COUNTER_BYTES * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise Damaged("its padding is wrong once decrypted (not written by ansible-vault)") from None


def open_bytes(
    data: bytes, secrets: VaultSecrets | None, file: str, line: int | None = None, key: str | None = None
) -> bytes:
    """The plaintext of the vault `data`; VaultError (exit 2) naming `file`, `line` and `key` when no password was
    given, none opens it, or it is damaged."""
    if not secrets:
        raise VaultError(NO_SECRETS, file=file, key=key, line=line)
    try:
        envelope = parse(data)
        for password in secrets.for_vault(envelope.vault_id):
            plaintext = decrypt(envelope, password)
            if plaintext is not None:
                return plaintext
    except Damaged as exc:
        raise VaultError(f"damaged vault: {exc}", file=file, key=key, line=line) from None
    given = f"{len(secrets.passwords)} vault password(s) given (vault ids {', '.join(secrets.ids())})"
    own = f"vault id {envelope.vault_id or secrets.default_id}"
    message = (
        f"cannot decrypt: none of the {given} opens this vault ({own}): a wrong password, or the vault was altered"
    )
    raise VaultError(message, file=file, key=key, line=line)


def open_sealed(data: Any, secrets: VaultSecrets | None, file: str) -> Any:
    """`data` (YAML just read from `file`) with each Sealed value replaced, in place, by its plaintext, marked."""
    return _open_within(data, secrets, file, None)


def _open_within(value: Any, secrets: VaultSecrets | None, file: str, key: Any) -> Any:
    if isinstance(value, Sealed):
        name = None if key is None else str(key)
        try:
            data = value.text.encode("ascii")
        except UnicodeEncodeError:
            raise VaultError("damaged vault: not ASCII text", file=file, key=name, line=value.line) from None
        if not is_vault(data):
            raise VaultError("a !vault value must start with $ANSIBLE_VAULT", file=file, key=name, line=value.line)
        plaintext = open_bytes(data, secrets, file, value.line, name)
        try:
            return VaultedStr(plaintext.decode("utf-8"))
        except UnicodeDecodeError:
            raise VaultError("the vaulted value is not UTF-8 text", file=file, key=name, line=value.line) from None
    if isinstance(value, dict):
        for inner in value:
            value[inner] = _open_within(value[inner], secrets, file, inner)
    elif isinstance(value, list):
        value[:] = [_open_within(item, secrets, file, key) for item in value]
    return value


def marked(value: Any) -> Any:
    """`value` (a vaulted file's whole content) with every string and number in it marked as vaulted, in place;
    containers stay what they are, and true, false and null as they are (a bool cannot be marked)."""
    kind = _MARKED.get(type(value))
    if kind is not None:
        return kind(value)
    if isinstance(value, dict):
        for key in value:
            value[key] = marked(value[key])
    elif isinstance(value, list):
        value[:] = [marked(item) for item in value]
    return value


def shown(value: Any) -> Any:
    """`value` as a listing shows it: each part that came out of a vault as (vault)."""
    if isinstance(value, Vaulted):
        return SHOWN
    if isinstance(value, dict):
        return {key: shown(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shown(item) for item in value]
    return value


def holds_vaulted(value: Any) -> bool:
    """Whether `value`, or a part of it, came out of a vault."""
    if isinstance(value, Vaulted):
        return True
    if isinstance(value, dict):
        return any(holds_vaulted(item) for item in value.values())
    return isinstance(value, list) and any(holds_vaulted(item) for item in value)


def unmarked(value: Any) -> Any:
    """`value` with the marks taken off (plain str, int, float), for a listing asked to show vaulted values."""
    if isinstance(value, Vaulted):
        return next(kind(value) for kind in (str, int, float) if isinstance(value, kind))
    if isinstance(value, dict):
        return {key: unmarked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unmarked(item) for item in value]
    return value
