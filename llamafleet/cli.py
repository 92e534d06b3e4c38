"""What the invoke tasks do: parse shared flags, load the inventory, run, print, exit."""

from __future__ import annotations

import atexit
import functools
import io
import json
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit, ParseError

from . import cluster, connvars, controller_cache, paths, playbooks, roles
from . import inventory as inventory_mod
from . import logs as logs_mod
from . import status as status_mod
from .errors import LlamafleetError, NotImplementedYet, UsageError
from .output import Output
from .runner import Runner, RunOptions
from .shell import quote
from .ssh import ConnectionPool

# The tasks of one command line (`invoke provision deploy --model M`) reach each host over one connection.
CONNECTIONS = ConnectionPool()
atexit.register(CONNECTIONS.close)

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
    return 10 if value is None else parse_whole("--forks", value, 1)


def parse_whole(flag: str, value: str | int, minimum: int, maximum: int | None = None) -> int:
    """A whole-number flag as given on the command line, within its bounds."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UsageError(f"{flag} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise UsageError(f"{flag} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise UsageError(f"{flag} must be at most {maximum}, not {number}")
    return number


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
    runner = Runner(inv, run_options, output, CONNECTIONS)
    code = runner.run(playbooks.PROVISION)
    show_worker_journals(runner, output)
    from .roles.release.role import SWITCHED  # role modules load with the run that uses them

    switched = sorted(runner.shared.get(SWITCHED, ()))
    if code and switched and not run_options.check:
        _roll_back_upgrade(inv, run_options, output, switched)
    finish(runner, output, code)


def _roll_back_upgrade(inv: inventory_mod.Inventory, run_options: RunOptions, output: Output, hosts: list[str]) -> None:
    """A provision failed after hosts switched release: every switched host back to its previous one."""
    failed = [r for r in output.results if r.status in ("failed", "unreachable")]
    what = "; ".join(f"{r.host}: {r.role}: {r.operation}: {r.reason}" for r in failed[:5]) or "see above"
    output.say(f"\nupgrade failed ({what}); rolling {', '.join(hosts)} back to the previous release")
    runner = Runner(inv, run_options, output, CONNECTIONS)
    from .roles.rollback.role import ONLY as ROLLBACK_ONLY

    runner.params[ROLLBACK_ONLY] = set(hosts)
    back = runner.run(playbooks.ROLLBACK)
    show_worker_journals(runner, output)
    output.say(
        "rollback: every switched host is back on its previous release and serving"
        if back == 0
        else f"rollback failed too (exit {back}): see the results above; `invoke status` shows each host"
    )


@reports_errors
def teardown(inventory: str | None, extra_vars: list[str] | None, json_mode: bool, purge: bool, **flags: Any) -> None:
    """Units and firewall rules removed on every host; with purge, everything llamafleet put there."""
    run_options = options(**flags)
    inv = load_inventory(inventory, extra_vars)
    output = Output(json_mode=json_mode, check=flags["check"])
    runner = Runner(inv, run_options, output, CONNECTIONS)
    from .roles.teardown.role import PURGE as TEARDOWN_PURGE

    runner.params[TEARDOWN_PURGE] = purge
    finish(runner, output, runner.run(playbooks.TEARDOWN))


@reports_errors
def rollback(inventory: str | None, extra_vars: list[str] | None, json_mode: bool, **flags: Any) -> None:
    """Every host back to its previous llama.cpp release together, then workers and head restarted."""
    run_options = options(**flags)
    inv = load_inventory(inventory, extra_vars)
    output = Output(json_mode=json_mode, check=flags["check"])
    runner = Runner(inv, run_options, output, CONNECTIONS)
    code = runner.run(playbooks.ROLLBACK)
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
    runner = Runner(inv, run_options, output, CONNECTIONS)
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


@reports_errors
def verify(
    inventory: str | None,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    limit: str | None,
    junit_xml: str | None,
    html: str | None,
) -> None:
    """Run the verify suite against the inventory; print the per-host summary; exit 0 only if every check passed."""
    from .verify.suite import Suite

    suite = Suite.load(inventory, limit, extra_vars)
    for warning in [*getattr(suite.inventory, "warnings", []), *suite.expect.view.warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    suite.start()
    from .verify import report  # pytest and its plugins load while the hosts are read

    try:
        code, doc = report.run(suite, junit_xml=junit_xml, html=html)
    finally:
        suite.close()
    (report.print_json if json_mode else report.print_summary)(doc)
    if code:
        raise Exit(code=code)


@reports_errors
def status(
    inventory: str | None,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    limit: str | None,
    accept_new_host_keys: bool,
) -> None:
    """One row per host, head first then the workers in inventory order, read in parallel."""
    inv = load_inventory(inventory, extra_vars)
    view = cluster.view(inv)
    head_role = roles.load("head")
    head = head_role.settings.settings(inv.head, str(inv.path))
    output = Output(json_mode=True)  # rows are printed here, not operation results
    runner = Runner(inv, options(False, False, 10, limit, accept_new_host_keys), output, CONNECTIONS)
    order = [inv.head.name, *(w.name for w in view.workers)]
    hosts = sorted(runner.hosts, key=lambda h: order.index(h.name) if h.name in order else len(order))
    rows: dict[str, status_mod.Row] = {}

    def probe(host) -> None:
        part, port, api = "-", None, None
        if host.name == view.head:
            part, port, api = "head", head.api_port, (head_role.probe_address(head), head.api_port)
        elif host.name in {w.name for w in view.workers}:
            part, port = "worker", view.worker(host.name).port
        text = runner.remote(host, status_mod.script(part, port, api)).stdout
        rows[host.name] = status_mod.parse(host.name, part, port, text)

    try:
        runner.each_host(hosts, probe)
    finally:
        runner.close()
    for result in output.results:  # unreachable (or failed) hosts still get their row
        if result.host not in rows:
            part = "head" if result.host == view.head else "worker" if result.host in order else "-"
            rows[result.host] = status_mod.Row(result.host, part, reachable=False, error=result.reason)
    ordered = [rows[h.name] for h in hosts if h.name in rows]
    if json_mode:
        print(json.dumps({"hosts": {row.host: row.to_json() for row in ordered}}, indent=2))
    else:
        print(status_mod.table(ordered))
    code = runner.exit_code()
    if code:
        raise Exit(code=code)


FOLLOW_SECONDS = 86400  # journalctl -f ends on the host after a day at the latest


@reports_errors
def logs(
    inventory: str | None,
    extra_vars: list[str] | None,
    *,
    limit: str | None,
    unit: str | None,
    lines: str | int,
    follow: bool,
    accept_new_host_keys: bool,
) -> None:
    """The journal of the head's and the workers' units, each line prefixed with its host."""
    if unit not in (None, *logs_mod.UNITS):
        raise UsageError(f"--unit: {unit!r} is not one of {', '.join(logs_mod.UNITS)}")
    count = parse_whole("--lines", lines, 1, logs_mod.MAX_LINES)
    inv = load_inventory(inventory, extra_vars)
    view = cluster.view(inv)
    wanted = {view.head: paths.SERVER_UNIT} if unit != "rpc" else {}
    if unit != "head":
        wanted.update({w.name: paths.RPC_UNIT for w in view.workers})
    output = Output(json_mode=True)
    runner = Runner(inv, options(False, False, 10, limit, accept_new_host_keys), output, CONNECTIONS)
    order = [view.head, *(w.name for w in view.workers)]
    hosts = sorted((h for h in runner.hosts if h.name in wanted), key=lambda h: order.index(h.name))
    if not hosts:
        runner.close()
        raise UsageError(f"no host of {limit or 'the inventory'} runs {unit and logs_mod.UNITS[unit] or 'a unit'}")
    width = max(len(h.name) for h in hosts)
    lock = threading.Lock()
    buffers = {h.name: io.StringIO() for h in hosts}

    def read(host) -> None:
        sink = logs_mod.Prefixed(host.name, width, sys.stdout if follow else buffers[host.name], lock)
        command = logs_mod.command(wanted[host.name], count, follow)
        runner.remote(host, command, stdout=sink, timeout=FOLLOW_SECONDS if follow else None)
        sink.close()

    try:
        if follow:
            _follow(runner, hosts, read)
        else:
            runner.each_host(hosts, read)
    finally:
        runner.close()
    for host in hosts:
        sys.stdout.write(buffers[host.name].getvalue())
    for result in output.results:
        print(f"{result.host}: {result.status}: {result.reason}", file=sys.stderr)
    code = runner.exit_code()
    if code:
        raise Exit(code=code)


def _follow(runner: Runner, hosts: list, read: Callable) -> None:
    """Every host's journal at once until Ctrl-C (the connections close, and journalctl with them)."""
    threads = [threading.Thread(target=runner.each_host, args=([h], read), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        print("", file=sys.stderr)


@reports_errors
def bench(
    inventory: str | None,
    extra_vars: list[str] | None,
    *,
    prompt_tokens: str | int,
    gen_tokens: str | int,
    concurrency: str,
    rounds: str | int,
    label: str | None,
    out: str | None,
    compare: str | bool | None,
    list_runs: bool,
    plot: str | None,
) -> None:
    """Measure through the head's API (or compare runs kept in the history) and print a table."""
    from . import bench as bench_mod  # requests: imported by the commands that use it, not by every run

    inv = load_inventory(inventory, extra_vars)
    runs = bench_mod.History(inv.path.with_name(f"{inv.path.stem}.bench.jsonl"))
    if list_runs:
        for run in runs.runs():
            print(f"#{run['id']}  {run['time']}  {run.get('label') or '-'}  {bench_mod._shape(run)}")
        return
    shown = runs.pick(compare) if compare not in (None, False) else []
    if not shown:
        shown = [_measure(bench_mod, inv, runs, prompt_tokens, gen_tokens, concurrency, rounds, label, out)]
        print(bench_mod.table(shown[0]))
    else:
        print(bench_mod.compare(shown))
    if plot:
        bench_mod.plot(shown, Path(plot))
        print(f"plot: {plot}")


def _measure(bench_mod, inv, runs, prompt_tokens, gen_tokens, concurrency, rounds, label, out) -> dict[str, Any]:
    levels = bench_mod.levels_from(concurrency)
    prompt_n = parse_whole("--prompt-tokens", prompt_tokens, 1, bench_mod.MAX_TOKENS)
    gen_n = parse_whole("--gen-tokens", gen_tokens, 1, bench_mod.MAX_TOKENS)
    round_n = parse_whole("--rounds", rounds, 1, 1000)
    head_role = roles.load("head")
    head = head_role.settings.settings(inv.head, str(inv.path))
    key_file = head_role.api_key_path(inv.path, inv.head)
    key = head_role.read_key(key_file).decode().strip() if key_file.exists() else None
    listens_everywhere = head.api_host in ("0.0.0.0", "::")  # noqa: S104 - a comparison, nothing is bound
    address = connvars.settings(inv.head).address if listens_everywhere else head.api_host
    api = bench_mod.Api(f"http://{address}:{head.api_port}", key)
    prompt = api.prompt(prompt_n)
    print(f"bench: {api.base}, {prompt_n} prompt + {gen_n} generated tokens, {round_n} request(s) per client")
    measured = []
    for level in levels:
        measured.append(bench_mod.run_level(api, prompt, gen_n, level, round_n))
        print(f"  concurrency {level}: {measured[-1].gen_tokens_per_s:.1f} generated tokens/s", flush=True)
    about = {"label": label, "head": inv.head.name, "workers": [h.name for h in inv.workers]}
    run = runs.add(bench_mod.record(measured, prompt_tokens=prompt_n, gen_tokens=gen_n, rounds=round_n, **about))
    if out:
        Path(out).write_text(json.dumps(run, indent=2) + "\n")
    print(f"run #{run['id']} kept in {runs.path}" + (f", written to {out}" if out else ""))
    return run


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
