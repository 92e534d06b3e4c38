"""Role head's settings: its knobs (names as in its defaults.yml) read for the head host."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafleet import redaction, rolesettings
from llamafleet.inventory import Host
from llamafleet.rolesettings import Refused, choice, flag, knob, line, whole, words
from llamafleet.variables import Variable, kind_of
from llamafleet.yamlfile import shorten

PROPORTION = re.compile(r"[0-9]+(\.[0-9]+)?")
# The flags of the pinned llama-server (b11434, its --help) whose value is a secret: on the command line it would
# reach `ps`, the journal, the world-readable unit, --diff and render. Flag -> (what it holds, what to do instead).
SECRET_FLAGS = {
    "--api-key": ("the key", "set api_key_file instead"),
    "--hf-token": ("a Hugging Face token", "deploy fetches hf:// models on the controller, with HF_TOKEN there"),
    "-hft": ("a Hugging Face token", "deploy fetches hf:// models on the controller, with HF_TOKEN there"),
    "--mcp-servers-json": (
        "the MCP servers' headers and environment (their tokens)",
        "put them in a file only the service user reads and name it with --mcp-servers-config",
    ),
}
_ONE_LINE = line()
_ARGUMENTS = words(numbers=True)


def _ip_address(value: Any, variable: Variable) -> str:
    text = _ONE_LINE(value, variable)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Refused(f"{shorten(text)!r} is not an IP address (0.0.0.0 listens on every one)") from None


def _extra_args(value: Any, variable: Variable) -> tuple[str, ...]:
    # Checked first, and nothing quoted: no message may show the value that follows a secret flag.
    for number, arg in enumerate(value if isinstance(value, list) else [], 1):
        if isinstance(arg, (dict, list)):  # `- --hf-token: x` in YAML is a mapping
            raise Refused(f"item {number} is {kind_of(arg)}, not a string: give a flag and its value as two items")
        flag = next(filter(None, map(secret_flag, str(arg).split())), None)
        if flag is not None:
            what, instead = SECRET_FLAGS[flag]
            raise Refused(f"{flag} would show {what} to `ps`, the journal and the unit file: {instead}")
        if redaction.has_user(str(arg)):
            raise Refused(f"item {number}: a URL with a user or password ('@' after '://') would show it to `ps`")
    return _ARGUMENTS(value, variable)


def secret_flag(word: str) -> str | None:
    """The secret flag `word` spells in any way llama.cpp reads it (--hf_token, --hf-token=x, -hft), else None."""
    option = word.split("=", 1)[0].lower()
    if option.startswith("--"):
        option = option.replace("_", "-")  # llama.cpp reads --hf_token as --hf-token
    return option if option in SECRET_FLAGS else None


@dataclass(frozen=True)
class HeadSettings:
    """What the head's unit is made of; the workers and who may connect come from cluster.view."""

    host: str
    llamafleet_user: str = knob(_ONE_LINE)
    llama_cpp_backend: str = knob(choice)
    api_host: str = knob(_ip_address)
    api_port: int = knob(whole(1))
    api_key_file: str | None = knob(_ONE_LINE)  # on the controller (api_key_path); the head gets paths.API_KEY_FILE
    n_gpu_layers: int = knob(whole(0))
    tensor_split: tuple[str, ...] = knob(words(PROPORTION, numbers=True))
    ctx_size: int = knob(whole(0))
    parallel: int = knob(whole(1))
    model_alias: str | None = knob(_ONE_LINE)
    metrics: bool = knob(flag)
    webui: bool = knob(flag)
    llama_server_extra_args: tuple[str, ...] = knob(_extra_args)
    api_tls: bool = knob(flag)
    api_tls_cert_file: str | None = knob(_ONE_LINE)  # on the controller, relative paths resolved by settings()
    api_tls_key_file: str | None = knob(_ONE_LINE)
    api_tls_ca_file: str | None = knob(_ONE_LINE)


def settings(host: Host, file: str | None = None) -> HeadSettings:
    """The head's settings; given the inventory `file`, api_key_file is the key file's path on the controller."""
    found = rolesettings.build(HeadSettings, host, file)
    if file is None:
        return found
    folder = Path(file).parent
    tls_files = {name: _beside(folder, getattr(found, name)) for name in TLS_FILES}
    return dataclasses.replace(found, api_key_file=str(_key_path(Path(file), found.api_key_file)), **tls_files)


TLS_FILES = ("api_tls_cert_file", "api_tls_key_file", "api_tls_ca_file")


def _beside(folder: Path, given: str | None) -> str | None:
    if not given:
        return None
    path = Path(given).expanduser()
    return str(path if path.is_absolute() else folder / path)


def api_key_path(inventory_file: Path, host: Host) -> Path:
    """api_key_file (relative to the inventory), else <inventory name>.api-key beside the inventory."""
    return Path(settings(host, str(inventory_file)).api_key_file)


def _key_path(inventory_file: Path, given: str | None) -> Path:
    folder = inventory_file.parent
    if not given:
        return folder / f"{inventory_file.stem}.api-key"
    path = Path(given).expanduser()
    return path if path.is_absolute() else folder / path
