"""What verify reads of a head with api_tls: the certificate its API presents, and what plain HTTP gets."""

from __future__ import annotations

from llamafleet.facts import Fact
from llamafleet.shell import quote

PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
PEM_END = "-----END CERTIFICATE-----"


class PresentedCertificate(Fact):
    """The certificate the API presents (PEM of the first one sent; None when no TLS handshake happened). Nothing is
    verified here: the controller checks it against the CA it holds."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(address, port)

    def command(self) -> str:
        return quote(
            "timeout 10 openssl s_client -connect %s:%s </dev/null 2>/dev/null | "
            "sed -n '/^-----BEGIN CERTIFICATE-----$/,/^-----END CERTIFICATE-----$/p' | head -n 200 || true",
            *self.args,
        )

    def process(self, lines: list[str]) -> str | None:
        text = "\n".join(line.strip() for line in lines if line.strip())
        if PEM_BEGIN not in text or PEM_END not in text:
            return None
        start = text.index(PEM_BEGIN)
        return text[start : text.index(PEM_END, start) + len(PEM_END)] + "\n"


class PlainHttp(Fact):
    """The first line a plain HTTP request to the API gets ('' when none: the port speaks only TLS, or is closed)."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(address, port)

    def command(self) -> str:
        script = (
            'exec 3<>"/dev/tcp/$0/$1" || exit 0; '
            'printf "GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n" >&3; head -c 200 <&3 | head -n 1'
        )
        return quote("timeout 5 bash -c %s %s %s 2>/dev/null | tr -d '\\r' || true", script, *self.args)

    def process(self, lines: list[str]) -> str:
        return " ".join(line.strip() for line in lines if line.strip())[:200]
