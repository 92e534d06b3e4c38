"""llamafleet's command line: `invoke provision | deploy | verify | status | inventory | render | lab.*`."""

import atexit
import gc
import inspect

from invoke import Collection, task
from invoke.main import program

from llamafleet import cli, cli_errors, lab_tasks

# The interpreter's last collection would walk every object of a run that is over anyway.
atexit.register(gc.freeze)
cli_errors.report_parse_errors(program)  # bad flags: one line and exit 2, as for every other bad input

# The help of the flags many tasks share.
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
H = COMMON_HELP

# The flags of the tasks that change hosts (provision, deploy).
RUN_HELP = {
    k: H[k] for k in ("inventory", "limit", "check", "diff", "json", "forks", "extra_vars", "accept_new_host_keys")
}


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
        json_mode = flags.pop("json")
        action(inventory=flags.pop("inventory"), extra_vars=flags.pop("extra_vars"), json_mode=json_mode, **flags)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("c", kind)]
    parameters += [inspect.Parameter(name, kind, default=value) for name, value in (*first, *RUN_FLAGS, *last)]
    body.__signature__ = inspect.Signature(parameters)
    body.__name__, body.__doc__ = action.__name__, doc
    return task(iterable=["extra_vars"], help={**(own_help or {}), **RUN_HELP})(body)


provision = host_task(
    cli.provision,
    "llama.cpp, firewall, rpc workers and the head's unit on every host (idempotent; --check to plan only).",
)
deploy = host_task(
    cli.deploy,
    "Fetch, check and copy a GGUF model to the head (resumable), restart llama-server on it, wait until ready.",
    first=(("model", None),),
    last=(("sha256", None), ("alias", None)),
    own_help={
        "model": "GGUF model: a file on the controller, an http(s) URL or hf://owner/repo/file.gguf (HF_TOKEN "
        "is sent when set); a split model by its first part (-00001-of-0000N.gguf). Not GGUF: refused, nothing sent.",
        "sha256": "The sha256 the model (its first part) must have; another is refused before anything is sent.",
        "alias": "The model's name in the API (/v1/models) instead of its file name; kept for later runs.",
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
    iterable=["extra_vars"],
    help={
        "junit_xml": "Also write the results as JUnit XML to this file (for CI).",
        "html": "Also write a self-contained HTML report page to this file.",
        **{k: H[k] for k in ("inventory", "limit", "extra_vars")},
        "json": "Print one JSON document (per-host checks with expected and found) instead of the summary.",
    },
)
def verify(c, inventory=None, limit=None, json=False, extra_vars=None, junit_xml=None, html=None):
    """testinfra checks of every port, endpoint, rule and version, per host; exit 0 only if all pass."""
    cli.verify(inventory, extra_vars, json, limit=limit, junit_xml=junit_xml, html=html)


@task(
    iterable=["extra_vars"],
    help={k: H[k] for k in ("inventory", "limit", "json", "extra_vars", "accept_new_host_keys")},
)
def status(c, inventory=None, limit=None, json=False, extra_vars=None, accept_new_host_keys=False):
    """Reachability, OS, installed llama.cpp build and service states of every host."""
    cli.status(inventory, extra_vars, json, limit=limit, accept_new_host_keys=accept_new_host_keys)


@task(
    help={
        "unit": "rpc (the workers' llama-rpc) or head (llama-server); default: each host's own unit.",
        "lines": "How many of the last journal lines per host (default 50).",
        "follow": "Keep printing new lines from every host, merged, until Ctrl-C.",
        **{k: H[k] for k in ("inventory", "limit", "extra_vars", "accept_new_host_keys")},
    },
    iterable=["extra_vars"],
)
def logs(c, inventory=None, limit=None, unit=None, lines=50, follow=False, extra_vars=None, accept_new_host_keys=False):
    """Journal lines of llama-server and llama-rpc, each prefixed with its host (-f: follow, merged)."""
    cli.logs(
        inventory,
        extra_vars,
        limit=limit,
        unit=unit,
        lines=lines,
        follow=follow,
        accept_new_host_keys=accept_new_host_keys,
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
        "compare": "Compare runs of the history instead of measuring: alone the last two, or ids like 1,3 or -1,-2.",
        "list_runs": "List the runs kept in the history (<inventory>.bench.jsonl beside the inventory).",
        "plot": "Draw generated tokens/s against concurrency for the runs shown into FILE.png (needs matplotlib).",
        **{k: H[k] for k in ("inventory", "extra_vars")},
    },
    iterable=["extra_vars"],
)
def bench(
    c,
    inventory=None,
    prompt_tokens=128,
    gen_tokens=64,
    concurrency="1,2,4",
    rounds=2,
    label=None,
    out=None,
    compare=None,
    list_runs=False,
    plot=None,
    extra_vars=None,
):
    """Throughput and time to first token through the head's API, per concurrency level; runs kept to compare."""
    cli.bench(
        inventory,
        extra_vars,
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        concurrency=concurrency,
        rounds=rounds,
        label=label,
        out=out,
        compare=compare,
        list_runs=list_runs,
        plot=plot,
    )


@task(name="inventory", iterable=["extra_vars"], help={k: H[k] for k in ("inventory", "limit", "json", "extra_vars")})
def inventory_(c, inventory=None, limit=None, json=False, extra_vars=None):
    """Print the resolved inventory: hosts, groups and every variable after precedence."""
    cli.show_inventory(inventory, extra_vars, json, limit)


@task(
    iterable=["extra_vars"],
    help={
        "out": "Folder to write into, as OUT/<host>/etc/systemd/system/<unit> (required).",
        "model": "GGUF file as deploy would take it; the head unit loads it from /var/lib/llamafleet/models.",
        **{k: H[k] for k in ("inventory", "extra_vars")},
    },
)
def render(c, out=None, model=None, inventory=None, extra_vars=None):
    """Write the workers' and the head's unit files per host, without connecting to any host."""
    cli.render(inventory, extra_vars, out, model)


ns = Collection(provision, deploy, rollback, teardown, verify, status, logs, bench, inventory_, render)
ns.add_collection(lab_tasks.ns)
