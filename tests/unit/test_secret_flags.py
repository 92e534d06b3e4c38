"""llama_server_extra_args: every flag of the pinned llama-server that carries a secret is refused in every spelling
llama.cpp reads, and so is a URL with a password; the value never appears in the message, the unit or the output."""

from __future__ import annotations

import json
import os
import re
import string
from datetime import timedelta

import pytest
from command_line import error_line, invoke_all
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from inventory_tree import closed_loopback
from recordings import REFERENCE_BUILD

from llamafleet import cluster, inventory
from llamafleet.errors import InventoryError
from llamafleet.roles.head import role as head_role
from llamafleet.roles.head.settings import SECRET_FLAGS

SECRET = "hf_unitTestSecret7Q2x"  # noqa: S105 - the value that must never be shown
HOSTS = closed_loopback('llama_cpp_source_sha256: "' + "0" * 64 + '"')
MCP_SERVERS = json.dumps({"mcpServers": {"gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": SECRET}}}})
HELP = REFERENCE_BUILD / "help-llama-server.txt"  # `llama-server --help` of the pinned build (b11434)
# An option line of --help: its spellings (comma-separated), the name of its value, then the description.
OPTION = re.compile(r"((?:-[\w.-]+,\s+)*-[\w.-]+)((?: \S+)*)(?:\s{2,}.*)?$")
SPELLING = re.compile(r"--?[A-Za-z][\w-]*")
SETTINGS = settings(
    max_examples=int(os.environ.get("LLAMAFLEET_HYPOTHESIS_EXAMPLES", "150")),
    deadline=timedelta(seconds=20),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def help_options() -> dict[str, str]:
    """Every spelling of every option the pinned build's --help lists -> the name of its value ('' for none)."""
    found = {}
    for line in HELP.read_text().splitlines():
        match = OPTION.match(line)
        if match is None:
            continue
        for spelling in re.split(r",\s+", match[1]):
            if SPELLING.fullmatch(spelling):
                found[spelling] = match[2].strip()
    return found


OPTIONS = help_options()
PLAIN_FLAGS = sorted(set(OPTIONS) - set(SECRET_FLAGS))


@pytest.fixture
def hosts_file(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(HOSTS)
    return path


def head_unit(hosts_file, extra_args: list) -> str:
    inv = inventory.load(hosts_file, {"llama_server_extra_args": extra_args})
    settings = head_role.settings.settings(inv.head, str(hosts_file))
    return head_role.render_unit(settings, cluster.view(inv), head_role.MODEL_PLACEHOLDER)


def refusal(hosts_file, extra_args: list) -> str:
    """The message refusing `extra_args`: one line naming the file, the head and the key, never the secret."""
    with pytest.raises(InventoryError) as caught:
        head_unit(hosts_file, extra_args)
    message = str(caught.value)
    assert message.startswith(f"{hosts_file}: host h1: llama_server_extra_args: "), message
    assert caught.value.exit_code == 2 and "\n" not in message
    return message


# --------------------------------------------------------------------------- the pinned build's flags


def test_the_help_is_read_whole():
    assert len(OPTIONS) > 300 and OPTIONS["--api-key"] == "KEY" and OPTIONS["-hft"] == "TOKEN"
    assert OPTIONS["--rpc"] == "SERVERS" and OPTIONS["--no-webui"] == "" and OPTIONS["-md"] == "FNAME"


def test_every_flag_whose_value_is_a_key_or_token_is_a_secret_flag():
    by_value = {spelling for spelling, value in OPTIONS.items() if value in ("KEY", "TOKEN")}
    assert by_value == {"--api-key", "--hf-token", "-hft"}
    assert by_value <= set(SECRET_FLAGS)


def test_every_secret_flag_is_a_flag_of_the_pinned_build():
    assert set(SECRET_FLAGS) <= set(OPTIONS)


def test_no_other_flag_of_the_pinned_build_is_taken_for_a_secret(hosts_file):
    args = [word for flag in PLAIN_FLAGS for word in (flag, "1", f"{flag}=1")]
    assert " ".join(args) in head_unit(hosts_file, args)


def test_plain_flags_reach_the_unit_as_given(hosts_file):
    args = ["--threads", 4, "--ssl-key-file", "/etc/llamafleet/tls.key", "--hf-repo", "org/model", "--api-key-file"]
    unit = head_unit(hosts_file, [*args, "/etc/llamafleet/more-keys"])
    assert "--threads 4 --ssl-key-file /etc/llamafleet/tls.key --hf-repo org/model --api-key-file" in unit


# --------------------------------------------------------------------------- every spelling refused, nothing shown


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--hf-token", SECRET], "--hf-token"),
        (["--threads", 4, f"--hf-token={SECRET}"], "--hf-token"),
        (["--hf_token", SECRET], "--hf-token"),  # llama.cpp reads _ as - in long flags
        (["--HF-Token", SECRET], "--hf-token"),
        (["-hft", SECRET], "-hft"),
        ([f"-hft={SECRET}"], "-hft"),
        ([f"--hf-token {SECRET}"], "--hf-token"),  # one item: still one word of the unit's command line
        ([f"--alias m --hf-token {SECRET}"], "--hf-token"),
        (["--api_key", SECRET], "--api-key"),
        ([f"--api-key={SECRET}"], "--api-key"),
        (["--mcp-servers-json", MCP_SERVERS], "--mcp-servers-json"),
        (["--mcp_servers_json", "{}"], "--mcp-servers-json"),
    ],
)
def test_a_secret_flag_is_refused_in_every_spelling_without_its_value(hosts_file, args, flag):
    message = refusal(hosts_file, args)
    assert f"llama_server_extra_args: {flag} would show " in message
    assert SECRET not in message


def test_a_flag_and_value_written_as_a_mapping_are_refused_without_the_value(hosts_file):
    message = refusal(hosts_file, ["--threads", 2, {"--hf-token": SECRET}])
    assert message.endswith("item 3 is a mapping, not a string: give a flag and its value as two items")
    assert SECRET not in message


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{SECRET}@127.0.0.1/m.gguf",
        f"https://{SECRET}@127.0.0.1/m.gguf",
        f"http://u:{SECRET}/x@127.0.0.1:1/m.gguf",  # a '/' in the password: urllib would read a port
    ],
)
def test_a_url_with_a_password_is_refused_without_it(hosts_file, url):
    for args in (["--model-url", url], [f"--mmproj-url={url}"]):
        message = refusal(hosts_file, args)
        assert "a URL with a user or password ('@' after '://') would show it to `ps`" in message
        assert SECRET not in message


def spelled(flag: str, data: st.DataObject) -> str:
    """`flag` spelt as llama.cpp (or a sloppy hand) might: any letter case, '_' for '-' within a long flag."""
    letters = [c.upper() if data.draw(st.booleans()) else c for c in flag]
    if flag.startswith("--"):
        letters[2:] = ["_" if c == "-" and data.draw(st.booleans()) else c for c in letters[2:]]
    return "".join(letters)


# Between markers no path or message holds: a value found in a message is one that leaked.
VALUES = st.text(alphabet=string.ascii_letters + string.digits + "-_.:/+=@{}\"'", max_size=30).map(lambda v: f"Zq{v}Xj")


@SETTINGS
@given(data=st.data(), flag=st.sampled_from(sorted(SECRET_FLAGS)), value=VALUES)
def test_any_spelling_of_a_secret_flag_anywhere_is_refused_and_its_value_never_shown(tmp_path, data, flag, value):
    assume("://" not in value)
    before = data.draw(st.lists(st.sampled_from(PLAIN_FLAGS[:60]), max_size=3))
    word = spelled(flag, data)
    given_as = data.draw(st.sampled_from(["two items", "flag=value", "one item"]))
    secret_args = {"two items": [word, value], "flag=value": [f"{word}={value}"], "one item": [f"{word} {value}"]}
    hosts_file = tmp_path / "hosts.yml"
    hosts_file.write_text(HOSTS)
    message = refusal(hosts_file, [*before, *secret_args[given_as], "--threads", 2])
    assert f"llama_server_extra_args: {flag} would show " in message
    assert value not in message.split("llama_server_extra_args: ", 1)[1]


@SETTINGS
@given(user=st.text(alphabet=string.ascii_letters, max_size=8), password=VALUES)
def test_any_url_with_a_password_is_refused_and_never_shown(tmp_path, user, password):
    hosts_file = tmp_path / "hosts.yml"
    hosts_file.write_text(HOSTS)
    message = refusal(hosts_file, ["--model-url", f"https://{user}:{password}@127.0.0.1/m.gguf"])
    assert password not in message.split("llama_server_extra_args: ", 1)[1]


# --------------------------------------------------------------------------- the command line


def test_the_command_line_refuses_a_secret_flag_with_one_line_before_any_connection(hosts_file, command_env):
    given = {
        "provision": ["provision", "-i", str(hosts_file)],
        "render": ["render", "-i", str(hosts_file), "--out", str(hosts_file.parent / "units")],
        "diff": ["provision", "-i", str(hosts_file), "--check", "--diff"],
    }
    extra = ["-e", f"llama_server_extra_args=[--threads, 2, -hft, {SECRET}]"]
    results = invoke_all({name: [*args, *extra] for name, args in given.items()}, env=command_env)
    for result in results.values():
        error_line(result, str(hosts_file), "host h1", "llama_server_extra_args", "-hft would show a Hugging Face")
        assert SECRET not in result.stdout + result.stderr
    assert not (hosts_file.parent / "units").exists()
