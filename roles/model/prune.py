"""After the head serves the new model: model files beyond keep_models, and leftover partial transfers, removed."""

from __future__ import annotations

from llamafleet import paths
from llamafleet.facts import CommandOutput, FileContent
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell
from llamafleet.roles import Role
from llamafleet.roles.rpc_worker import settings as worker_settings
from llamafleet.shell import quote

from . import role, settings, source

NAME = "model pruned"


def operations(ctx):
    keep = settings.settings(ctx.host, ctx.run.inventory_file).keep_models
    if role.seeding(ctx.host):
        model = ctx.run.handoff(source.Deploying).model
        limit = role.seed.parse_size(worker_settings.settings(ctx.host, ctx.run.inventory_file).rpc_cache_max_size)
        yield role.seed.cache_pruned(model, ctx.run.handoff(role.Seeding).entries, keep, limit)
    if "head" in ctx.host.groups:
        yield pruned(keep)


def pruned(keep_models: int) -> Operation:
    """Only the deployed model and the keep_models - 1 deployed before it stay (files llamafleet recorded only)."""
    deployed = FileContent(paths.DEPLOYED_MODEL)
    recorded = CommandOutput(quote("ls -A -- %s 2>/dev/null || true", role.RECORDS_DIR))
    partials = CommandOutput(quote("ls -A -- %s 2>/dev/null || true", paths.INCOMING_DIR))

    def plan(facts: Facts):
        record = role.read_record(facts[deployed])
        if record is None:
            return NoChange("no model deployed")
        kept = {name for names in [record["parts"], *record["earlier"][: keep_models - 1]] for name in names}
        old = sorted(name for name in facts[recorded] if name and name not in kept)
        # Parts of unfinished transfers and the files of attempts that did not end by themselves (<part>.XXXXXX).
        leftovers = sorted(name for name in facts[partials] if name.endswith(".part") or ".part." in name)
        doomed = [role.target(n) for n in old] + [role.record(n) for n in old]
        doomed += [f"{paths.INCOMING_DIR}/{n}" for n in leftovers]
        if not doomed:
            return NoChange(f"{len(kept)} model file(s) kept (keep_models {keep_models}), nothing else recorded")
        what = ", ".join(old) or "no model"
        return Change(
            (Shell(quote("rm -f --" + " %s" * len(doomed), *doomed)),), f"removes {what}; {len(leftovers)} partial(s)"
        )

    return Operation(f"models pruned to keep_models {keep_models}", [deployed, recorded, partials], plan)


ROLE = Role(NAME, operations)
