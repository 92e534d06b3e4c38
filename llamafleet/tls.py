"""The API over TLS: llamafleet's own CA per inventory (made once on the controller), the head's certificate it
signs, and what a certificate must be to be kept.

The head makes its own key and never sends it: the controller reads the key's public half and issues a certificate
for it naming the head's addresses, so no private key of a head ever exists on the controller. The CA's key stays
on the controller, beside the inventory, readable by its owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import LlamafleetError

CA_YEARS = 10
CERT_DAYS = 365
RENEW_DAYS = 30  # provision issues a new certificate when the one on the head ends within this many days
CLOCK_SKEW = datetime.timedelta(minutes=5)  # a certificate is valid from a little before it was made
MAX_PEM_BYTES = 64 * 1024

# On the head: the key made there (root 0600), the certificate issued for it and the CA clients verify it with.
TLS_DIR = "/etc/llamafleet/tls"
KEY_FILE = f"{TLS_DIR}/api.key"
CERT_FILE = f"{TLS_DIR}/api.crt"
CA_FILE = f"{TLS_DIR}/ca.pem"
# Credentials systemd hands llama-server (LoadCredential=, read at %d).
KEY_CREDENTIAL = "api-tls-key"
CERT_CREDENTIAL = "api-tls-cert"
# A P-256 key made on the head, root-only from its first byte; nothing is overwritten.
MAKE_KEY = (
    "umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {partial} "
    "&& mv -n {partial} {key} && rm -f {partial}"
)
PUBLIC_KEY = "openssl pkey -in {key} -pubout 2>/dev/null || true"


class TlsError(LlamafleetError):
    """A CA, certificate or key file that cannot be used as one; `path` is the file at fault (None: not one file)."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate (what clients trust) and, for llamafleet's own, its key (what signs)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None = None

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def ca_paths(inventory_file: Path) -> tuple[Path, Path]:
    """(<inventory>.ca.pem, <inventory>.ca.key) beside the inventory."""
    folder, stem = inventory_file.parent, inventory_file.stem
    return folder / f"{stem}.ca.pem", folder / f"{stem}.ca.key"


def make_ca(cert_path: Path, key_path: Path, label: str, now: datetime.datetime | None = None) -> Authority:
    """A new CA written to `cert_path` (0644) and `key_path` (0600, made exclusively: an existing file is never
    replaced); the caller checked neither exists."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"llamafleet CA {label}"[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(signs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(key_path, pem_key, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Authority(cert, key)


def load_ca(cert_path: Path, key_path: Path | None = None) -> Authority:
    """The CA of `cert_path` (and its key, which must be the certificate's and readable by its owner only)."""
    cert = _first_cert(cert_path)
    basic = _extension(cert, x509.BasicConstraints)
    if basic is None or not basic.ca:
        raise TlsError(f"{cert_path}: not a CA certificate (no basicConstraints CA:TRUE)")
    if key_path is None:
        return Authority(cert)
    if key_path.stat().st_mode & 0o077:
        raise TlsError(f"{key_path}: the CA key is readable by others: chmod 600 {key_path}")
    key = serialization.load_pem_private_key(_read(key_path), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(cert.public_key()):
        raise TlsError(f"{key_path}: not the key of {cert_path}")
    return Authority(cert, key)


def head_names(host_name: str, addresses: list[str]) -> tuple[str, ...]:
    """The names a head's certificate carries: its host name and each address (0.0.0.0 and repeats left out)."""
    found = [host_name, *(a for a in addresses if a and a not in ("0.0.0.0", "::"))]  # noqa: S104 - compared
    return tuple(dict.fromkeys(_name_key(name) for name in found))


def issue(ca: Authority, public_key_pem: bytes, names: tuple[str, ...], now: datetime.datetime | None = None) -> bytes:
    """A server certificate (PEM) for `public_key_pem`, naming `names`, valid CERT_DAYS, signed by `ca`."""
    if ca.key is None:
        raise TlsError("the CA's key is needed to issue a certificate")
    now = now or _now()
    try:
        public = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError):
        raise TlsError("the head's public key is not a PEM public key") from None
    if not isinstance(public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise TlsError("the head's key is neither EC nor RSA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(signs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_problems(
    cert_pem: bytes | str | None,
    ca: Authority,
    names: tuple[str, ...],
    public_key_pem: bytes | str | None = None,
    now: datetime.datetime | None = None,
    days: int = RENEW_DAYS,
) -> list[str]:
    """Why `cert_pem` is not a certificate to keep: issued by `ca`, naming every one of `names`, for
    `public_key_pem` (when given) and valid `days` more. [] when it is."""
    now = now or _now()
    if not cert_pem:
        return ["no certificate"]
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode() if isinstance(cert_pem, str) else cert_pem)
    except ValueError:
        return ["not a PEM certificate"]
    problems = []
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        problems.append(f"not issued by {ca.cert.subject.rfc4514_string()}")
    missing = [name for name in names if name not in cert_names(cert)]
    if missing:
        problems.append(f"does not name {', '.join(missing)}")
    if public_key_pem and _spki(serialization.load_pem_public_key(_bytes(public_key_pem))) != _spki(cert.public_key()):
        problems.append("is not for the head's key")
    ends = cert.not_valid_after_utc
    if ends - now < datetime.timedelta(days=days):
        problems.append(f"ends {ends:%Y-%m-%d}, within {days} days")
    if cert.not_valid_before_utc > now + CLOCK_SKEW:
        problems.append(f"valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M}")
    return problems


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names and IP addresses of a certificate's subjectAltName, as head_names spells them."""
    san = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return ()
    dns = [_name_key(name) for name in san.get_values_for_type(x509.DNSName)]
    return (*dns, *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)))


def not_after(cert_pem: bytes | str) -> datetime.datetime:
    """When a PEM certificate ends (UTC)."""
    return x509.load_pem_x509_certificate(_bytes(cert_pem)).not_valid_after_utc


def read_user_files(cert_file: Path, key_file: Path, ca_file: Path) -> tuple[bytes, bytes, Authority]:
    """The user's certificate chain, key and the CA clients verify it with, checked to belong together: the key is
    the certificate's and the certificate was issued by that CA (or is it)."""
    chain = _read(cert_file)
    leaf = _first_cert(cert_file)
    key_pem = _read(key_file)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"{key_file}: not an unencrypted PEM private key ({exc})", key_file) from None
    if _spki(key.public_key()) != _spki(leaf.public_key()):  # type: ignore[arg-type]
        raise TlsError(f"{key_file}: not the key of {cert_file}", key_file)
    roots = _chain(ca_file)
    if not any(_signed_by(cert, root) for root in roots for cert in [leaf, *_chain(cert_file)[1:]]):
        raise TlsError(f"{cert_file}: its chain does not lead to a certificate of {ca_file}", cert_file)
    if leaf.not_valid_after_utc <= _now():
        raise TlsError(f"{cert_file}: ended {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC", cert_file)
    return chain, key_pem, Authority(roots[0])


def _signed_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    if _spki(cert.public_key()) == _spki(root.public_key()):
        return True
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chain(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(path))
    except ValueError:
        raise TlsError(f"{path}: holds no PEM certificate", path) from None


def _first_cert(path: Path) -> x509.Certificate:
    return _chain(path)[0]


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise TlsError(f"{path}: {exc.strerror}", path) from None
    if len(data) > MAX_PEM_BYTES:
        raise TlsError(f"{path}: larger than {MAX_PEM_BYTES // 1024} KiB, not a PEM file", path)
    return data


def _write_new(path: Path, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _name_key(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower().rstrip(".")


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _usage(signs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs,
        crl_sign=signs,
        encipher_only=False,
        decipher_only=False,
    )


def _extension(cert: x509.Certificate, kind: type):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _spki(public) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _bytes(text: bytes | str) -> bytes:
    return text.encode() if isinstance(text, str) else text


def _serial() -> int:
    return int.from_bytes(secrets.token_bytes(16), "big") >> 1


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
