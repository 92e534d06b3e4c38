"""llamafleet's tasks: `llamafleet provision | deploy | verify | status | inventory | render | lab.*`, and the
same through `invoke` in a checkout (its tasks.py hands invoke this module's collection)."""

import gc

# What the imports below make (modules, classes, functions) lives as long as the process: the cyclic collector
# does not run while they load, and its later collections do not walk them again (gc.freeze).
_collecting = gc.isenabled()
gc.disable()

import atexit  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402

from invoke import Collection, Program, task  # noqa: E402
from invoke.main import program as invoke_program  # noqa: E402

from llamafleet import cli, cli_errors, lab_tasks, loading  # noqa: E402

gc.freeze()
if _collecting:
    gc.enable()
# The interpreter's last collection would walk every object of a run that is over anyway.
atexit.register(gc.freeze)
cli_errors.report_parse_errors(invoke_program)  # bad flags: one line and exit 2, as for every other bad input

# The help of the flags many tasks share.
COMMON_HELP = {
    "inventory": "Inventory file, folder or executable script; repeatable, merged in order (default: "
    "$LLAMAFLEET_INVENTORY, else ANSIBLE_INVENTORY or ansible.cfg's inventory, else inventory/hosts.yml).",
    "limit": "Only these hosts or groups (comma-separated names).",
    "check": "Plan only: read the hosts' facts for real, change nothing, report what would change.",
    "diff": "Show a unified diff of every file that changes (or would change with --check).",
    "json": "Print one JSON document (recap + per-operation results) instead of lines.",
    "forks": "How many hosts to work on at once (a whole number, default 10).",
    "extra_vars": "KEY=VALUE (value read as YAML) or @file.yml; highest precedence; repeatable.",
    "accept_new_host_keys": "Trust and record SSH host keys of hosts not yet in known_hosts (first contact).",
}
H = COMMON_HELP

# The flags of the tasks that change hosts (provision, deploy).
RUN_HELP = {
    k: H[k] for k in ("inventory", "limit", "check", "diff", "json", "forks", "extra_vars", "accept_new_host_keys")
}


# Every task that reads the inventory opens its vaults with these (after its own flags, so that the short
# flags of the others stay as they were).
VAULT_HELP = {
    "vault_password_file": "A file holding a vault password (an executable one is run, its output used); repeatable.",
    "vault_id": "LABEL@FILE or LABEL@prompt: a vault password for that vault id; repeatable.",
    "ask_vault_pass": "Ask for the vault password.",
}
VAULT_FLAGS = (("vault_password_file", None), ("vault_id", None), ("ask_vault_pass", False))
REPEATED = ["inventory", "extra_vars", "vault_password_file", "vault_id"]


def vault_of(given: dict) -> loading.Vault:
    """The vault flags, taken out of a task's flags."""
    files, ids = given.pop("vault_password_file") or (), given.pop("vault_id") or ()
    return loading.Vault(tuple(files), tuple(ids), bool(given.pop("ask_vault_pass")))


def vaulted(body):
    """A task body that takes `vault`: it gets VAULT_FLAGS as its last flags, handed over as one loading.Vault."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    own = [p for p in inspect.signature(body).parameters.values() if p.name != "vault"]

    @functools.wraps(body)
    def with_vault(c, **given):
        return body(c, vault=vault_of(given), **given)

    extra = [inspect.Parameter(name, kind, default=value) for name, value in VAULT_FLAGS]
    with_vault.__signature__ = inspect.Signature([*own, *extra])
    return with_vault


SERIAL_HELP = "Behind balancers: how many clusters leave the rotation and change at once (default 1); the others serve."
# The flags of the tasks that change hosts, in the order their short flags are given out.
RUN_FLAGS = (
    ("inventory", None),
    ("limit", None),
    ("check", False),
    ("diff", False),
    ("json", False),
    ("forks", None),
    ("extra_vars", None),
    ("accept_new_host_keys", False),
)


def host_task(action, doc: str, first=(), last=(), own_help=None):
    """A task taking RUN_FLAGS (after its own `first` flags, before its `last` ones) that calls cli.`action`.

    invoke reads a task's flags from its signature: this one is built from RUN_FLAGS once, not
    written out again for every task.
    """

    def body(c, **given):
        flags = dict(given)
        json_mode, vault = flags.pop("json"), vault_of(flags)
        inventory, extra_vars = flags.pop("inventory"), flags.pop("extra_vars")
        action(inventory=inventory, extra_vars=extra_vars, json_mode=json_mode, vault=vault, **flags)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("c", kind)]
    flags = (*first, *RUN_FLAGS, *last, *VAULT_FLAGS)
    parameters += [inspect.Parameter(name, kind, default=value) for name, value in flags]
    body.__signature__ = inspect.Signature(parameters)
    body.__name__, body.__doc__ = action.__name__, doc
    return task(iterable=REPEATED, help={**(own_help or {}), **RUN_HELP, **VAULT_HELP})(body)


provision = host_task(
    cli.provision,
    "llama.cpp, firewall, rpc workers and the head's unit on every host (idempotent; --check to plan only).",
    last=(("tags", None), ("skip_tags", None), ("serial", None)),
    own_help={
        "tags": "Only these roles (comma-separated: base, llama_cpp, release, firewall, tunnel, rpc_worker, head, "
        "balancer); release takes llama_cpp, rpc_worker and head along.",
        "skip_tags": "All roles but these (comma-separated role names).",
        "serial": SERIAL_HELP,
    },
)
deploy = host_task(
    cli.deploy,
    "Fetch, check and copy a GGUF model to the head (resumable), restart llama-server on it, wait until ready.",
    first=(("model", None),),
    last=(("sha256", None), ("alias", None), ("serial", None)),
    own_help={
        "model": "GGUF model: a file on the controller, an http(s) URL or hf://owner/repo/file.gguf (HF_TOKEN "
        "is sent when set); a split model by its first part (-00001-of-0000N.gguf). Not GGUF: refused, nothing sent.",
        "sha256": "The sha256 the model (its first part) must have; another is refused before anything is sent.",
        "alias": "The model's name in the API (/v1/models) instead of its file name; kept for later runs.",
        "serial": SERIAL_HELP,
    },
)
rollback = host_task(
    cli.rollback,
    "Every host back to its previous llama.cpp release together (workers, then the head); again goes forward.",
)
teardown = host_task(
    cli.teardown,
    "Stop and remove llamafleet's units and firewall rules (--purge: everything llamafleet put on the hosts).",
    first=(("purge", False),),
    own_help={"purge": "Also remove releases, models, caches, configuration and the service user."},
)


@task(
    iterable=REPEATED,
    help={
        "junit_xml": "Also write the results as JUnit XML to this file (for CI).",
        "html": "Also write a self-contained HTML report page to this file.",
        **{k: H[k] for k in ("inventory", "limit", "extra_vars")},
        "json": "Print one JSON document (per-host checks with expected and found) instead of the summary.",
        **VAULT_HELP,
    },
)
@vaulted
def verify(c, inventory=None, limit=None, json=False, extra_vars=None, junit_xml=None, html=None, vault=None):
    """testinfra checks of every port, endpoint, rule and version, per host; exit 0 only if all pass."""
    cli.verify(inventory, extra_vars, json, limit=limit, junit_xml=junit_xml, html=html, vault=vault)


@task(
    iterable=REPEATED,
    help={**{k: H[k] for k in ("inventory", "limit", "json", "extra_vars", "accept_new_host_keys")}, **VAULT_HELP},
)
@vaulted
def status(c, inventory=None, limit=None, json=False, extra_vars=None, accept_new_host_keys=False, vault=None):
    """Reachability, OS, installed llama.cpp build and service states of every host."""
    cli.status(inventory, extra_vars, json, limit=limit, accept_new_host_keys=accept_new_host_keys, vault=vault)


@task(
    help={
        "unit": "rpc (the workers' llama-rpc) or head (llama-server); default: each host's own unit.",
        "lines": "How many of the last journal lines per host (default 50).",
        "follow": "Keep printing new lines from every host, merged, until Ctrl-C.",
        **{k: H[k] for k in ("inventory", "limit", "extra_vars", "accept_new_host_keys")},
        **VAULT_HELP,
    },
    iterable=REPEATED,
)
@vaulted
def logs(
    c,
    inventory=None,
    limit=None,
    unit=None,
    lines=50,
    follow=False,
    extra_vars=None,
    accept_new_host_keys=False,
    vault=None,
):
    """Journal lines of llama-server and llama-rpc, each prefixed with its host (-f: follow, merged)."""
    cli.logs(
        inventory,
        extra_vars,
        limit=limit,
        unit=unit,
        lines=lines,
        follow=follow,
        accept_new_host_keys=accept_new_host_keys,
        vault=vault,
    )


@task(
    optional=["compare"],
    help={
        "prompt_tokens": "Prompt length in tokens of each request (default 128).",
        "gen_tokens": "Tokens generated per request (default 64).",
        "concurrency": "Comma-separated numbers of concurrent clients, one level each (default 1,2,4).",
        "rounds": "Requests per client per level (default 2).",
        "label": "A name for this run in the history (e.g. '2 workers').",
        "out": "Also write this run's JSON to FILE.",
        "at": "Measure at this balancer or head (default: the first balancer, else the head).",
        "compare": "Compare runs of the history instead of measuring: alone the last two, or ids like 1,3 or -1,-2.",
        "list_runs": "List the runs kept in the history (<inventory>.bench.jsonl beside the inventory).",
        "plot": "Draw generated tokens/s against concurrency for the runs shown into FILE.png (needs matplotlib).",
        **{k: H[k] for k in ("inventory", "extra_vars")},
        **VAULT_HELP,
    },
    iterable=REPEATED,
)
@vaulted
def bench(
    c,
    inventory=None,
    prompt_tokens=128,
    gen_tokens=64,
    concurrency="1,2,4",
    rounds=2,
    label=None,
    out=None,
    at=None,
    compare=None,
    list_runs=False,
    plot=None,
    extra_vars=None,
    vault=None,
):
    """Throughput and time to first token through the endpoint (the balancers', else the head's), per concurrency
    level; runs kept to compare."""
    cli.bench(
        inventory,
        extra_vars,
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        concurrency=concurrency,
        rounds=rounds,
        label=label,
        out=out,
        at=at,
        compare=compare,
        list_runs=list_runs,
        plot=plot,
        vault=vault,
    )


@task(
    name="inventory",
    iterable=REPEATED,
    help={
        **{k: H[k] for k in ("inventory", "limit", "json", "extra_vars")},
        "show_vaulted": "Show what came out of a vault in clear, except secret variables (default: (vault)).",
        **VAULT_HELP,
    },
)
@vaulted
def inventory_(c, inventory=None, limit=None, json=False, extra_vars=None, show_vaulted=False, vault=None):
    """Print the resolved inventory: hosts, groups and every variable after precedence."""
    cli.show_inventory(inventory, extra_vars, json, limit, vault, show_vaulted)


@task(
    iterable=REPEATED,
    help={
        "out": "Folder to write into, as OUT/<host>/etc/systemd/system/<unit> (required).",
        "model": "GGUF file as deploy would take it; the head unit loads it from /var/lib/llamafleet/models.",
        **{k: H[k] for k in ("inventory", "extra_vars")},
        **VAULT_HELP,
    },
)
@vaulted
def render(c, out=None, model=None, inventory=None, extra_vars=None, vault=None):
    """Write the workers' and the head's unit files per host, without connecting to any host."""
    cli.render(inventory, extra_vars, out, model, vault)


ns = Collection(provision, deploy, rollback, teardown, verify, status, logs, bench, inventory_, render)
ns.add_collection(lab_tasks.ns)


def main() -> None:
    """The installed `llamafleet` command: these tasks, with invoke's parser, from any folder."""
    from importlib.metadata import PackageNotFoundError, version  # `invoke` in a checkout needs no version

    try:
        installed = version("llamafleet")
    except PackageNotFoundError:
        installed = "unknown"
    program = Program(namespace=ns, name="llamafleet", binary="llamafleet", version=installed)
    cli_errors.report_parse_errors(program)
    program.run()
