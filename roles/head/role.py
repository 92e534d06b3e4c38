"""Role head: llama-server on the head, loading the model across the workers (the unit, rendered purely)."""

from __future__ import annotations

from pathlib import Path

from llamafleet import paths, units
from llamafleet.cluster import Cluster
from llamafleet.roles import sibling

settings = sibling(__file__, "settings")

NAME = "head"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "llama-server.service.j2"
UNIT = paths.SERVER_UNIT
UNIT_PATH = f"{paths.UNIT_DIR}/{UNIT}"
BINARY = f"{paths.BIN_DIR}/llama-server"
# Stands in for the model until `invoke deploy` names the real one.
MODEL_PLACEHOLDER = f"{paths.MODELS_DIR}/MODEL.gguf"
# systemd hands the root-only key file to the service as a credential readable by it alone (%d: their folder).
CREDENTIAL = "api-key"
# -lv 4 (trace) makes the load log name each worker: `load_tensors: RPC0[10.0.0.2:50052] model buffer size`.
VERBOSITY = "4"
WAIT_SECONDS = 60  # for every worker's RPC port to accept a connection before llama-server starts
RESTART_SECONDS = 5

# Opens and closes one TCP connection per worker (bash's /dev/tcp), sending nothing: rpc-server serves one
# client at a time and a probe that spoke would hold the head off. Arguments: IP PORT IP PORT ...
WAIT_SCRIPT = (
    "deadline=$((SECONDS+{seconds})); "
    "while [ $# -gt 0 ]; do "
    'until (: <>"/dev/tcp/$1/$2") 2>/dev/null; do '
    "if [ $SECONDS -ge $deadline ]; then "
    'echo "llamafleet: worker $1:$2 does not accept connections after {seconds} s" >&2; exit 1; fi; '
    "sleep 1; done; "
    "shift 2; done"
)


def wait_for_workers(cluster: Cluster, seconds: int = WAIT_SECONDS) -> list[str]:
    """ExecStartPre= command: every worker's RPC port accepts TCP, within `seconds` (hard stop 10 s later)."""
    endpoints = [part for worker in cluster.workers for part in (worker.address, str(worker.port))]
    script = WAIT_SCRIPT.format(seconds=seconds)
    return ["/usr/bin/timeout", str(seconds + 10), "/bin/bash", "-c", script, "wait-for-workers", *endpoints]


def exec_start(head_settings, cluster: Cluster, model: str) -> list[str]:
    """llama-server's command line; the key is read from a file, never passed on it."""
    s = head_settings
    args = [BINARY, "--model", model]
    if cluster.workers:
        args += ["--rpc", cluster.rpc_servers]
    args += ["-ngl", str(s.n_gpu_layers)]
    if s.tensor_split:
        args += ["--tensor-split", ",".join(s.tensor_split)]
    args += ["-c", str(s.ctx_size), "-np", str(s.parallel)]
    if s.model_alias:
        args += ["--alias", s.model_alias]
    args += ["--host", s.api_host, "--port", str(s.api_port)]
    if s.api_key_file:
        args += ["--api-key-file", units.Specifier(f"%d/{CREDENTIAL}")]
    args += ["--metrics"] if s.metrics else []
    args += [] if s.webui else ["--no-webui"]
    return [*args, *s.llama_server_extra_args, "-lv", VERBOSITY]


def allowed_addresses(cluster: Cluster) -> list[str]:
    """IPAddressAllow= of the head: API clients, the workers (the filter sees replies too) and loopback."""
    workers = [worker.address for worker in cluster.workers]
    return [*dict.fromkeys([*cluster.api_allow, *workers]), "localhost"]


def render_unit(
    head_settings, cluster: Cluster, model: str = MODEL_PLACEHOLDER, wait_seconds: int = WAIT_SECONDS
) -> str:
    """The text of llama-server.service: `model` is the GGUF path on the head (deploy fills it in)."""
    context = {
        "exec_start": units.exec_line(exec_start(head_settings, cluster, model)),
        "exec_start_pre": units.exec_line(wait_for_workers(cluster, wait_seconds)) if cluster.workers else None,
        "timeout_start": wait_seconds + 30,
        "credential": f"{CREDENTIAL}:{paths.API_KEY_FILE}" if head_settings.api_key_file else None,
        "user": head_settings.llamafleet_user,
        "workers": [worker.name for worker in cluster.workers],
        "allow": allowed_addresses(cluster),
        "working_directory": paths.BIN_DIR,
        "restart_seconds": RESTART_SECONDS,
        "backend": head_settings.llama_cpp_backend,
        "sandbox": units.sandbox(head_settings.llama_cpp_backend),
    }
    return units.render(TEMPLATE_DIR, TEMPLATE, context)


def files(host, cluster: Cluster, file: str | None = None, model: str = MODEL_PLACEHOLDER) -> dict[str, str]:
    """Every file this role renders on the head: path on the host -> content (the API key is copied, not rendered)."""
    return {UNIT_PATH: render_unit(settings.settings(host, file), cluster, model)}
