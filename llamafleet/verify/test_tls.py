"""A head with api_tls serves its API over HTTPS only, with a certificate the inventory's CA vouches for."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafleet import tls
from llamafleet.roles.head import api_tls
from llamafleet.verify.plugin import require

testinfra_hosts = ["head"]


def _trust(node, expect):
    head = expect.head_settings(node)
    found = api_tls.trust(head, expect.file)
    if found is None:
        pytest.skip(f"{node.name}: api_tls is off")
    return head, found


def test_api_certificate_from_the_ca(node, observed, expect):
    """HTTPS answers with a certificate that chains to the inventory's CA, names the head and is valid 30 days more."""
    head, found = _trust(node, expect)
    wanted = (api_tls.verify_name(head, expect.file),)
    if found.own:
        wanted = api_tls.names(node, head, expect.view(node).head_address)
    presented = observed.facts["tls_cert"]
    problems = tls.cert_problems(presented, tls.load_ca(Path(found.ca_file)), wanted, days=tls.RENEW_DAYS)
    require(
        not problems,
        node.name,
        "the API's certificate",
        f"issued by {found.ca_file.name}, naming {', '.join(wanted)}, valid {tls.RENEW_DAYS} days more",
        "; ".join(problems) if presented else "no TLS handshake",
        "`invoke provision` issues it again; on the head: openssl x509 -noout -text -in " + tls.CERT_FILE,
    )


def test_plain_http_not_served(node, observed, expect):
    """A plain HTTP request to the API gets no HTTP answer: only TLS is spoken there."""
    _trust(node, expect)
    answer = observed.facts["plain_http"]
    require(
        not answer.startswith("HTTP/"),
        node.name,
        "plain HTTP refused",
        "no HTTP answer to plain HTTP",
        answer,
        "llama-server's --ssl-key-file/--ssl-cert-file in " + "/etc/systemd/system/llama-server.service",
    )
