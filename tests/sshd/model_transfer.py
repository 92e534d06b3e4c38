"""What the sshd tests of resumable transfers share: the model they send, its Transfer, and the host's part files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

from llamafleet.operations import Transfer

DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(DATA).hexdigest()


def places(folder: Path) -> dict[str, Path]:
    """The model as a controller file under `folder` and where it goes on the host: path, part and sha256 record."""
    models = folder / "models"
    (models / ".incoming").mkdir(parents=True)
    (models / ".sha256").mkdir()
    source = folder / "model.gguf"
    source.write_bytes(DATA)
    return {
        "source": source,
        "path": models / "model.gguf",
        "partial": models / ".incoming" / f"{SHA}.part",
        "record": models / ".sha256" / "model.gguf",
    }


def transfer(where: dict[str, Path], offset: int = 0, sha256: str = SHA) -> Transfer:
    """The Transfer of DATA to `where`, resumed from `offset`, owned by the user running the tests."""
    group = Path("/").owner() if os.getuid() == 0 else str(os.getgid())
    return Transfer(
        str(where["path"]), where["source"], str(where["partial"]), str(where["record"]), len(DATA), sha256,
        offset, "0440", "root" if os.getuid() == 0 else str(os.getuid()), group,
    )  # fmt: skip


def attempt_files(partial: Path) -> list[Path]:
    """The files of attempts under way: each writes its own beside the part (<part>.XXXXXX)."""
    return list(partial.parent.glob(partial.name + ".*"))


def attempt_size(partial: Path) -> int:
    """Bytes written by the attempt under way (0 before it starts and once it ended)."""
    sizes = [0]
    for path in attempt_files(partial):
        with contextlib.suppress(FileNotFoundError):  # renamed to the part or removed since it was listed
            sizes.append(path.stat().st_size)
    return max(sizes)


def settled_part(partial: Path, seconds: float = 15) -> int:
    """The part's size once the cut attempt has ended on the host (its end is asynchronous to the controller's).

    The attempt's exit renames its own file to the part: the part there and no attempt file left is that
    end, whatever the timing. Past `seconds` the part's absence fails the caller.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (not partial.exists() or attempt_files(partial)):
        time.sleep(0.05)
    assert partial.exists(), f"no part {partial} within {seconds} s of the cut"
    return partial.stat().st_size
