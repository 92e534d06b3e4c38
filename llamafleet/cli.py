"""What the invoke tasks do: parse shared flags, load the inventory, run, print, exit."""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit, ParseError

from . import cluster, controller_cache, paths, playbooks, roles
from . import inventory as inventory_mod
from .errors import LlamafleetError, NotImplementedYet, UsageError
from .output import Output
from .runner import Runner, RunOptions
from .shell import quote

COMMON_HELP = {
    "inventory": "Inventory file (default: $LLAMAFLEET_INVENTORY, else inventory/hosts.yml).",
    "limit": "Only these hosts or groups (comma-separated names).",
    "check": "Plan only: read the hosts' facts for real, change nothing, report what would change.",
    "diff": "Show a unified diff of every file that changes (or would change with --check).",
    "json": "Print one JSON document (recap + per-operation results) instead of lines.",
    "forks": "How many hosts to work on at once (a whole number, default 10).",
    "extra_vars": "KEY=VALUE (value read as YAML) or @file.yml; highest precedence; repeatable.",
    "accept_new_host_keys": "Trust and record SSH host keys of hosts not yet in known_hosts (first contact).",
}


def reports_errors(function: Callable) -> Callable:
    """Turn llamafleet's errors into one line on stderr and the error's exit status."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exit:
            raise
        except LlamafleetError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except BrokenPipeError:  # output piped into head(1) and the like
            sys.stderr.close()
            raise Exit(code=1) from None
        except Exception:  # a bug, not a user mistake: one line here, the traceback in a file
            raise Exit(f"error: internal error: {_crash_report()}", code=1) from None

    return wrapper


def _crash_report() -> str:
    """Write the current exception's traceback to a file; return a line naming the error and the file."""
    kind, value, _ = sys.exc_info()
    summary = f"{kind.__name__}: {value}".splitlines()[0][:300] if kind else "unknown"
    folder = controller_cache.cache_root() / "crashes"
    try:
        controller_cache.private_dir(folder)
        prefix = time.strftime("crash-%Y%m%d-%H%M%S-")
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=prefix, suffix=".txt", delete=False) as handle:
            handle.write(f"llamafleet {' '.join(sys.argv)!r}\n\n{traceback.format_exc()}")
    except OSError:
        return f"{summary} (could not write the traceback to {folder})"
    return f"{summary}; the full traceback is in {handle.name} (please attach it to a bug report)"


def report_parse_errors(program: Any) -> None:
    """Make the `invoke` program answer a bad task name, flag or flag value with one line and exit 2.

    Invoke itself exits 1 on an unknown flag and prints a traceback for a value its parser cannot
    cast; llamafleet documents 2 for every kind of bad input. Installed from tasks.py, which
    invoke imports before it parses the task part of the command line.
    """
    if getattr(program, "_llamafleet_parse_errors", False):
        return
    parse_tasks = program.parse_tasks

    def parse_tasks_reporting() -> None:
        try:
            parse_tasks()
        except (ParseError, ValueError) as exc:
            raise Exit(f"error: {exc} (see: invoke --help TASK)", code=UsageError.exit_code) from None

    program.parse_tasks = parse_tasks_reporting
    program._llamafleet_parse_errors = True


def load_inventory(path: str | None, extra_vars: list[str] | None) -> inventory_mod.Inventory:
    inventory = inventory_mod.load(path or inventory_mod.default_path(), inventory_mod.parse_extra_vars(extra_vars))
    for warning in getattr(inventory, "warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return inventory


def parse_forks(value: str | int | None) -> int:
    """--forks as given on the command line: a whole number of at least 1 (default 10)."""
    if value is None:
        return 10
    try:
        forks = int(str(value).strip())
    except ValueError:
        raise UsageError(f"--forks must be a whole number, not {value!r}") from None
    if forks < 1:
        raise UsageError(f"--forks must be at least 1, not {forks}")
    return forks


def options(
    check: bool, diff: bool, forks: str | int | None, limit: str | None, accept_new_host_keys: bool
) -> RunOptions:
    return RunOptions(
        check=check, diff=diff, forks=parse_forks(forks), limit=limit, accept_new_host_keys=accept_new_host_keys
    )


def show_worker_journals(runner: Runner, output: Output) -> None:
    """When the head failed, the end of each worker's journal too: a worker is often why (wrong build, no bind)."""
    head = runner.inventory.head
    if head not in runner.hosts or runner.healthy([head]):
        return
    command = quote("journalctl -u %s -n 50 --no-pager -o short-iso", paths.RPC_UNIT)
    for worker in runner.healthy([w for w in runner.inventory.workers if w in runner.hosts]):
        try:
            lines = runner.remote(worker, command).stdout.splitlines()
        except LlamafleetError as exc:
            lines = [f"(journal not read: {exc})"]
        for line in lines:
            output.say(f"{worker.name:<12} | {line}")
    runner.close()


def finish(runner: Runner, output: Output, code: int) -> None:
    output.finish(code, {"round_trips": runner.round_trips})
    if code:
        raise Exit(code=code)


@reports_errors
def provision(inventory: str | None, extra_vars: list[str] | None, json_mode: bool, **flags: Any) -> None:
    """Bring every host to the provisioned state."""
    run_options = options(**flags)  # flags first: a bad flag is reported before the inventory is read
    inv = load_inventory(inventory, extra_vars)
    output = Output(json_mode=json_mode, check=flags["check"])
    runner = Runner(inv, run_options, output)
    code = runner.run(playbooks.PROVISION)
    show_worker_journals(runner, output)
    finish(runner, output, code)


@reports_errors
def deploy(
    model: str | None,
    inventory: str | None,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    sha256: str | None = None,
    alias: str | None = None,
    **flags: Any,
) -> None:
    """Put a GGUF model on the head and (re)start llama-server on it; wait until it is ready."""
    if not model:
        raise UsageError("--model is required: a GGUF file, an http(s) URL or hf://owner/repo/file.gguf")
    run_options = options(**flags)
    inv = load_inventory(inventory, extra_vars)
    # Downloaded, checked (GGUF, --sha256) and hashed here, before any connection: refused, nothing is sent.
    source = roles.load("model").resolve(model, sha256=sha256, alias=alias, progress=not json_mode)
    output = Output(json_mode=json_mode, check=flags["check"])
    runner = Runner(inv, run_options, output)
    runner.params["model"] = source
    started = time.monotonic()
    code = runner.run(playbooks.DEPLOY)
    show_worker_journals(runner, output)
    if code == 0 and not flags["check"]:
        ready = runner.shared.get(roles.load("head").READY_SECONDS_KEY, {})
        serving = "".join(f"; {host} served it {seconds:.1f} s after its restart" for host, seconds in ready.items())
        output.say(
            f"deployed {source.name} (sha256 {source.sha256[:12]}) in {time.monotonic() - started:.1f} s{serving}"
        )
    finish(runner, output, code)


@reports_errors
def show_inventory(inventory: str | None, extra_vars: list[str] | None, json_mode: bool, limit: str | None) -> None:
    """Print the resolved inventory."""
    inv = load_inventory(inventory, extra_vars)
    chosen = {h.name for h in inv.select(limit)}
    doc = inv.to_json()
    doc["hosts"] = {k: v for k, v in doc["hosts"].items() if k in chosen}
    if json_mode:
        json.dump(doc, sys.stdout, indent=2, default=str)
        print()
        return
    for name, host in doc["hosts"].items():
        print(f"{name}  groups: {', '.join(host['groups']) or '-'}")
        for key, value in host["vars"].items():  # to_json() has hidden the secrets already
            if value not in (None, [], {}, ""):
                print(f"    {key}: {value}")


def not_yet(task: str, what: str) -> None:
    raise Exit(f"error: {NotImplementedYet(f'{task}: {what}')}", code=NotImplementedYet.exit_code)


STATUS_SCRIPT = (
    f"readlink {paths.CURRENT_LINK} || true; "
    f"for u in {' '.join(paths.UNITS)}; do "
    'printf \'%s %s %s\\n\' "$u" $(systemctl show -p LoadState -p ActiveState --value "$u" 2>/dev/null); done'
)


def _unit_states(lines: list[str]) -> dict[str, str]:
    """'llama-rpc.service loaded active' lines -> {unit: active | absent | ...}."""
    states = {}
    for line in lines:
        unit, *values = line.split()
        if unit.startswith("llama-"):
            states[unit] = values[1] if len(values) == 2 and values[0] == "loaded" else "absent"
    return states


@reports_errors
def status(
    inventory: str | None,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    limit: str | None,
    accept_new_host_keys: bool,
) -> None:
    """One line per host: reachable, OS, the llama.cpp release in use, service states."""
    inv = load_inventory(inventory, extra_vars)
    output = Output(json_mode=json_mode)
    runner = Runner(inv, options(False, False, 10, limit, accept_new_host_keys), output)
    report: dict[str, dict[str, Any]] = {}

    def probe(host) -> None:
        os_info = runner.os(host)
        lines = runner.remote(host, STATUS_SCRIPT).stdout.splitlines()
        release = lines[0] if lines and not lines[0].startswith("llama-") else None
        services = _unit_states(lines)
        report[host.name] = {
            "os": f"{os_info['id']} {os_info['version_id']} {os_info['arch']}",
            "release": release,
            "services": services,
        }
        if not json_mode:
            units = ", ".join(f"{k.split('.')[0]}={v or 'absent'}" for k, v in services.items())
            output.say(f"{host.name:<12} {report[host.name]['os']:<22} {release or 'no llama.cpp'}  {units}")

    try:
        runner.each_host(runner.hosts, probe)
    finally:
        runner.close()
    code = runner.exit_code()
    if json_mode:
        print(json.dumps({"hosts": report, "recap": {h: dict(c) for h, c in output.recap.items()}}, indent=2))
    elif code:
        output.finish(code)
    if code:
        raise Exit(code=code)


def _model_on_head(model: str | None) -> str:
    """Where the head unit finds the model: deploy installs --model under its file name in the models folder."""
    if model is None:
        return roles.load("head").MODEL_PLACEHOLDER
    name = Path(model).name
    if name in ("", ".", "..") or not name.isprintable():
        raise UsageError(f"--model: {model!r} does not name a file")
    return f"{paths.MODELS_DIR}/{name}"


def _service_files(inv: inventory_mod.Inventory, model: str) -> dict[str, dict[str, str]]:
    """host -> {path on the host: content} for the rpc_worker role on the workers and the head role on the head."""
    view = cluster.view(inv)
    for warning in view.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    file = str(inv.path)
    worker_role, head_role = roles.load("rpc_worker"), roles.load("head")
    rendered = {host.name: worker_role.files(host, view, file) for host in inv.workers}
    rendered[inv.head.name] = head_role.files(inv.head, view, file, model=model)
    return rendered


def _write_tree(out: Path, rendered: dict[str, dict[str, str]]) -> list[Path]:
    written = []
    for host, host_files in rendered.items():
        for path, content in host_files.items():
            target = out / host / path.lstrip("/")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--out: cannot write {target}: {exc.strerror or exc}") from None
            written.append(target)
    return written


@reports_errors
def render(inventory: str | None, extra_vars: list[str] | None, out: str | None, model: str | None) -> None:
    """Write every file the service roles would install, as OUT/<host>/<path>, without connecting to any host."""
    if not out:
        raise UsageError("render: --out DIR is required")
    model_path = _model_on_head(model)
    inv = load_inventory(inventory, extra_vars)
    roles.load("base").validate(None, list(inv.hosts.values()))  # the service user provision would refuse
    for path in _write_tree(Path(out).expanduser(), _service_files(inv, model_path)):
        print(path)
    if model is None:
        print(f"note: no --model: the head unit loads {model_path} until deploy names the model", file=sys.stderr)
