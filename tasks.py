"""llamafleet's command line: `invoke provision | deploy | verify | status | inventory | render | lab.*`."""

from invoke import Collection, task
from invoke.main import program

from llamafleet import cli, lab_tasks

cli.report_parse_errors(program)  # bad flags: one line and exit 2, as for every other bad input

H = cli.COMMON_HELP
# The flags of the tasks that change hosts (provision, deploy).
RUN_HELP = {
    k: H[k] for k in ("inventory", "limit", "check", "diff", "json", "forks", "extra_vars", "accept_new_host_keys")
}


@task(iterable=["extra_vars"], help=RUN_HELP)
def provision(
    c,
    inventory=None,
    limit=None,
    check=False,
    diff=False,
    json=False,
    forks=None,
    extra_vars=None,
    accept_new_host_keys=False,
):
    """llama.cpp, firewall, rpc workers and the head's unit on every host (idempotent; --check to plan only)."""
    cli.provision(
        inventory,
        extra_vars,
        json,
        check=check,
        diff=diff,
        forks=forks,
        limit=limit,
        accept_new_host_keys=accept_new_host_keys,
    )


@task(
    iterable=["extra_vars"],
    help={
        "model": "GGUF model: a file on the controller, an http(s) URL or hf://owner/repo/file.gguf (HF_TOKEN "
        "is sent when set); a split model by its first part (-00001-of-0000N.gguf). Not GGUF: refused, nothing sent.",
        "sha256": "The sha256 the model (its first part) must have; another is refused before anything is sent.",
        "alias": "The model's name in the API (/v1/models) instead of its file name; kept for later runs.",
        **RUN_HELP,
    },
)
def deploy(
    c,
    model=None,
    inventory=None,
    limit=None,
    check=False,
    diff=False,
    json=False,
    forks=None,
    extra_vars=None,
    accept_new_host_keys=False,
    sha256=None,
    alias=None,
):
    """Fetch, check and copy a GGUF model to the head (resumable), restart llama-server on it, wait until ready."""
    cli.deploy(
        model,
        inventory,
        extra_vars,
        json,
        sha256=sha256,
        alias=alias,
        check=check,
        diff=diff,
        forks=forks,
        limit=limit,
        accept_new_host_keys=accept_new_host_keys,
    )


@task(iterable=["extra_vars"], help={k: H[k] for k in ("inventory", "limit", "json", "extra_vars")})
def verify(c, inventory=None, limit=None, json=False, extra_vars=None):
    """testinfra checks of every port, endpoint, rule and version, per host (not available yet)."""
    cli.not_yet("verify", "the verification suite is not built yet")


@task(
    iterable=["extra_vars"],
    help={k: H[k] for k in ("inventory", "limit", "json", "extra_vars", "accept_new_host_keys")},
)
def status(c, inventory=None, limit=None, json=False, extra_vars=None, accept_new_host_keys=False):
    """Reachability, OS, installed llama.cpp build and service states of every host."""
    cli.status(inventory, extra_vars, json, limit=limit, accept_new_host_keys=accept_new_host_keys)


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


ns = Collection(provision, deploy, verify, status, inventory_, render)
ns.add_collection(lab_tasks.ns)
