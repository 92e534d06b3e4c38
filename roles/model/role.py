"""Role model: the GGUF file deploy hands over, checksummed on the head and recorded as the deployed one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from llamafleet import paths
from llamafleet.errors import UsageError
from llamafleet.operations import files
from llamafleet.operations.files import source_sha256

NAME = "model"
GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
# The file keeps its name on the head (it names the model in /v1/models unless model_alias is set).
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.gguf")


@dataclass(frozen=True)
class Model:
    """A model file on the controller, checked and hashed once."""

    path: Path
    name: str
    size: int
    sha256: str


def inspect(source: str) -> Model:
    """The model behind --model, refused before any byte is sent when it is not a GGUF file."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise UsageError(f"--model: no such file: {path}")
    if not MODEL_NAME.fullmatch(path.name):
        raise UsageError(f"--model: {path.name!r}: the file name must end in .gguf and use letters, digits, _ . + -")
    with path.open("rb") as handle:
        header = handle.read(8)
    version = int.from_bytes(header[4:8], "little") if len(header) == 8 else None
    if header[:4] != GGUF_MAGIC or version not in GGUF_VERSIONS:
        raise UsageError(f"--model: {path} is not a GGUF file (version 2 or 3); nothing was sent")
    return Model(path, path.name, path.stat().st_size, source_sha256(path))


def operations(ctx):
    model: Model = ctx.run.params["model"]
    user = ctx.vars["llamafleet_user"]
    target = f"{paths.MODELS_DIR}/{model.name}"
    # Read-only, readable by the service user; written to a temporary name, checked, then renamed.
    yield files.copy(target, model.path, model.sha256, mode="0440", group=user)
    record = json.dumps({"name": model.name, "sha256": model.sha256, "size": model.size}, indent=1) + "\n"
    yield files.file(paths.DEPLOYED_MODEL, record, mode="0640", group=user)
