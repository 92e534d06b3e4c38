"""api_tls: llamafleet's CA, the head's certificate (names, renewal window, key), hostile files, and the head's unit
with and without TLS."""

from __future__ import annotations

import datetime
import os
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from inventory_tree import WITH_W2_VAR, write_tree

from llamafleet import cluster, inventory, paths, tls
from llamafleet.errors import InventoryError, LlamafleetError
from llamafleet.facts import CommandOutput
from llamafleet.operations.base import Change, Facts, NoChange
from llamafleet.roles.head import api_tls
from llamafleet.roles.head import role as head_role

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
NAMES = ("h1", "10.0.0.1")


def public_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def ca(tmp_path) -> tls.Authority:
    return tls.make_ca(*tls.ca_paths(tmp_path / "hosts.yml"), "hosts", now=NOW)


def test_the_ca_is_made_once_beside_the_inventory_its_key_private(tmp_path, ca):
    cert_path, key_path = tls.ca_paths(tmp_path / "hosts.yml")
    assert (cert_path.name, key_path.name) == ("hosts.ca.pem", "hosts.ca.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    loaded = tls.load_ca(cert_path, key_path)
    assert loaded.cert == ca.cert and x509.load_pem_x509_certificate(loaded.pem).subject == ca.cert.subject
    with pytest.raises(FileExistsError):  # never replaced
        tls.make_ca(cert_path, key_path, "again")


def test_a_ca_key_others_can_read_or_another_key_is_refused(tmp_path, ca):
    cert_path, key_path = tls.ca_paths(tmp_path / "hosts.yml")
    os.chmod(key_path, 0o644)
    with pytest.raises(tls.TlsError, match="readable by others: chmod 600"):
        tls.load_ca(cert_path, key_path)
    other = tls.make_ca(tmp_path / "o.pem", tmp_path / "o.key", "other")
    assert other.cert != ca.cert
    with pytest.raises(tls.TlsError, match="not the key of"):
        tls.load_ca(cert_path, tmp_path / "o.key")


def test_the_head_certificate_names_its_addresses_and_is_kept_until_30_days_before_its_end(ca):
    key = public_pem()
    names = tls.head_names("H1.", ["10.0.0.1", "0.0.0.0", "10.0.0.1", "192.168.1.5"])
    assert names == ("h1", "10.0.0.1", "192.168.1.5")
    cert = tls.issue(ca, key, names, now=NOW)
    assert tls.cert_names(x509.load_pem_x509_certificate(cert)) == names
    assert tls.cert_problems(cert, ca, names, key, now=NOW) == []
    day = datetime.timedelta(days=1)
    assert tls.cert_problems(cert, ca, names, key, now=NOW + (tls.CERT_DAYS - 31) * day) == []
    late = tls.cert_problems(cert, ca, names, key, now=NOW + (tls.CERT_DAYS - 29) * day)
    assert len(late) == 1 and "within 30 days" in late[0]


def test_a_certificate_of_another_ca_key_or_names_is_not_kept(tmp_path, ca):
    key = public_pem()
    other = tls.make_ca(tmp_path / "o.pem", tmp_path / "o.key", "other", now=NOW)
    assert tls.cert_problems(tls.issue(other, key, NAMES, now=NOW), ca, NAMES, key, now=NOW)[0].startswith(
        "not issued by"
    )
    assert tls.cert_problems(tls.issue(ca, key, NAMES, now=NOW), ca, NAMES, public_pem(), now=NOW) == [
        "is not for the head's key"
    ]
    moved = ("h1", "10.0.0.9")
    assert tls.cert_problems(tls.issue(ca, key, NAMES, now=NOW), ca, moved, key, now=NOW) == ["does not name 10.0.0.9"]
    assert tls.cert_problems(None, ca, NAMES) == ["no certificate"]
    assert tls.cert_problems("-----BEGIN CERTIFICATE-----\nbroken\n", ca, NAMES) == ["not a PEM certificate"]


def test_hostile_files_are_refused_with_their_name(tmp_path, ca):
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"A" * (tls.MAX_PEM_BYTES + 1))
    with pytest.raises(tls.TlsError, match="huge.pem: larger than 64 KiB"):
        tls.load_ca(huge)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(tls.TlsError, match="garbage.pem: holds no PEM certificate"):
        tls.load_ca(garbage)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(tls.issue(ca, public_pem(), NAMES, now=NOW))
    with pytest.raises(tls.TlsError, match="not a CA certificate"):
        tls.load_ca(leaf)
    with pytest.raises(tls.TlsError):
        tls.issue(ca, b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", NAMES)


def users_files(tmp_path, ca, issued: datetime.datetime | None = None, folder: str = "") -> dict[str, str]:
    """A certificate of `ca` (made in tmp_path) issued at `issued` (now by default) and its key, in tmp_path/folder,
    and the CA file: api_tls_* values."""
    ca_file = str(tls.ca_paths(tmp_path / "hosts.yml")[0])
    tmp_path = tmp_path / folder
    tmp_path.mkdir(exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "cert.pem").write_bytes(tls.issue(ca, public, NAMES, now=issued))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    return {
        "api_tls_cert_file": str(tmp_path / "cert.pem"),
        "api_tls_key_file": str(tmp_path / "key.pem"),
        "api_tls_ca_file": ca_file,
    }


def test_the_users_certificate_must_be_its_keys_and_lead_to_its_ca(tmp_path, ca):
    users_files(tmp_path, ca)
    pem = (tmp_path / "key.pem").read_bytes()
    ca_file = tls.ca_paths(tmp_path / "hosts.yml")[0]
    chain, key_pem, authority = tls.read_user_files(tmp_path / "cert.pem", tmp_path / "key.pem", ca_file)
    assert key_pem == pem and authority.cert == ca.cert
    other = tls.make_ca(tmp_path / "o.pem", tmp_path / "o.key", "other")
    assert other is not None
    with pytest.raises(tls.TlsError, match="does not lead to a certificate of"):
        tls.read_user_files(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "o.pem")
    with pytest.raises(tls.TlsError, match="not the key of"):
        tls.read_user_files(tmp_path / "cert.pem", tmp_path / "o.key", ca_file)


# -- the head's unit and operations ---------------------------------------------------------------------------


def head(tmp_path, extra: str = ""):
    text = WITH_W2_VAR % "rpc_port: 50052"
    if extra:
        text = text.replace("h1: {ansible_host: 10.0.0.1}", f"h1: {{ansible_host: 10.0.0.1, {extra}}}")
    path = write_tree(tmp_path, {"hosts.yml": text})
    inv = inventory.load(path)
    (view,) = cluster.fleet(inv).clusters
    return inv, view, head_role.settings.settings(inv.hosts[view.head], str(inv.path))


def test_without_api_tls_the_unit_is_byte_identical_to_one_rendered_before_it(tmp_path):
    _, view, settings = head(tmp_path / "plain")
    _, _, explicit = head(tmp_path / "off", "api_tls: false")
    unit = head_role.render_unit(settings, view)
    assert head_role.render_unit(explicit, view) == unit
    assert "ssl" not in unit and "tls" not in unit.lower()
    assert unit.count("LoadCredential=") == 1


def test_with_api_tls_llama_server_gets_its_key_and_certificate_as_credentials(tmp_path):
    _, view, settings = head(tmp_path, "api_tls: true")
    unit = head_role.render_unit(settings, view)
    assert f"LoadCredential={tls.KEY_CREDENTIAL}:{tls.KEY_FILE}" in unit
    assert f"LoadCredential={tls.CERT_CREDENTIAL}:{tls.CERT_FILE}" in unit
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert f"--ssl-key-file %d/{tls.KEY_CREDENTIAL} --ssl-cert-file %d/{tls.CERT_CREDENTIAL}" in start


def test_an_incomplete_set_of_the_users_files_is_refused_naming_the_missing_one(tmp_path):
    inv, _, settings = head(tmp_path, "api_tls: true, api_tls_cert_file: c.pem, api_tls_key_file: k.pem")
    with pytest.raises(InventoryError, match="api_tls_ca_file is not set"):
        api_tls.trust(settings, str(inv.path))
    trust = api_tls.trust(head(tmp_path / "own", "api_tls: true")[2], str(tmp_path / "own" / "hosts.yml"))
    assert trust is not None and trust.own and trust.ca_file.name == "hosts.ca.pem"


def plan_of(operation, values):
    return operation.plan(Facts({fact.key: value for fact, value in zip(operation.facts, values, strict=True)}))


def test_a_build_without_openssl_is_refused_in_one_line():
    operation = api_tls.openssl_linked(paths.BIN_DIR)
    assert isinstance(plan_of(operation, [["libssl.so.3"]]), NoChange)
    with pytest.raises(LlamafleetError, match="does not link OpenSSL") as caught:
        plan_of(operation, [[]])
    assert "\n" not in str(caught.value)


def test_the_certificate_is_issued_for_the_heads_key_then_kept(ca):
    key = public_pem()
    operation = api_tls.certificate(ca, NAMES, ("restart llama-server",))
    lines = key.decode().strip().splitlines()
    first = plan_of(operation, [None, lines])
    assert isinstance(first, Change) and "no certificate" in first.reason
    issued = first.steps[0].content
    assert tls.cert_problems(issued, ca, NAMES, key) == []
    assert isinstance(plan_of(operation, [issued.decode(), lines]), NoChange)
    assert isinstance(plan_of(operation, [None, []]), Change)  # the key is made first
    assert operation.facts[1].key == CommandOutput(tls.PUBLIC_KEY.format(key=tls.KEY_FILE)).key


def test_the_key_made_on_a_host_is_private_and_its_public_half_is_what_the_certificate_is_for(tmp_path, ca):
    key_file = tmp_path / "api.key"
    make = tls.MAKE_KEY.format(partial=f"{key_file}.new", key=key_file)
    subprocess.run(["sh", "-c", make], check=True)
    subprocess.run(["sh", "-c", make], check=True)  # a second run keeps the first key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and not (tmp_path / "api.key.new").exists()
    public = subprocess.run(["sh", "-c", tls.PUBLIC_KEY.format(key=key_file)], capture_output=True, check=True).stdout
    issued = tls.issue(ca, public, NAMES)
    assert tls.cert_problems(issued, ca, NAMES, public) == []


def test_openssl_is_found_in_the_server_library_of_current_trees_or_the_binary_of_older_ones(tmp_path):
    def linked(files: dict[str, bytes]) -> str:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        command = api_tls.openssl_linked(str(folder)).facts[0].command()
        return subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout.decode().strip()

    elf = b"\x7fELF\x00\x00libstdc++.so.6\x00"
    assert linked({"libllama-server-impl.so": elf + b"libssl.so.3\x00", "llama-server": elf}) == "libssl.so.3"
    assert linked({"llama-server": elf + b"libssl.so.1.1\x00"}) == "libssl.so.1.1"
    assert linked({"libllama-server-impl.so": elf, "llama-server": elf}) == ""


def test_status_asks_a_tls_head_through_openssl_and_shows_its_certificate_s_end():
    from llamafleet import status

    plain = status.script("head", 8080, ("127.0.0.1", 8080))
    tls_script = status.script("head", 8080, ("127.0.0.1", 8080), "h1")
    assert "s_client" not in plain and "/dev/tcp" in plain
    assert "s_client" in tls_script and "-verify_hostname h1" in tls_script and tls.CERT_FILE in tls_script
    row = status.parse(
        "h1", "head", 8080, "@lf tls notAfter=Jan  1 00:00:00 2031 GMT\n@lf http /health HTTP/1.1 200 OK\n"
    )
    assert (row.tls_until, row.health) == ("2031-01-01", "200 ok")
    assert "tls until 2031-01-01" in status.table([row])
    assert status.parse("h1", "head", 8080, "@lf tls none\n").tls_until == "none"


def test_verify_reads_the_presented_certificate_and_what_plain_http_gets(ca):
    from llamafleet.verify import tls_probes

    pem = tls.issue(ca, public_pem(), NAMES).decode()
    lines = ["depth=0 CN = h1", *pem.splitlines(), "---", *pem.splitlines()]
    presented = tls_probes.PresentedCertificate("127.0.0.1", 8080).process(lines)
    assert presented == pem and tls.cert_problems(presented, ca, NAMES) == []
    assert tls_probes.PresentedCertificate("127.0.0.1", 8080).process(["connect: Connection refused"]) is None
    assert tls_probes.PlainHttp("127.0.0.1", 8080).process([]) == ""


def test_haproxy_speaks_tls_to_a_tls_head_only(tmp_path):
    from llamafleet.roles.balancer import role as balancer_role
    from llamafleet.roles.balancer import settings as balancer_settings

    text = WITH_W2_VAR % "rpc_port: 50052" + "    balancers:\n      hosts:\n        lb1: {ansible_host: 10.0.0.9}\n"
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": text}))
    fleet = cluster.fleet(inv)
    lb = balancer_settings.settings(inv.hosts["lb1"], str(inv.path))
    plain = balancer_role.render_config(lb, fleet.clusters)
    assert balancer_role.render_config(lb, fleet.clusters, {}) == plain and " ssl " not in plain
    over_tls = balancer_role.render_config(lb, fleet.clusters, {"default": "h1"})
    server = next(line for line in over_tls.splitlines() if line.strip().startswith("server "))
    assert server.endswith(f"ssl verify required ca-file {balancer_role.TLS_CA_FILE} verifyhost h1 check-ssl")
    with pytest.raises(ValueError, match="cannot be a certificate name"):
        balancer_role.render_config(lb, fleet.clusters, {"default": "h1 crt /etc/shadow"})


def with_files(tmp_path, files: dict[str, str]):
    extra = ", ".join(["api_tls: true", *(f"{name}: {path}" for name, path in files.items())])
    inv, _, settings = head(tmp_path / "inventory", extra)
    return inv, settings


class Said:
    def __init__(self, inventory_file: str):
        self.inventory_file, self.check, self.lines = inventory_file, False, []

    def say(self, line: str) -> None:
        self.lines.append(line)


@pytest.mark.parametrize(
    "fault, key, message",
    [
        ("key is another key", "api_tls_key_file", "not the key of"),
        ("key is a certificate", "api_tls_key_file", "not an unencrypted PEM private key"),
        ("key is huge", "api_tls_key_file", "larger than 64 KiB"),
        ("ca holds no certificate", "api_tls_ca_file", "holds no PEM certificate"),
        ("ca is missing", "api_tls_ca_file", "No such file"),
        ("cert is a folder", "api_tls_cert_file", "Is a directory"),
        ("ca is another ca", "api_tls_cert_file", "does not lead to a certificate of"),
    ],
)
def test_a_bad_file_of_the_users_set_is_refused_naming_its_own_key(tmp_path, ca, fault, key, message):
    files = users_files(tmp_path, ca)
    if fault == "key is another key":
        files["api_tls_key_file"] = str(tls.ca_paths(tmp_path / "hosts.yml")[1])
    elif fault == "key is a certificate":
        files["api_tls_key_file"] = files["api_tls_cert_file"]
        files["api_tls_cert_file"] = str(tmp_path / "cert-copy.pem")
        (tmp_path / "cert-copy.pem").write_bytes((tmp_path / "cert.pem").read_bytes())
    elif fault == "key is huge":
        (tmp_path / "huge.pem").write_bytes(b"A" * (tls.MAX_PEM_BYTES + 1))
        files["api_tls_key_file"] = str(tmp_path / "huge.pem")
    elif fault == "ca holds no certificate":
        (tmp_path / "empty.pem").write_text("nothing here\n")
        files["api_tls_ca_file"] = str(tmp_path / "empty.pem")
    elif fault == "ca is missing":
        files["api_tls_ca_file"] = str(tmp_path / "missing.pem")
    elif fault == "cert is a folder":
        files["api_tls_cert_file"] = str(tmp_path)
    else:
        tls.make_ca(tmp_path / "o.pem", tmp_path / "o.key", "other")
        files["api_tls_ca_file"] = str(tmp_path / "o.pem")
    inv, settings = with_files(tmp_path, files)
    with pytest.raises(InventoryError, match=message) as raised:
        api_tls.setup(Said(str(inv.path)), settings)
    assert raised.value.key == key and raised.value.where == "host h1"
    assert "\n" not in str(raised.value)


def test_the_users_certificate_must_not_have_ended_and_one_ending_within_30_days_is_warned_of(tmp_path, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    ended = users_files(tmp_path, ca, folder="ended", issued=now - datetime.timedelta(days=tls.CERT_DAYS + 1))
    inv, settings = with_files(tmp_path / "ended", ended)
    with pytest.raises(InventoryError, match="cert.pem: ended ") as raised:
        api_tls.setup(Said(str(inv.path)), settings)
    assert raised.value.key == "api_tls_cert_file"
    ending = users_files(tmp_path, ca, folder="ending", issued=now - datetime.timedelta(days=tls.CERT_DAYS - 10))
    inv, settings = with_files(tmp_path / "ending", ending)
    run = Said(str(inv.path))
    api_tls.setup(run, settings)
    (line,) = run.lines
    assert "warning: host h1: api_tls_cert_file" in line and "within 30 days" in line
    fresh = users_files(tmp_path, ca, folder="fresh")
    inv, settings = with_files(tmp_path / "fresh", fresh)
    run = Said(str(inv.path))
    api_tls.setup(run, settings)
    assert run.lines == []
