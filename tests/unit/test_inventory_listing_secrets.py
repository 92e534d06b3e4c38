"""`invoke inventory` shows no secret held inside a value: URL users, passwords and queries, secret flags' values."""

from __future__ import annotations

import json

import pytest

from tests.command_line import environment, invoke

INVENTORY = """\
all:
  vars:
    llama_cpp_source_url: "http://builder:pw-SOURCE@127.0.0.1:9/src.tar.gz?sig=SIGNATURE"
  children:
    head:
      hosts:
        h1:
          ansible_host: 127.0.0.1
          llama_server_extra_args: [--hf-token, hf_TOKENVALUE, --temp, "0.7", --api-key=KEYVALUE, -hft, hf_SHORT]
    workers:
      hosts:
        w1: {ansible_host: 127.0.0.2}
"""
SECRETS = ("pw-SOURCE", "SIGNATURE", "hf_TOKENVALUE", "KEYVALUE", "hf_SHORT")


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_the_listing_hides_secrets_inside_values(tmp_path, json_flag):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    done = invoke("inventory", "-i", str(path), *json_flag, env=environment())
    assert done.returncode == 0, done.stderr
    assert not [secret for secret in SECRETS if secret in done.stdout + done.stderr]
    if json_flag:
        args = json.loads(done.stdout)["hosts"]["h1"]["vars"]["llama_server_extra_args"]
        assert args == ["--hf-token", "(secret)", "--temp", "0.7", "--api-key=(secret)", "-hft", "(secret)"]
