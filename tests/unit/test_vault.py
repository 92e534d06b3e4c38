"""Ansible Vault: vaults made by ansible-vault open to their plaintext; a wrong password, an altered or a cut vault is
a one-line error; passwords are read from files, scripts, client scripts, prompts and the environment as Ansible
reads them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from llamafleet import vault, vault_secrets
from llamafleet.errors import UsageError
from llamafleet.vault import VaultError, VaultSecrets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vault"
ANSIBLE_VAULT = Path(sys.executable).parent / "ansible-vault"
PASSWORD = b"correct horse battery staple"  # password.txt, vault id default
LAB_PASSWORD = "lab ünïcode pass".encode()  # lab-pass.sh, vault id lab
OPS_PASSWORD = b"ops: client pass"  # ops-client.sh --vault-id ops
ALL = VaultSecrets((("default", PASSWORD), ("lab", LAB_PASSWORD), ("ops", OPS_PASSWORD)))


def fixture_maker():
    """tests/fixtures/vault/make.py as a module: its PLAINTEXTS say what each fixture vault holds."""
    spec = importlib.util.spec_from_file_location("vault_fixture_maker", FIXTURES / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLAINTEXTS = fixture_maker().PLAINTEXTS
WHOLE_FILES = [name for name in PLAINTEXTS if name.endswith(".yml")]
WORKERS = (FIXTURES / "group_vars/workers.yml").read_bytes()  # vault id default (format 1.1)
PARTS = vault.parse(WORKERS)


def opened(data: bytes, secrets: VaultSecrets = ALL) -> bytes:
    return vault.open_bytes(data, secrets, "f.yml", 3, "k")


def vault_error(data: bytes, secrets: VaultSecrets = ALL) -> str:
    with pytest.raises(VaultError) as caught:
        opened(data, secrets)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("f.yml:3: k: ")
    return str(caught.value)


# --------------------------------------------------------------------------- the format


@pytest.mark.parametrize("name", WHOLE_FILES)
def test_a_file_vaulted_by_ansible_vault_opens_to_its_plaintext(name):
    data = (FIXTURES / name).read_bytes()
    vault_id, plaintext = PLAINTEXTS[name]
    assert vault.parse(data).vault_id == (None if vault_id == "default" else vault_id)  # 1.1 names none
    assert opened(data) == plaintext.encode()


def test_the_password_of_the_vaults_own_id_is_tried_first_and_every_other_after_it():
    data = (FIXTURES / "host_vars/w2.yml").read_bytes()  # vault id lab
    assert vault.parse(data).vault_id == "lab"
    wrong_first = VaultSecrets((("default", b"wrong"), ("other", b"also wrong"), ("lab", LAB_PASSWORD)))
    assert wrong_first.for_vault("lab") == [LAB_PASSWORD, b"wrong", b"also wrong"]
    assert opened(data, wrong_first) == PLAINTEXTS["host_vars/w2.yml"][1].encode()
    # The id in the header is not protected: Ansible opens a vault with any password that fits, and so do we.
    under_another_id = VaultSecrets((("default", LAB_PASSWORD),))
    assert opened(data, under_another_id) == PLAINTEXTS["host_vars/w2.yml"][1].encode()


@pytest.mark.skipif(not ANSIBLE_VAULT.exists(), reason="ansible-core is not installed (pip install -e .[dev])")
def test_what_ansible_vault_encrypts_now_opens_to_the_same_text(tmp_path):
    # Plaintexts around the 16-byte block (the padding is a whole block at 16), long, multi-line and not ASCII,
    # under a password with spaces and non-ASCII letters (the file's white space around it is not part of it).
    texts = ["x", "fifteen bytes!!", "sixteen bytes!!!", "seventeen bytes!!", "a\nb\n", "ünïcode ✓", "z" * 3000]
    (tmp_path / "pw").write_text("  pässwörd with spaces \n")
    argv = [str(ANSIBLE_VAULT), "encrypt_string", "--vault-id", "fresh@pw", *texts]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")} | {"ANSIBLE_HOME": str(tmp_path)}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True)
    blocks = [textwrap.dedent(block).encode() for block in done.stdout.split("!vault |\n")[1:]]
    secrets = vault_secrets.vault_secrets(vault_ids=[f"fresh@{tmp_path / 'pw'}"], environ={})
    assert [opened(block, secrets).decode() for block in blocks] == texts


def assembled(salt: bytes, mac: bytes, ciphertext: bytes, header: bytes = b"$ANSIBLE_VAULT;1.1;AES256") -> bytes:
    """A vault's text as ansible-vault lays it out (hex of the hex parts, in lines of 80)."""
    body = b"\n".join(part.hex().encode() for part in (salt, mac, ciphertext)).hex().encode()
    return b"\n".join([header, *(body[i : i + 80] for i in range(0, len(body), 80))]) + b"\n"


def crafted(plaintext_padded: bytes, password: bytes = PASSWORD, salt: bytes = b"s" * 32) -> bytes:
    """A vault whose HMAC holds, over `plaintext_padded` encrypted as it is (no padding added)."""
    keys = PBKDF2HMAC(hashes.SHA256(), 80, salt, 10_000).derive(password)
    encryptor = Cipher(algorithms.AES(keys[:32]), modes.CTR(keys[64:])).encryptor()
    ciphertext = encryptor.update(plaintext_padded) + encryptor.finalize()
    mac = hmac.HMAC(keys[32:64], hashes.SHA256())
    mac.update(ciphertext)
    return assembled(salt, mac.finalize(), ciphertext)


def test_a_vault_made_to_the_format_opens_and_one_whose_padding_is_wrong_is_damaged():
    assert opened(crafted(b"sixteen bytes!!!" + bytes([16]) * 16)) == b"sixteen bytes!!!"
    assert "damaged vault: its padding is wrong" in vault_error(crafted(b"fifteen bytes!!" + b"\x00"))


def test_a_wrong_password_is_one_line_naming_the_ids_tried():
    message = vault_error(WORKERS, VaultSecrets((("default", b"wrong"), ("lab", b"wrong too"))))
    assert "cannot decrypt: none of the 2 vault password(s) given (vault ids default, lab) opens this vault" in message
    assert "(vault id default): a wrong password, or the vault was altered" in message


def test_an_altered_ciphertext_is_refused_by_its_hmac_before_anything_is_decrypted():
    envelope = vault.parse(WORKERS)
    ciphertext = bytearray(envelope.ciphertext)
    ciphertext[-1] ^= 1  # in CTR mode this flips one bit of the plaintext's padding: only the HMAC can tell
    data = assembled(envelope.salt, envelope.mac, bytes(ciphertext))
    assert vault.decrypt(vault.parse(data), PASSWORD) is None  # no plaintext, though the password is right
    assert "a wrong password, or the vault was altered" in vault_error(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (WORKERS[:-3] + b"\n", "damaged vault: the body is not the hexadecimal salt, HMAC and ciphertext"),
        (WORKERS.split(b"\n")[0] + b"\n", "damaged vault: the body is not the hexadecimal"),
        (WORKERS.replace(b"\n6", b"\n \n6", 1), "damaged vault: the body is not the hexadecimal"),
        (
            assembled(PARTS.salt, PARTS.mac, PARTS.ciphertext[:-5]),
            f"damaged vault: the ciphertext is cut ({len(PARTS.ciphertext) - 5} bytes, not whole blocks of 16)",
        ),
        (assembled(PARTS.salt, PARTS.mac, PARTS.ciphertext[:-16]), "a wrong password, or the vault was altered"),
        (assembled(PARTS.salt, PARTS.mac, b""), "damaged vault: the ciphertext is cut (0 bytes"),
        (assembled(PARTS.salt, PARTS.mac[:-1], PARTS.ciphertext), "damaged vault: the salt or the HMAC is missing"),
        (assembled(b"", PARTS.mac, PARTS.ciphertext), "damaged vault: the salt or the HMAC is missing or cut"),
        (WORKERS.replace(b"AES256", b"AES128", 1), "damaged vault: cipher 'AES128' is not AES256"),
        (WORKERS.replace(b";1.1;", b";1.3;", 1), "damaged vault: format version '1.3' is not one of 1.1, 1.2"),
        (WORKERS.replace(b";AES256", b"", 1), "damaged vault: the first line is not $ANSIBLE_VAULT;1.1;AES256"),
        (WORKERS.replace(b"$ANSIBLE_VAULT", b"$ANSIBLE_VAULTS", 1), "damaged vault: the first line is not"),
    ],
    ids=[
        "text-cut",
        "header-only",
        "space-in-body",
        "ciphertext-cut",
        "block-cut",
        "no-ciphertext",
        "hmac-cut",
        "no-salt",
        "cipher",
        "version",
        "no-cipher",
        "name",
    ],
)
def test_a_damaged_or_cut_vault_is_one_line_saying_what_is_wrong(data, message):
    assert message in vault_error(data)


def test_without_a_password_a_vault_says_which_flags_give_one():
    data = (FIXTURES / "extra.yml").read_bytes()
    for secrets in (None, VaultSecrets()):
        assert vault_error(data, secrets) == (
            "f.yml:3: k: vaulted, give --vault-password-file/--vault-id/--ask-vault-pass"
        )


def test_no_password_reaches_a_repr_or_a_message():
    assert "correct horse" not in repr(ALL) and "staple" not in repr(ALL)
    assert repr(vault.VaultedStr("hunter2")) == "'(vault)'" and str(vault.VaultedStr("hunter2")) == "hunter2"
    data = (FIXTURES / "group_vars/workers.yml").read_bytes()
    assert PASSWORD.decode() not in vault_error(data, VaultSecrets((("default", b"wrong"),)))


# --------------------------------------------------------------------------- where passwords come from


def test_a_password_file_loses_the_white_space_around_it_and_a_script_its_line_end():
    secrets = vault_secrets.vault_secrets(
        [str(FIXTURES / "password.txt")], [f"lab@{FIXTURES / 'lab-pass.sh'}"], environ={}
    )
    # Ansible's order: --vault-id first, then --vault-password-file (under the default id).
    assert secrets.passwords == (("lab", LAB_PASSWORD), ("default", PASSWORD))


def test_a_client_script_is_told_the_vault_id_and_one_it_has_no_password_for_is_one_line():
    script = FIXTURES / "ops-client.sh"
    assert vault_secrets.vault_secrets(vault_ids=[f"ops@{script}"], environ={}).passwords == (("ops", OPS_PASSWORD),)
    with pytest.raises(VaultError) as caught:
        vault_secrets.vault_secrets(vault_ids=[f"dev@{script}"], environ={})
    assert (
        str(caught.value)
        == f"{script}: --vault-id dev: vault password client script has no password for vault id 'dev'"
    )


def test_the_environment_adds_its_identity_list_first_and_its_password_file_after_the_flags(tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("other pass\n")
    environ = {
        "ANSIBLE_VAULT_IDENTITY_LIST": f"lab@{FIXTURES / 'lab-pass.sh'}, ops@{FIXTURES / 'ops-client.sh'}",
        "ANSIBLE_VAULT_PASSWORD_FILE": str(FIXTURES / "password.txt"),
    }
    secrets = vault_secrets.vault_secrets([str(other)], environ=environ, configured_password_file="/nonexistent")
    assert secrets.passwords == (
        ("lab", LAB_PASSWORD),
        ("ops", OPS_PASSWORD),
        ("default", b"other pass"),
        ("default", PASSWORD),
    )


def test_the_configured_password_file_and_ids_count_when_the_environment_has_none(tmp_path):
    secrets = vault_secrets.vault_secrets(
        environ={"ANSIBLE_VAULT_IDENTITY": "mine"},
        configured_password_file=str(FIXTURES / "password.txt"),
        configured_ids=[f"ops@{FIXTURES / 'ops-client.sh'}"],
    )
    assert secrets.passwords == (("ops", OPS_PASSWORD), ("mine", PASSWORD))
    assert secrets.default_id == "mine"


def test_no_source_gives_no_secrets():
    assert not vault_secrets.vault_secrets(environ={})


def test_ask_vault_pass_prompts_as_ansible_does_and_a_vault_id_prompt_names_its_id():
    asked = []

    def prompt(question: str) -> str:
        asked.append(question)
        return "  typed pass \n"

    secrets = vault_secrets.vault_secrets(vault_ids=["lab@prompt"], ask_vault_pass=True, environ={}, prompt=prompt)
    assert asked == ["Vault password (lab): ", "Vault password: "]
    assert secrets.passwords == (("lab", b"typed pass"), ("default", b"typed pass"))


def test_a_prompt_ended_or_left_empty_is_one_line():
    def ended(question: str) -> str:
        raise EOFError

    for prompt, message in ((ended, "no vault password typed (end of input)"), (lambda q: "  ", "typed is empty")):
        with pytest.raises(VaultError) as caught:
            vault_secrets.vault_secrets(ask_vault_pass=True, environ={}, prompt=prompt)
        assert str(caught.value) == f"--ask-vault-pass: {'the vault password ' if 'empty' in message else ''}{message}"


def test_ask_vault_pass_with_a_password_file_is_refused_as_ansible_refuses_it():
    with pytest.raises(UsageError, match="cannot be used together"):
        vault_secrets.vault_secrets([str(FIXTURES / "password.txt")], ask_vault_pass=True, environ={})


def test_a_password_file_that_is_a_vault_is_opened_with_the_passwords_given_before_it(tmp_path):
    vaulted = tmp_path / "vaulted-password"
    shutil.copy(FIXTURES / "group_vars/workers.yml", vaulted)  # its plaintext is the "password" here
    secrets = vault_secrets.vault_secrets([str(FIXTURES / "password.txt"), str(vaulted)], environ={})
    assert secrets.passwords[1] == ("default", PLAINTEXTS["group_vars/workers.yml"][1].strip().encode())


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pass.sh"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o700)
    return path


def test_a_script_password_keeps_the_spaces_around_it_as_ansible_keeps_them(tmp_path):
    path = script(tmp_path, "printf '  spaced pass \\n\\r\\n'")
    assert vault_secrets.vault_secrets([str(path)], environ={}).passwords == (("default", b"  spaced pass "),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("echo part; exit 3", "vault password script exited 3"),
        ("kill -9 $$", "vault password script was killed by signal 9"),
        ("printf '\\r\\n'", "the vault password is empty"),
        ("exec sleep 30", "vault password script did not finish within 1 s"),
    ],
    ids=["exits-3", "killed", "empty", "hangs"],
)
def test_a_password_script_that_fails_is_one_line_naming_it(tmp_path, monkeypatch, body, message):
    monkeypatch.setattr(vault_secrets, "SCRIPT_TIMEOUT", 1)
    path = script(tmp_path, body)
    with pytest.raises(VaultError) as caught:
        vault_secrets.vault_secrets([str(path)], environ={})
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value) and "part" not in str(caught.value)  # its output is never shown


def test_an_executable_file_that_cannot_run_says_to_remove_its_execute_bit(tmp_path):
    path = tmp_path / "pass.txt"
    path.write_bytes(b"\x7fELF not really\n")
    path.chmod(0o700)
    with pytest.raises(VaultError, match="cannot run the vault password script: .*remove its execute bit"):
        vault_secrets.vault_secrets([str(path)], environ={})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "vault password file not found"),
        (lambda d: d, "a vault password file cannot be a folder"),
        (lambda d: (d / "empty").write_text(" \n\n") and d / "empty", "the vault password is empty"),
    ],
    ids=["missing", "folder", "empty"],
)
def test_a_password_file_that_cannot_give_a_password_is_one_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(VaultError) as caught:
        vault_secrets.vault_secrets(vault_ids=[f"x@{path}"], environ={})
    assert str(caught.value) == f"{path}: --vault-id x: {message}"
    assert caught.value.exit_code == 2
