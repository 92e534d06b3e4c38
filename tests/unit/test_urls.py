"""--model URLs: fetched exactly as named (the query kept: presigned URLs work), shown without their user, password
or query in every message and progress line."""

from __future__ import annotations

import base64
import hashlib
import os
import string
from datetime import timedelta

import pytest
from command_line import error_line, invoke
from httpserve import Served, serving
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from inventory_tree import closed_loopback
from model_samples import gguf

from llamafleet import download, redaction
from llamafleet.errors import InventoryError, OperationError, UsageError
from llamafleet.roles.llama_cpp import release
from llamafleet.roles.model import source

pytestmark = pytest.mark.usefixtures("controller_cache")
SETTINGS = settings(
    max_examples=int(os.environ.get("LLAMAFLEET_HYPOTHESIS_EXAMPLES", "150")) // 3,
    deadline=timedelta(seconds=20),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PASSWORD = "pw-Secret-9Vb"  # noqa: S105 - what no message may show
SIGNATURE = "X-Amz-Signature=c2lnbmF0dXJl&X-Amz-Credential=AKIAEXAMPLE%2F20250101&X-Amz-Expires=300"
HOSTS = closed_loopback()


def with_user(url: str, user: str = "alice", password: str = PASSWORD) -> str:
    return url.replace("http://", f"http://{user}:{password}@", 1)


# --------------------------------------------------------------------------- fetched as named


def test_a_presigned_url_is_fetched_with_its_query_and_named_by_its_path():
    data = gguf()
    with serving(Served({f"/bucket/model.gguf?{SIGNATURE}": data})) as served:
        model = source.resolve(f"{served.url}/bucket/model.gguf?{SIGNATURE}", progress=False)
    assert served.requests[0][0] == f"/bucket/model.gguf?{SIGNATURE}"
    assert model.name == "model.gguf" and model.sha256 == hashlib.sha256(data).hexdigest()


def test_the_query_picks_the_object_and_the_cache_entry():
    files = {"/m.gguf?version=1": gguf(seed=1), "/m.gguf?version=2": gguf(seed=2), "/m.gguf": gguf(seed=3)}
    with serving(Served(files)) as served:
        first = source.resolve(f"{served.url}/m.gguf?version=1", progress=False)
        second = source.resolve(f"{served.url}/m.gguf?version=2", progress=False)
    assert first.parts[0].path.read_bytes() == files["/m.gguf?version=1"]
    assert second.parts[0].path.read_bytes() == files["/m.gguf?version=2"]
    assert first.name == second.name == "m.gguf" and first.parts[0].path != second.parts[0].path


def test_every_part_of_a_split_model_is_asked_for_with_the_query():
    parts = {f"/d/s-{i:05d}-of-00002.gguf?download=true": gguf(1000, i) for i in (1, 2)}
    with serving(Served(parts)) as served:
        model = source.resolve(f"{served.url}/d/s-00001-of-00002.gguf?download=true#part", progress=False)
    assert [path for path, _ in served.requests] == list(parts)
    assert [p.name for p in model.parts] == ["s-00001-of-00002.gguf", "s-00002-of-00002.gguf"]


def test_a_user_and_password_in_the_url_are_sent_as_basic_auth():
    with serving(Served({"/m.gguf": gguf()})) as served:
        source.resolve(with_user(f"{served.url}/m.gguf"), progress=False)
    sent = served.requests[0][1]["Authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == f"alice:{PASSWORD}"


# --------------------------------------------------------------------------- never shown


def test_a_failed_download_names_the_url_without_user_password_or_query(capsys):
    with serving(Served({})) as served:
        url = with_user(f"{served.url}/m.gguf?{SIGNATURE}")
        with pytest.raises(OperationError) as failed:
            source.resolve(url, progress=True)
    assert str(failed.value) == (
        f"download of http://***@{served.url.removeprefix('http://')}/m.gguf?*** failed: HTTP 404 Not Found; "
        "run again to resume it"
    )
    shown = capsys.readouterr()
    assert PASSWORD not in shown.out + shown.err and "Signature" not in shown.out + shown.err


def test_an_unreachable_server_is_named_without_the_query_requests_quotes():
    url = with_user(f"http://127.0.0.1:1/m.gguf?{SIGNATURE}")
    with pytest.raises(OperationError) as failed:
        source.resolve(url, progress=False)
    message = str(failed.value)
    assert message.startswith("download of http://***@127.0.0.1:1/m.gguf?*** failed: ")
    assert PASSWORD not in message and "c2lnbmF0dXJl" not in message and "AKIA" not in message


def test_progress_names_the_file_not_its_query(capsys):
    with serving(Served({f"/m.gguf?{SIGNATURE}": gguf()})) as served:
        source.resolve(with_user(f"{served.url}/m.gguf?{SIGNATURE}"), progress=True)
    err = capsys.readouterr().err
    assert "m.gguf: " in err and "Signature" not in err and PASSWORD not in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://alice:{PASSWORD}@127.0.0.1:1/page.html?{SIGNATURE}", "the file name must end in .gguf"),
        (f"http://alice:{PASSWORD}@127.0.0.1:1/m-00002-of-00003.gguf?a=b", "is part 2 of 3"),
        (f"http://alice:{PASSWORD[:4]}/{PASSWORD[4:]}@127.0.0.1:1/m.gguf", "is not a valid URL"),
        (f"http://alice:{PASSWORD}@[::1/m.gguf", "is not a valid URL"),
        (f"ftp://alice:{PASSWORD}@127.0.0.1/m.gguf", "use a file, an http(s):// URL"),
    ],
)
def test_a_url_refused_before_fetching_is_named_without_its_secrets(url, message):
    with pytest.raises(UsageError) as refused:
        source.resolve(url, progress=False)
    assert message in str(refused.value) and "***@" in str(refused.value)
    assert PASSWORD[:4] not in str(refused.value) and PASSWORD[4:] not in str(refused.value)


def test_a_page_that_is_not_gguf_is_refused_naming_the_url_without_its_secrets():
    with (
        serving(Served({f"/page.gguf?{SIGNATURE}": b"<html>" + b"x" * 100})) as served,
        pytest.raises(UsageError) as refused,
    ):
        source.resolve(with_user(f"{served.url}/page.gguf?{SIGNATURE}"), progress=False)
    assert str(refused.value).endswith("/page.gguf?*** is not a GGUF file (version 2 or 3); nothing was sent")
    assert PASSWORD not in str(refused.value) and "***@" in str(refused.value)


def test_a_source_archive_with_another_checksum_is_named_without_the_urls_secrets():
    with serving(Served({f"/llama.cpp-b11434.tar.gz?{SIGNATURE}": b"not the pinned archive"})) as served:
        url = with_user(f"{served.url}/llama.cpp-b11434.tar.gz?{SIGNATURE}")
        with pytest.raises(InventoryError) as refused:
            release.download_checked(url, "f" * 64, "h1")
    shown = f"http://***@{served.url.removeprefix('http://')}/llama.cpp-b11434.tar.gz?***"
    assert str(refused.value).startswith(f"host h1: llama_cpp_source_sha256: {shown} has sha256 ")
    assert PASSWORD not in str(refused.value) and "Signature" not in str(refused.value)


# No '@' here: whatever a parser takes for the host of the URLs below is then the loopback user or host part.
PASSWORDS = st.text(alphabet=string.ascii_letters + string.digits + "!$&'()*+,;=:-._~%/?#[]", min_size=4, max_size=24)


@SETTINGS
@given(user=st.sampled_from(["127.0.0.1", "127.0.0.3"]), core=PASSWORDS, query=PASSWORDS)
def test_no_password_or_query_of_a_url_reaches_a_message(user, core, query):
    assume(query.strip("?&#") == query)
    password = f"Zq{core}Xj"  # between markers no message holds: a password found in one leaked
    url = f"http://{user}:{password}@127.0.0.1:1/m.gguf?sig={query}"
    with pytest.raises((OperationError, UsageError)) as refused:
        source.resolve(url, progress=False)
    assert password not in str(refused.value)
    assert f"sig={query}" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/pw@127.0.0.3/m.gguf",  # user 127.0.0.1, password 1/pw: urllib would ask 127.0.0.1:1
        "http://127.0.0.1:/pw@127.0.0.3/m.gguf",
    ],
)
def test_an_at_sign_after_the_host_is_refused_not_guessed(url):
    with serving(Served({})) as served, pytest.raises(UsageError) as refused:
        source.resolve(url.replace("127.0.0.3", served.url.removeprefix("http://")), progress=False)
    assert "an '@' after the host name; write '/', '?', '#' and '@' in a user or password as %2F" in str(refused.value)
    assert "pw" not in str(refused.value) and served.requests == []


def test_a_password_requests_cannot_send_is_one_error_naming_the_url_without_it():
    with pytest.raises(OperationError) as failed:
        source.resolve(f"http://alice:%80{PASSWORD}@127.0.0.1:1/m.gguf", progress=False)
    assert str(failed.value).startswith(
        "download of http://***@127.0.0.1:1/m.gguf failed: its user, password or host name cannot be sent as written"
    )
    assert PASSWORD not in str(failed.value)


def test_an_at_sign_in_the_password_is_read_as_the_user_part():
    with serving(Served({"/m.gguf": gguf()})) as served:
        source.resolve(served.url.replace("http://", "http://alice:p@ss@", 1) + "/m.gguf", progress=False)
    sent = served.requests[0][1]["Authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == "alice:p@ss"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@host/m.gguf?X-Amz-Signature=abc#frag", "https://***@host/m.gguf?***"),
        ("https://token@host:8443/m.gguf", "https://***@host:8443/m.gguf"),
        ("https://u:p/a?b#c@host/m.gguf?sig=x", "https://***@host/m.gguf?***"),
        ("https://host/m.gguf", "https://host/m.gguf"),
        ("https://host/m.gguf?", "https://host/m.gguf?***"),
    ],
)
def test_a_url_is_shown_without_user_password_query_or_fragment(url, shown):
    assert redaction.url_shown(url) == shown


# --------------------------------------------------------------------------- the command line


def test_the_command_line_refuses_a_bad_model_url_with_one_line_before_any_connection(tmp_path, command_env):
    (tmp_path / "hosts.yml").write_text(HOSTS)
    url = f"http://alice:{PASSWORD}@127.0.0.1:1/weights.bin?{SIGNATURE}"
    result = invoke("deploy", "-i", str(tmp_path / "hosts.yml"), "--model", url, env=command_env)
    error_line(result, "--model: http://***@127.0.0.1:1/weights.bin?***: the file name must end in .gguf")
    assert PASSWORD not in result.stdout + result.stderr and "c2lnbmF0dXJl" not in result.stderr


def test_the_cache_slot_of_a_url_holds_no_secret(tmp_path):
    url = with_user(f"http://127.0.0.1:1/m.gguf?{SIGNATURE}")
    assert PASSWORD not in str(download.slot(url)) and "Signature" not in str(download.slot(url))
