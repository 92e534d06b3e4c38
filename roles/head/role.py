"""Role head: llama-server on the head, loading the model across the workers (the unit, rendered purely)."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from llamafleet import controller_files, paths, units
from llamafleet.cluster import Cluster
from llamafleet.errors import InventoryError
from llamafleet.facts import CommandOutput, FileContent
from llamafleet.operations import files as file_ops
from llamafleet.operations import systemd
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell
from llamafleet.roles import Role, templates_beside
from llamafleet.roles.model.source import Deploying
from llamafleet.roles.rpc_worker.role import Restarted
from llamafleet.roles.tunnel import wireguard
from llamafleet.shell import quote

from . import api_tls, settings

NAME = "head"
TEMPLATE_DIR = templates_beside(__file__)
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
# At that level llama-server also logs the last four characters of its key (`api_keys: ****abcd`): its output
# passes a filter that drops that line before the journal sees it. bash runs llama-server in its own place
# (exec: it is the unit's main process); sed, its child, writes every other line through unchanged.
KEY_LINE_DROPPED = ["/bin/bash", "-c", 'exec "$@" > >(exec /bin/sed -u "/ api_keys: /d") 2>&1', "llama-server"]
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


# Behind balancers, before llama-server is told to stop (it answers none of the requests it holds after SIGTERM):
# its listening socket is closed (ss -K), so the balancers' new requests and checks are refused and go to the
# other heads, then the requests it holds are waited for, at most STOP_DRAIN_SECONDS. Closing the socket also
# cuts the streamed responses in progress (llama-server then stops writing them), so it is closed at an instant
# when llama-server holds no request: llama-server is frozen (SIGSTOP, every thread) while its connections are
# counted, those accepted (established minus the listener's queue) must be none, else it runs on and the count is
# tried again 50 ms later; after STOP_DRAIN_SECONDS the socket is closed anyway. Connections still queued when it
# closes are reset unanswered, which a balancer sends to another head. Arguments: PORT SECONDS; $MAINPID is
# llama-server. Runs privileged ('+'): ss -K needs CAP_NET_ADMIN.
STOP_DRAIN_SECONDS = 60
DRAIN_SCRIPT = "; ".join(
    [
        'port=$1; pid=$MAINPID; deadline=$((SECONDS+$2)); trap \'[ -z "$pid" ] || kill -CONT "$pid" 2>/dev/null\' EXIT',
        'held() { echo $(( $(ss -Htn state established "( sport = :$port )" | wc -l)'
        " - $(ss -Hltn \"( sport = :$port )\" | awk '{ n += $2 } END { print n + 0 }') )); }",
        "frozen() { ! ps -L -o stat= -p \"$pid\" | grep -qv '^T'; }",
        'while [ -n "$pid" ] && [ $SECONDS -lt $deadline ] && kill -STOP "$pid" 2>/dev/null; do '
        "n=0; until frozen || [ $((n += 1)) -gt 1000 ]; do sleep 0.001; done; "
        '[ "$(held)" -le 0 ] && break; kill -CONT "$pid"; sleep 0.05; done',
        'ss -K state listening "( sport = :$port )" >/dev/null 2>&1',
        '[ -z "$pid" ] || kill -CONT "$pid" 2>/dev/null',
        'while [ -n "$(ss -Htn state established "( sport = :$port )")" ] && [ $SECONDS -lt $deadline ]; do '
        "sleep 0.2; done",
    ]
)


def drain_on_stop(head_settings, seconds: int = STOP_DRAIN_SECONDS) -> list[str]:
    """ExecStop= command: new connections to the API refused, then its requests in flight finished, bounded."""
    return ["+/bin/bash", "-c", DRAIN_SCRIPT, "drain", str(head_settings.api_port), str(seconds)]


def exec_start(head_settings, cluster: Cluster, model: str) -> list[str]:
    """llama-server's command line; the key is read from a file, never passed on it."""
    s = head_settings
    args = [*KEY_LINE_DROPPED, BINARY, "--model", model]
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
    args += api_tls.server_args(s)
    args += ["--metrics"] if s.metrics else []
    args += [] if s.webui else ["--no-webui"]
    return [*args, *s.llama_server_extra_args, "-lv", VERBOSITY]


def allowed_addresses(cluster: Cluster) -> list[str]:
    """IPAddressAllow= of the head: API clients, the workers (the filter sees replies too) and loopback."""
    workers = [worker.address for worker in cluster.workers]
    return [*dict.fromkeys([*cluster.api_allow, *workers]), "localhost"]


def render_unit(
    head_settings,
    cluster: Cluster,
    model: str = MODEL_PLACEHOLDER,
    wait_seconds: int = WAIT_SECONDS,
    behind_balancers: bool = False,
) -> str:
    """The text of llama-server.service: `model` is the GGUF path on the head (deploy fills it in). Behind
    balancers, a stop (a restart, a reboot) first drains the API (drain_on_stop)."""
    s = head_settings
    context = {
        **units.service_context(exec_start(s, cluster, model), s.llamafleet_user, s.llama_cpp_backend, RESTART_SECONDS),
        "exec_start_pre": units.exec_line(wait_for_workers(cluster, wait_seconds)) if cluster.workers else None,
        "exec_stop": units.exec_line(drain_on_stop(s)) if behind_balancers else None,
        "timeout_start": wait_seconds + 30,
        "credential": f"{CREDENTIAL}:{paths.API_KEY_FILE}" if s.api_key_file else None,
        "tls_credentials": api_tls.credentials(s),
        "workers": [worker.name for worker in cluster.workers],
        "allow": allowed_addresses(cluster),
        **wireguard.unit_order(cluster.tunnel),
    }
    return units.render(TEMPLATE_DIR, TEMPLATE, context)


def files(
    host, cluster: Cluster, file: str | None = None, model: str = MODEL_PLACEHOLDER, behind_balancers: bool = False
) -> dict[str, str]:
    """Every file this role renders on the head: path on the host -> content (the API key is copied, not rendered)."""
    return {UNIT_PATH: render_unit(settings.settings(host, file), cluster, model, behind_balancers=behind_balancers)}


# -- provisioning: the unit, the key, the service once a model is deployed, readiness ----------------------

RESTART = "restart llama-server"
READY = "llama-server ready"
READY_SECONDS = 600  # a multi-GB model over RPC takes minutes to load
KEY_BYTES = 32
# One request to /health from the head itself (loopback is always allowed); prints the HTTP status line.
PROBE = (
    'exec 3<>"/dev/tcp/$1/$2" && printf "GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n" >&3 && head -n 1 <&3'
)
# Until /health answers 200 (503 while the model loads), bounded. A llama-server that exits meanwhile
# (systemd counts a restart) failed to load: stop at once. On failure, the head's journal tail.
WAIT = (
    'unit=$4; start=$SECONDS; restarts() { systemctl show -p NRestarts --value "$unit"; }; before=$(restarts); '
    'fail() { echo "llama-server $1; its journal:" >&2; journalctl -u "$unit" -n 50 --no-pager -o short-iso >&2; '
    "exit 1; }; "
    'until timeout 5 bash -c "$0" probe "$1" "$2" 2>/dev/null | grep -q " 200"; do '
    '[ "$(restarts)" = "$before" ] || fail "exited while starting"; '
    '[ $((SECONDS-start)) -lt "$3" ] || fail "not ready after $3 s"; '
    "sleep 1; done; "
    'echo "ready after $((SECONDS-start)) s"'
)


@dataclass
class Serving:
    """What the head serves in this run, per head: prepare's hand-off to the operations and handlers, and the
    restart-to-ready time the task reports."""

    models: dict[str, str | None] = field(default_factory=dict)  # the model file's name, None before any deploy
    aliases: dict[str, str | None] = field(default_factory=dict)  # deploy's --alias, over model_alias
    ready_seconds: dict[str, float] = field(default_factory=dict)  # restart to /health 200, when this run waited


def validate(run, hosts) -> None:
    """Before any connection, changing nothing: the cluster's addresses and the head's settings."""
    _ = run.fleet  # computed once per run: this checks the addresses before any connection
    for host in hosts:
        api_tls.trust(settings.settings(host, run.inventory_file), run.inventory_file)


def setup(run, hosts) -> None:
    """The API key file on the controller: one that exists is checked to be a key file (nothing else reaches the
    head); a missing one is made once, inside the inventory's folder only (never under --check)."""
    for host in hosts:
        key = _key_file(run, host)
        if run.check:
            made = "" if key.exists() else ", made first: it does not exist yet"
            run.say(controller_files.reads_line(key, "api_key_file") + made)
        elif not key.exists():
            _generate_key(key)
            run.say(f"api key: generated {key} (mode 0600; the head reads its copy from {paths.API_KEY_FILE})")
        api_tls.setup(run, settings.settings(host, run.inventory_file))


def _key_file(run, host) -> Path:
    """The head's key file on the controller: a key file when it exists, else at a place a key may be made."""
    key = Path(settings.settings(host, run.inventory_file).api_key_file)
    if key.exists():
        controller_files.api_key(key, where=f"host {host.name}")
        return key
    problem = controller_files.new_key_problem(key, Path(run.inventory_file).parent)
    if problem:
        raise InventoryError(problem, where=f"host {host.name}", key="api_key_file")
    return key


def _generate_key(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"lf-{secrets.token_urlsafe(KEY_BYTES)}\n")


def read_key(path: Path) -> bytes:
    """The key line as the head holds it, from a file checked to be one line of key-like text; never printed."""
    return controller_files.api_key(path)


# The model deployed before, read with the run's first batch (prefetch).
DEPLOYED = FileContent(paths.DEPLOYED_MODEL)


def prepare(run, hosts) -> None:
    """Which model the head serves (and its alias, from --alias): the one deploy hands over in this run, else the
    one deployed before."""
    handed = run.handoff(Deploying).model
    serving = run.handoff(Serving)
    for host in hosts:
        if handed is not None:
            name, alias = handed.name, handed.alias
        else:
            name, alias = _recorded_model(run.gather(host, [DEPLOYED])[DEPLOYED])
        serving.models[host.name] = name
        serving.aliases[host.name] = alias


def _recorded_model(text: str | None) -> tuple[str | None, str | None]:
    try:
        record = json.loads(text) if text else {}
        name, alias = record.get("name"), record.get("alias")
    except (ValueError, AttributeError):
        return None, None
    alias = alias if isinstance(alias, str) and alias else None
    if isinstance(name, str) and "/" not in name and name not in ("", ".", ".."):
        return name, alias
    return None, None


def model_path(name: str) -> str:
    return f"{paths.MODELS_DIR}/{name}"


def operations(ctx):
    view = ctx.run.cluster(ctx.host)
    head = settings.settings(ctx.host, ctx.run.inventory_file)
    serving = ctx.run.handoff(Serving)
    model, alias = serving.models.get(ctx.name), serving.aliases.get(ctx.name)
    head = dataclasses.replace(head, model_alias=alias) if alias else head
    yield _key_copied(Path(head.api_key_file), ctx.run.check)
    if head.api_tls:
        yield api_tls.openssl_linked(paths.BIN_DIR)
        yield from api_tls.operations(ctx.run, ctx.host, head, view.head_address, (RESTART, READY))
    behind = bool(ctx.run.fleet.balancers)
    unit = render_unit(head, view, model_path(model) if model else MODEL_PLACEHOLDER, behind_balancers=behind)
    yield systemd.unit_file(UNIT, unit, notify=(RESTART, READY))
    if model is None:  # nothing to serve yet: installed, not started (`invoke deploy --model` starts it)
        yield systemd.service(UNIT, running=False, enabled=False)
        return
    restarted = sorted(ctx.run.handoff(Restarted).workers & {worker.name for worker in view.workers})
    if restarted:  # llama-server's sessions to them broke: reconnect now rather than abort on the next request
        yield _reconnect(restarted)
    # Readiness is waited for by the handler, after the one restart the changes above may have notified; a
    # start here (it was stopped) runs on everything written above, so it withdraws that restart.
    yield systemd.service(UNIT, running=True, enabled=True, notify=(READY,), restarts=(RESTART,))


def _key_copied(key_file: Path, check: bool) -> Operation:
    """The head holds the controller's key; under --check a key setup has not made yet is planned, not read."""
    if check and not key_file.exists():
        why = f"{key_file} does not exist yet: provision generates it and copies it here"
        return Operation(f"file {paths.API_KEY_FILE}", [], lambda facts: Change((), why), (RESTART, READY))
    key = read_key(key_file)
    return file_ops.file(paths.API_KEY_FILE, key, mode="0600", secret=True, notify=(RESTART, READY))


def _reconnect(workers: list[str]) -> Operation:
    """The head restarts (once, with any other change) to connect again to workers restarted in this run."""
    why = f"worker{'s' if len(workers) > 1 else ''} {', '.join(workers)} restarted in this run"
    return Operation(
        "llama-server reconnected to the workers",
        [],
        lambda facts: Change((), why),
        notify=(RESTART, READY),
        idempotent=False,
    )


def probe_address(head) -> str:
    """Where the head itself reaches its API (loopback when it listens on every address)."""
    return "127.0.0.1" if head.api_host in ("0.0.0.0", "::") else head.api_host  # noqa: S104 - a comparison


def tls_probe(verify_name: str) -> str:
    """PROBE over TLS: the same request through openssl s_client, the certificate verified with the head's CA."""
    request = 'printf "GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n"'
    return f"host=$1; port=$2; {request} | {api_tls.client(verify_name)} | head -n 1"


def ready(head, seconds: int = READY_SECONDS, verify_name: str | None = None) -> Operation:
    """llama-server answers /health with 200 (it answers 503 while loading the model); with api_tls over HTTPS,
    its certificate verified with the CA and naming `verify_name` (the head's host name)."""
    where = (probe_address(head), head.api_port)
    script = tls_probe(verify_name or head.host) if head.api_tls else PROBE
    probe = CommandOutput(quote("timeout 5 bash -c %s probe %s %s", script, *where))

    def plan(facts: Facts):
        status = " ".join(facts[probe]).strip()
        if " 200" in status:
            return NoChange("/health 200")
        wait = quote("bash -c %s %s %s %s %s %s", WAIT, script, *where, seconds, UNIT)
        return Change((Shell(wait),), f"not ready yet ({status or 'not answering'}): waiting up to {seconds} s")

    return Operation(f"llama-server ready on {where[0]}:{where[1]}", [probe], plan)


def _serves_nothing(ctx) -> bool:
    return ctx.run.handoff(Serving).models.get(ctx.name) is None


def _handler_restart(ctx) -> Operation:
    if _serves_nothing(ctx):
        return Operation("restart llama-server", [], lambda facts: NoChange("no model deployed: not running"))
    return systemd.restarted(UNIT)


def _handler_ready(ctx) -> Operation:
    if _serves_nothing(ctx):
        return Operation("llama-server ready", [], lambda facts: NoChange("no model deployed: not running"))
    head = settings.settings(ctx.host, ctx.run.inventory_file)
    name = api_tls.verify_name(head, ctx.run.inventory_file) if head.api_tls else None
    operation = ready(head, verify_name=name)
    started = time.monotonic()  # handlers are made together, just before the restart runs

    def took() -> None:
        ctx.run.handoff(Serving).ready_seconds[ctx.name] = time.monotonic() - started

    operation.after.append(took)
    return operation


ROLE = Role(
    NAME,
    operations,
    template_dir=TEMPLATE_DIR,
    handlers={RESTART: _handler_restart, READY: _handler_ready},
    prefetch=(DEPLOYED,),
    validate=validate,
    setup=setup,
    prepare=prepare,
)
