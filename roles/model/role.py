"""Role model: the GGUF files deploy hands over, sent resumably, checked on the host, recorded as the deployed model."""

from __future__ import annotations

import json
from dataclasses import dataclass

from llamafleet import paths
from llamafleet.errors import OperationError
from llamafleet.facts import FileContent
from llamafleet.operations import files
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell, Transfer, Upload
from llamafleet.roles import Role
from llamafleet.roles.base import settings as base_settings
from llamafleet.roles.head import role as head
from llamafleet.roles.rpc_worker import settings as worker_settings
from llamafleet.shell import quote

from . import facts as model_facts
from . import fit, seed, source

NAME = "model"
RECORDS_DIR = f"{paths.MODELS_DIR}/.sha256"  # NAME -> "SIZE MTIME INODE CTIME SHA256" of each model file
HISTORY = 16  # earlier models remembered in the record, for keep_models
FREE_MARGIN = 64 << 20  # bytes left free on the models' filesystem after a transfer


@dataclass
class Seeding:
    """prepare's hand-off: the model's RPC cache entries, hashed on the controller (for seeding and pruning)."""

    entries: tuple[seed.Entry, ...] = ()


def setup(run, hosts) -> None:
    """Before any connection: with seeding, the model's large tensors are found and hashed here (once per model),
    so a header that cannot be read is refused before any host is asked anything."""
    if any(seeding(host) for host in hosts):
        run.handoff(Seeding).entries = seed.entries(run.handoff(source.Deploying).model)


def prepare(run, hosts) -> None:
    """Before a byte is sent: the model fits in the memory the cluster's hosts report."""
    fit.check(run, run.handoff(source.Deploying).model)


def seeding(host) -> bool:
    return "workers" in host.groups and worker_settings.settings(host).rpc_cache_seed


def operations(ctx):
    """The head gets the model file; a worker with rpc_cache_seed gets the model's large tensors in its cache."""
    model = ctx.run.handoff(source.Deploying).model
    user = base_settings.settings(ctx.host, ctx.run.inventory_file).user
    if seeding(ctx.host):
        yield seed.seeded(model, ctx.run.handoff(Seeding).entries, user)
    if "head" not in ctx.host.groups:
        return
    yield files.directory(RECORDS_DIR, mode="0700")
    yield present(model, user)
    yield deployed(model, user, notify=(head.RESTART, head.READY))


def target(name: str) -> str:
    return f"{paths.MODELS_DIR}/{name}"


def record(name: str) -> str:
    return f"{RECORDS_DIR}/{name}"


def present(model, user: str) -> Operation:
    """Every part of `model` is in the models folder, read-only to the service user, with its sha256."""
    states = [model_facts.ModelFile(target(p.name), record(p.name), _partial(p)) for p in model.parts]
    free = model_facts.FreeBytes(paths.INCOMING_DIR)

    def plan(facts: Facts):
        steps, need = [], 0
        for part, fact in zip(model.parts, states, strict=True):
            state = facts[fact]
            if state.sha256 == part.sha256:
                steps += _ownership(target(part.name), state, user)
                continue
            offset = state.partial if state.partial <= part.size else 0
            need += part.size - offset
            steps.append(Transfer(target(part.name), part.path, _partial(part), record(part.name), part.size,
                                  part.sha256, offset, "0440", "root", user))  # fmt: skip
        if not steps:
            how = "recorded" if all(facts[f].recorded for f in states) else "hashed"
            return NoChange(f"sha256 {model.sha256[:12]} matches ({how})")
        if facts[free] is not None and need + FREE_MARGIN > facts[free]:
            raise OperationError(
                f"{model.name} needs {need / 1e9:.2f} GB more on {paths.MODELS_DIR}, only "
                f"{facts[free] / 1e9:.2f} GB free: free some space (keep_models prunes older models)"
            )
        sending = [s for s in steps if isinstance(s, Transfer)]
        resumed = [s for s in sending if s.offset]
        why = f"{len(sending)} of {len(model.parts)} file(s) to send ({need / 1e6:.1f} MB)" if sending else "mode"
        return Change(tuple(steps), why + (f", {len(resumed)} resumed" if resumed else ""))

    return Operation(f"model {model.name} present", [*states, free], plan)


def _partial(part) -> str:
    """Named by content: a partial file is resumed only by the same bytes."""
    return f"{paths.INCOMING_DIR}/{part.sha256}.part"


def _ownership(path: str, state, user: str) -> list[Shell]:
    if (state.mode, state.owner, state.group) == (0o440, "root", user):
        return []
    return [Shell(quote("chown root:%s %s && chmod 0440 %s", user, path, path))]


def deployed(model, user: str, notify: tuple[str, ...]) -> Operation:
    """/etc/llamafleet/model.json names this model (and remembers earlier ones for keep_models)."""
    current = FileContent(paths.DEPLOYED_MODEL)

    def plan(facts: Facts):
        old = read_record(facts[current])
        parts = [p.name for p in model.parts]
        earlier = [old["parts"], *old["earlier"]] if old and old["parts"] != parts else old["earlier"] if old else []
        earlier = [names for names in earlier if names != parts][:HISTORY]
        new = {"name": model.name, "sha256": model.sha256, "size": model.size, "parts": parts, "alias": model.alias}
        text = json.dumps({**new, "earlier": earlier}, indent=1) + "\n"
        if old and {k: old.get(k) for k in new} == new:
            return NoChange(f"{model.name} is the deployed model")
        why = f"was {old['name']}" if old else "no model deployed"
        upload = Upload(paths.DEPLOYED_MODEL, text.encode(), "0640", "root", user)
        return Change((upload,), why, paths.DEPLOYED_MODEL, text)

    return Operation(f"model {model.name} deployed", [current], plan, notify)


def read_record(text: str | None) -> dict | None:
    """model.json as written by deployed(), or None when absent or unreadable."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("parts"), list):
        return None
    earlier = data.get("earlier")
    data["earlier"] = [e for e in earlier if isinstance(e, list)] if isinstance(earlier, list) else []
    return data


# The memory fit check reads the hosts' memory with the run's first batch: no round trip of its own.
ROLE = Role(NAME, operations, prefetch=(model_facts.Memory(),), setup=setup, prepare=prepare)
