"""A bug's report file and its line keep no secret: not the -e values of secret variables, not a URL's password or
query, not a token from the environment, wherever the command line or the error quoted them."""

from __future__ import annotations

import os
import string
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from invoke.exceptions import Exit

from llamafleet import cli_errors, variables

SETTINGS = settings(
    max_examples=int(os.environ.get("LLAMAFLEET_HYPOTHESIS_EXAMPLES", "150")),
    deadline=timedelta(seconds=20),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BECOME = "hunter2-become-Xq9"  # noqa: S105 - secrets the report must not hold
LOGIN = "hunter2-login-Zk4"  # noqa: S105
URL_PASSWORD = "pw-in-the-url-Lm3"  # noqa: S105
SIGNATURE = "sig-Aq7Rt0"
HF_TOKEN = "hf_environmentToken8Kd"  # noqa: S105


def crashed(argv: list[str], message: str, monkeypatch, cache: Path) -> tuple[str, str]:
    """(the error line, the report file's text) of a task that hits a bug raising `message`, run as `argv`."""
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(cache))
    monkeypatch.setattr(sys, "argv", argv)

    @cli_errors.reports_errors
    def task_with_a_bug() -> None:
        raise RuntimeError(message)

    with pytest.raises(Exit) as raised:
        task_with_a_bug()
    line = raised.value.message
    assert raised.value.code == 1 and len(line.splitlines()) == 1, line
    report = Path(line.split("the full traceback is in ")[1].split(" ")[0])
    assert report.parent == cache / "crashes"
    return line, report.read_text()


def test_the_report_keeps_the_command_line_without_its_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    url = f"https://alice:{URL_PASSWORD}@127.0.0.1:1/m/model.gguf?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=60"
    argv = [
        "/usr/bin/invoke", "deploy", "-i", "hosts.yml", "-e", f"ansible_become_password={BECOME}",
        f"--extra-vars=ansible_password={LOGIN}", "-e", "ctx_size=8192", "--model", url,
    ]  # fmt: skip
    bug = f"cannot use {url} as {BECOME!r} with {LOGIN} and Bearer {HF_TOKEN}"
    line, report = crashed(argv, bug, monkeypatch, tmp_path)
    for secret in (BECOME, LOGIN, URL_PASSWORD, SIGNATURE, HF_TOKEN, "alice"):
        assert secret not in line and secret not in report, secret
    first = report.splitlines()[0]
    assert first == (
        "llamafleet /usr/bin/invoke deploy -i hosts.yml -e 'ansible_become_password=(secret)' "
        "'--extra-vars=ansible_password=(secret)' -e ctx_size=8192 --model "
        "'https://***@127.0.0.1:1/m/model.gguf?***'"
    )
    assert "RuntimeError: cannot use https://***@127.0.0.1:1/m/model.gguf?*** as '(secret)'" in report
    assert line.startswith("error: internal error: RuntimeError: cannot use https://***@127.0.0.1:1/m/model.gguf?***")
    assert "(secrets hidden; please attach it to a bug report)" in line


@pytest.mark.parametrize("name", sorted(variables.SECRET_VARS) + ["hf_token", "my_api_key", "vault_password_file"])
def test_every_secret_variable_given_with_e_is_hidden(tmp_path, monkeypatch, name):
    _, report = crashed(["invoke", "provision", "-e", f"{name}={BECOME}"], "boom", monkeypatch, tmp_path)
    assert BECOME not in report and f"{name}=(secret)" in report


def test_plain_variables_and_the_error_stay_readable(tmp_path, monkeypatch):
    argv = ["invoke", "provision", "-e", "ctx_size=8192", "-e", "model_alias=team/m:1", "--limit", "w1"]
    line, report = crashed(argv, "list index out of range", monkeypatch, tmp_path)
    assert report.startswith("llamafleet invoke provision -e ctx_size=8192 -e model_alias=team/m:1 --limit w1\n")
    assert line.startswith("error: internal error: RuntimeError: list index out of range; the full traceback is in")


# Between markers no code, path or message holds: a secret found in a report is one that leaked.
SECRET_TEXT = st.text(
    alphabet=string.ascii_letters + string.digits + "!#$%&*+,-./:;<=>?@[]^_`{|}~'\" ", max_size=20
).map(lambda core: f"Zq{core}Xj")


@SETTINGS
@given(
    name=st.sampled_from(sorted(variables.SECRET_VARS)),
    value=SECRET_TEXT,
    spelling=st.sampled_from(["-e", "--extra-vars", "-e=", "--extra-vars=", "-e"]),
)
def test_a_secret_given_in_any_spelling_is_hidden_wherever_it_is_quoted(tmp_path, monkeypatch, name, value, spelling):
    argv = ["invoke", "provision", *([spelling, f"{name}={value}"] if not spelling.endswith("=") else [])]
    argv += [f"{spelling}{name}={value}"] if spelling.endswith("=") else []
    line, report = crashed(argv, f"bad value {value} for {name}", monkeypatch, tmp_path)
    assert value not in line and value not in report


@SETTINGS
@given(user=st.text(alphabet=string.ascii_letters, min_size=1, max_size=8), password=SECRET_TEXT)
def test_a_url_password_is_hidden_wherever_it_is_quoted(tmp_path, monkeypatch, user, password):
    assume(" " not in password)  # a URL ends at white space
    url = f"https://{user}:{password}@127.0.0.1:1/m.gguf"
    line, report = crashed(["invoke", "deploy", "--model", url], f"failed: {url}", monkeypatch, tmp_path)
    assert password not in line and password not in report
