"""The head's API over TLS (api_tls): the CA on the controller, the key made on the head, the certificate provision
issues for it (renewed within tls.RENEW_DAYS of its end), the build's OpenSSL, and how clients on the head speak
HTTPS to it (openssl s_client, which every host has: bash's /dev/tcp cannot speak TLS)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from llamafleet import tls, units
from llamafleet.errors import InventoryError, LlamafleetError
from llamafleet.facts import CommandOutput, FileContent, PathInfo
from llamafleet.operations import files as file_ops
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell, Upload
from llamafleet.shell import quote

from .settings import HeadSettings

NOT_BUILT_WITH_OPENSSL = (
    "api_tls: the llama.cpp build on this head does not link OpenSSL (its llama-server would refuse "
    "--ssl-key-file): build with libssl-dev installed and without -DLLAMA_OPENSSL=OFF"
)


@dataclass(frozen=True)
class Trust:
    """What clients of one head trust: the CA file on the controller, and whether llamafleet issues the head's
    certificate (own CA) or the user gave it."""

    ca_file: Path
    own: bool
    ca_key_file: Path | None = None


def trust(head: HeadSettings, inventory_file: str) -> Trust | None:
    """The head's TLS trust on the controller (None without api_tls); InventoryError for an incomplete user's set."""
    if not head.api_tls:
        return None
    given = {"api_tls_cert_file": head.api_tls_cert_file, "api_tls_key_file": head.api_tls_key_file}
    if any(given.values()) or head.api_tls_ca_file:
        missing = [name for name, value in {**given, "api_tls_ca_file": head.api_tls_ca_file}.items() if not value]
        if missing:
            raise InventoryError(
                "your own certificate needs api_tls_cert_file, api_tls_key_file and api_tls_ca_file (the CA clients "
                f"verify it with); {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
                where=f"host {head.host}",
                key=missing[0],
            )
        return Trust(Path(str(head.api_tls_ca_file)), own=False)
    cert, key = tls.ca_paths(Path(inventory_file))
    return Trust(cert, own=True, ca_key_file=key)


def client_ca(head: HeadSettings, inventory_file: str) -> Path | None:
    """The CA file a client on the controller verifies the head with (None: plain HTTP)."""
    found = trust(head, inventory_file)
    return found.ca_file if found else None


def setup(run, head: HeadSettings) -> None:
    """The own CA made once beside the inventory (never under --check); the user's files checked to belong
    together. Nothing leaves the controller here."""
    found = trust(head, run.inventory_file)
    if found is None:
        return
    if not found.own:
        chain, _, _ = _user_files(head)
        ends = tls.not_after(chain)
        if ends - datetime.datetime.now(datetime.timezone.utc) < datetime.timedelta(days=tls.RENEW_DAYS):
            run.say(f"api tls: warning: host {head.host}: api_tls_cert_file {head.api_tls_cert_file} ends "
                    f"{ends:%Y-%m-%d}, within {tls.RENEW_DAYS} days: replace it (verify fails from now on)")  # fmt: skip
        return
    assert found.ca_key_file is not None
    if found.ca_file.exists() or found.ca_key_file.exists():
        tls.load_ca(found.ca_file, found.ca_key_file)
        return
    if run.check:
        run.say(f"api tls: {found.ca_file} would be made first (llamafleet's CA for this inventory)")
        return
    tls.make_ca(found.ca_file, found.ca_key_file, Path(run.inventory_file).stem)
    run.say(f"api tls: made the CA {found.ca_file} (its key {found.ca_key_file}, mode 0600: keep it private)")


def _user_files(head: HeadSettings) -> tuple[bytes, bytes, tls.Authority]:
    files = {
        "api_tls_cert_file": Path(str(head.api_tls_cert_file)),
        "api_tls_key_file": Path(str(head.api_tls_key_file)),
        "api_tls_ca_file": Path(str(head.api_tls_ca_file)),
    }
    try:
        return tls.read_user_files(*files.values())
    except tls.TlsError as exc:
        # the key of the file at fault (the certificate's when one path is given twice, or for a mismatch)
        key = next((name for name, path in files.items() if path == exc.path), "api_tls_cert_file")
        raise InventoryError(str(exc), where=f"host {head.host}", key=key) from None


def verify_name(head: HeadSettings, inventory_file: str) -> str:
    """The name clients on the head verify its certificate by: its host name (own CA), else the first name of the
    user's certificate."""
    found = trust(head, inventory_file)
    if found is None or found.own:
        return head.host
    chain, _, _ = _user_files(head)
    from cryptography import x509

    named = tls.cert_names(x509.load_pem_x509_certificate(chain))
    return named[0] if named else head.host


def names(host, head: HeadSettings, cluster_address: str) -> tuple[str, ...]:
    """What the head's certificate names: its host name, ansible_host, api_host (unless 0.0.0.0), cluster address."""
    return tls.head_names(host.name, [host.connection.address, head.api_host, cluster_address])


# -- on the head --------------------------------------------------------------------------------------------

# The dynamic libssl llama-server's HTTP server was linked with ('' without): the build's own word on HTTPS.
# Current trees keep the server in libllama-server-impl.so beside the binary, older ones in llama-server itself.
SERVER_FILES = ("libllama-server-impl.so", "llama-server")
LINKED_OPENSSL = "cat {files} 2>/dev/null | grep -aom1 'libssl\\.so[.0-9]*' || true"


def openssl_linked(bin_dir: str) -> Operation:
    """llama-server of the current release links OpenSSL; otherwise the head fails with one line."""
    files = " ".join(quote("%s", f"{bin_dir}/{name}") for name in SERVER_FILES)
    fact = CommandOutput(LINKED_OPENSSL.format(files=files))

    def plan(facts: Facts):
        found = " ".join(facts[fact]).strip()
        if not found:
            raise LlamafleetError(NOT_BUILT_WITH_OPENSSL)
        return NoChange(f"llama-server links {found}")

    return Operation("llama-server built with OpenSSL (api_tls)", [fact], plan)


def operations(run, host, head: HeadSettings, cluster_address: str, notify: tuple[str, ...]):
    """The CA clients on the head trust, the head's key and certificate (renewed within RENEW_DAYS)."""
    found = trust(head, run.inventory_file)
    assert found is not None
    yield file_ops.directory(tls.TLS_DIR, mode="0700")
    if not found.own:
        chain, key, authority = _user_files(head)
        yield file_ops.file(tls.CA_FILE, authority.pem, mode="0644")
        yield file_ops.file(tls.KEY_FILE, key, mode="0600", secret=True, notify=notify)
        yield file_ops.file(tls.CERT_FILE, chain, mode="0644", notify=notify)
        return
    assert found.ca_key_file is not None
    if run.check and not found.ca_file.exists():
        why = f"{found.ca_file} does not exist yet: provision makes it, then the head's key and certificate"
        yield Operation(f"certificate {tls.CERT_FILE}", [], lambda facts: Change((), why), notify)
        return
    authority = tls.load_ca(found.ca_file, found.ca_key_file)
    yield file_ops.file(tls.CA_FILE, authority.pem, mode="0644")
    yield key_made()
    yield certificate(authority, names(host, head, cluster_address), notify)


def key_made() -> Operation:
    """The head's own key, made once on the head (root 0600); it never leaves the head."""
    state = PathInfo(tls.KEY_FILE, False)

    def plan(facts: Facts):
        if facts[state] is not None:
            return NoChange("the head's key exists (made here, never sent)")
        partial = f"{tls.KEY_FILE}.new"
        command = tls.MAKE_KEY.format(partial=quote("%s", partial), key=quote("%s", tls.KEY_FILE))
        return Change((Shell(command),), "no key yet: made here (P-256, root 0600)")

    return Operation(f"key {tls.KEY_FILE}", [state], plan)


def certificate(authority: tls.Authority, wanted: tuple[str, ...], notify: tuple[str, ...]) -> Operation:
    """The head's certificate: kept while the CA issued it for the head's key, naming `wanted`, RENEW_DAYS more."""
    cert = FileContent(tls.CERT_FILE)
    public = CommandOutput(tls.PUBLIC_KEY.format(key=quote("%s", tls.KEY_FILE)))

    def plan(facts: Facts):
        public_pem = "\n".join(facts[public]).strip()
        if not public_pem:
            return Change((), "the head's key is made first, then its certificate issued")
        problems = tls.cert_problems(facts[cert], authority, wanted, public_pem + "\n")
        if not problems:
            ends = tls.not_after(facts[cert])
            return NoChange(f"issued by the CA for the head's key, naming {', '.join(wanted)}, until {ends:%Y-%m-%d}")
        issued = tls.issue(authority, (public_pem + "\n").encode(), wanted)
        upload = Upload(tls.CERT_FILE, issued, mode="0644")
        return Change((upload,), f"certificate {'; '.join(problems)}: issued for {', '.join(wanted)}")

    return Operation(f"certificate {tls.CERT_FILE}", [cert, public], plan, notify)


# -- the unit ----------------------------------------------------------------------------------------------


def server_args(head: HeadSettings) -> list[str]:
    """llama-server's TLS flags: the key and certificate systemd hands it (LoadCredential=)."""
    if not head.api_tls:
        return []
    return [
        "--ssl-key-file",
        units.Specifier(f"%d/{tls.KEY_CREDENTIAL}"),
        "--ssl-cert-file",
        units.Specifier(f"%d/{tls.CERT_CREDENTIAL}"),
    ]


def credentials(head: HeadSettings) -> list[str]:
    """The unit's extra LoadCredential= values (none without api_tls)."""
    if not head.api_tls:
        return []
    return [f"{tls.KEY_CREDENTIAL}:{tls.KEY_FILE}", f"{tls.CERT_CREDENTIAL}:{tls.CERT_FILE}"]


# -- speaking HTTPS from the head itself ---------------------------------------------------------------------


def client(verify_name: str) -> str:
    """A shell command that sends its stdin (one HTTP/1.0 request) to the API at "$host:$port" over TLS verified
    with the CA on the head, naming `verify_name`, and prints the answer until the server closes (-quiet keeps
    reading after the request's end). A server that fails verification gets nothing: no request, no key."""
    check = "-verify_ip" if _is_ip(verify_name) else "-verify_hostname"
    return (
        quote("openssl s_client -quiet -verify_return_error -CAfile %s %s %s ", tls.CA_FILE, check, verify_name)
        + '-connect "$host:$port" 2>/dev/null'
    )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
