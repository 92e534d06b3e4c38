"""Role head's variables (names as in its defaults.yml) read and checked for the head host."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from llamafleet import units, variables
from llamafleet.inventory import Host
from llamafleet.yamlfile import shorten

PROPORTION = re.compile(r"[0-9]+(\.[0-9]+)?")
# Would put a key on the command line, where `ps` and the journal see it: api_key_file is the way.
SECRET_FLAGS = ("--api-key",)


@dataclass(frozen=True)
class HeadSettings:
    """What the head's unit is made of; the workers and who may connect come from cluster.view."""

    host: str
    llamafleet_user: str
    llama_cpp_backend: str
    api_host: str
    api_port: int
    api_key_file: str | None  # on the controller; the head gets it as paths.API_KEY_FILE
    n_gpu_layers: int
    tensor_split: tuple[str, ...]
    ctx_size: int
    parallel: int
    model_alias: str | None
    metrics: bool
    webui: bool
    llama_server_extra_args: tuple[str, ...]


def settings(host: Host, file: str | None = None) -> HeadSettings:
    """The head's settings from its resolved variables (role defaults already applied by the inventory)."""
    read = units.HostVars(host.name, host.vars, file)
    return HeadSettings(
        host=host.name,
        llamafleet_user=read.text("llamafleet_user"),
        llama_cpp_backend=read.choice("llama_cpp_backend", variables.catalogue()["llama_cpp_backend"].choices),
        api_host=_address(read),
        api_port=read.whole("api_port", 1),
        api_key_file=read.text("api_key_file", optional=True),
        n_gpu_layers=read.whole("n_gpu_layers", 0),
        tensor_split=read.words("tensor_split", PROPORTION, numbers=True),
        ctx_size=read.whole("ctx_size", 0),
        parallel=read.whole("parallel", 1),
        model_alias=read.text("model_alias", optional=True),
        metrics=read.flag("metrics"),
        webui=read.flag("webui"),
        llama_server_extra_args=_extra_args(read),
    )


def _address(read: units.HostVars) -> str:
    value = read.text("api_host")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise read.error(
            "api_host", f"{shorten(value)!r} is not an IP address (0.0.0.0 listens on every one)"
        ) from None


def _extra_args(read: units.HostVars) -> tuple[str, ...]:
    raw = read.values.get("llama_server_extra_args")
    for arg in raw if isinstance(raw, list) else []:
        flag = str(arg).split("=", 1)[0]
        if flag in SECRET_FLAGS:  # checked first: no other message may quote the value that follows it
            raise read.error(
                "llama_server_extra_args",
                f"{flag} would show the key to `ps` and the journal: set api_key_file instead",
            )
    return read.words("llama_server_extra_args", numbers=True)
