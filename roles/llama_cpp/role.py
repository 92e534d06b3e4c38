"""Role llama_cpp: one identical, pinned llama.cpp on every host, built once per platform group.

targets.py decides what each host runs and builds each missing artifact once (controller side);
install.py stages it beside the running release and switches to it (role release switches);
gate.py checks that every host then runs the same build.
"""

from __future__ import annotations

from llamafleet.operations import packages
from llamafleet.roles import Role, templates_beside

from . import dependencies, targets
from .hostfacts import CPU_FLAGS, INSTALLED, NAME
from .install import staged


def operations(ctx):
    target = ctx.run.handoff(targets.Targets).by_host[ctx.name]
    runtime = dependencies.runtime_dependencies(
        ctx.os["id"], ctx.os["version_id"], target.settings.backend, [ctx.os["family"]]
    )
    yield packages.present(list(runtime.packages), ctx.os["family"])
    yield staged(target)


ROLE = Role(
    NAME,
    operations,
    template_dir=templates_beside(__file__),
    prefetch=(CPU_FLAGS, INSTALLED),  # prepare needs no round trip of its own
    validate=targets.validate,
    prepare=targets.prepare,
)
