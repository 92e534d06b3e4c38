"""What a message or a report may show of a secret: nothing; URLs lose their user and query, secrets their value."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .variables import SECRET_SHOWN, SECRET_VARS

# Words that make a name (a variable, an environment variable) one of a secret, besides SECRET_VARS' names.
SECRET_WORDS = frozenset(
    {"pass", "passwd", "password", "passphrase", "token", "secret", "credential", "credentials", "key", "apikey"}
)
HIDDEN = "***"  # what stands for a URL's user and password, and for its query
SHORTEST_HIDDEN = 4  # a secret value shorter than this is not searched for in free text (it would hide words)
_NAME_IS = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=")  # KEY= in -e KEY=VALUE, -eKEY=VALUE, --extra-vars=KEY=VALUE
# A URL runs to the next white space: a password may hold quotes and brackets, and showing a quote too is harmless.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
# "url: /m.gguf?X-Amz-Signature=..." in requests' messages: the query up to white space or closing punctuation
_PATH_QUERY = re.compile(r"(/[^\s?]*)\?\S*?(?=['\")\]},;.]*(?:\s|$))")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether a variable named `name` holds a secret: an inventory secret, or a name with a word that says so."""
    if name in SECRET_VARS:
        return True
    return any(word in SECRET_WORDS for word in re.split(r"[^a-z0-9]+", name.lower()))


def url_shown(url: str) -> str:
    """`url` as a message may show it: no user or password (***@host...), no query (?***), no fragment.

    Everything up to the last '@' goes: a password may hold '/', '?' or '#' unencoded, and what it hides of
    a path with an '@' in it is only shown, never fetched.
    """
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = f"{HIDDEN}@{rest.rpartition('@')[2]}"
    rest = rest.partition("#")[0]
    rest, query, _ = rest.partition("?")
    return f"{scheme}{sep}{rest}" + (f"?{HIDDEN}" if query else "")


def has_user(text: str) -> bool:
    """Whether `text` holds a URL with a user or password: an '@' after '://' (the rule url_shown hides by)."""
    return any("@" in found for found in _URL.findall(text))


def text_shown(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets` (the values themselves), every URL's user and query and every bearer token
    hidden."""
    for secret in sorted({s for s in secrets if len(s) >= SHORTEST_HIDDEN}, key=len, reverse=True):
        text = text.replace(secret, SECRET_SHOWN)
    text = _URL.sub(lambda match: _url_in_text(match[0]), text)
    text = _PATH_QUERY.sub(lambda match: f"{match[1]}?{HIDDEN}", text)
    return _BEARER.sub(lambda match: f"{match[1]}{SECRET_SHOWN}", text)


def _url_in_text(found: str) -> str:
    """A URL found in text, shown; the quotes and brackets that close around it stay."""
    url = found.rstrip("'\")]},;.")
    return url_shown(url) + found[len(url) :]


def argv_shown(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """A command line as a report may keep it, and the secret values it held (to hide them elsewhere too).

    In each word, the value after the first KEY= whose KEY is a secret's name is hidden (`-e KEY=VALUE` in every
    spelling invoke takes); URLs lose their user and query.
    """
    shown, hidden = [], []
    for word in argv:
        for match in _NAME_IS.finditer(word):
            if secret_name(match[1]):
                value = word[match.end() :]
                hidden += [value, value.strip().strip("'\"")]
                word = word[: match.end()] + SECRET_SHOWN
                break
        shown.append(text_shown(word))
    return shown, [value for value in hidden if value]


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    """The values of the environment variables whose names say they hold a secret (HF_TOKEN and the like)."""
    return [value for name, value in environ.items() if secret_name(name) and value.strip()]
