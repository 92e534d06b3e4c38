"""Where the lab keeps things (cache, state, inventory) and how its names are formed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import llamafleet

from ..templating import SHARED_TEMPLATES
from .system import LabError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]{0,9}")
REPO_ROOT = Path(llamafleet.__file__).resolve().parent.parent
TEMPLATES = SHARED_TEMPLATES / "lab"
MAX_WORKERS = 250


# The lab's own places, beside llamafleet's host trees (/var/lib/llamafleet, /var/cache/llamafleet), which
# `teardown --purge` removes: a controller that is also an inventory host keeps its labs.
CACHE_DIR = "/var/cache/llamafleet-lab"
STATE_ROOT = "/var/lib/llamafleet-lab"
# Where earlier versions kept them: labs still up there are found (status, down, shell) until they are down.
FORMER_CACHE_DIR = "/var/cache/llamafleet/lab"
FORMER_STATE_ROOT = "/var/lib/llamafleet/lab"


def cache_dir() -> Path:
    """Base roots and package layers, kept between labs (env LLAMAFLEET_LAB_CACHE)."""
    return Path(os.environ.get("LLAMAFLEET_LAB_CACHE", CACHE_DIR))


def former_cache_dir() -> Path | None:
    """The cache of earlier versions, when the cache is in its default place and that one exists."""
    former = Path(FORMER_CACHE_DIR)
    return former if "LLAMAFLEET_LAB_CACHE" not in os.environ and former.is_dir() else None


def state_root() -> Path:
    """Per-lab state: overlays, pid files, logs (env LLAMAFLEET_LAB_STATE)."""
    return Path(os.environ.get("LLAMAFLEET_LAB_STATE", STATE_ROOT))


def state_roots() -> list[Path]:
    """Where labs may be: the state root, and (by default) the one of earlier versions while it exists."""
    former = Path(FORMER_STATE_ROOT)
    keep_former = "LLAMAFLEET_LAB_STATE" not in os.environ and former.is_dir()
    return [state_root(), former] if keep_former else [state_root()]


def lab_dir(name: str) -> Path:
    """The state directory of one lab: where it is (a lab made by an earlier version), else in the state root."""
    return next((root / name for root in state_roots() if (root / name).is_dir()), state_root() / name)


def inventory_dir() -> Path:
    """Where generated inventories live (env LLAMAFLEET_INVENTORY_DIR): the checkout's inventory/ when llamafleet
    runs from one, else inventory/ in the current folder (an installed llamafleet)."""
    override = os.environ.get("LLAMAFLEET_INVENTORY_DIR")
    if override:
        return Path(override)
    checkout = (REPO_ROOT / "tasks.py").is_file() and (REPO_ROOT / "roles").is_dir()
    return REPO_ROOT / "inventory" if checkout else Path.cwd() / "inventory"


def check_name(name: str) -> str:
    """A lab name: 1-10 lowercase letters/digits, so bridge and nft names stay valid and short."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise LabError(f"lab name {name!r}: use 1-10 lowercase letters or digits, starting with a letter")
    return name


def machine_name(lab: str, host: str) -> str:
    """The nspawn machine name: prefixed by the lab so several labs never share one."""
    return f"lf-{lab}-{host}"


def bridge_name(lab: str) -> str:
    """The lab's bridge (at most 15 characters with a 10-character lab name)."""
    return f"lfbr-{lab}"


def nft_table(lab: str) -> str:
    """The nft table (family ip) that holds the lab's masquerade rule."""
    return f"llamafleet_lab_{lab}"
