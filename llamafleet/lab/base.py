"""The lab's Debian base root (debootstrap, cached by recipe) and cached package layers (firewalls, balancers)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .mounts import mount_overlay, unmount_all_under
from .paths import TEMPLATES, cache_dir, former_cache_dir
from .system import remove_tree, run

SUITE = "bookworm"
VARIANT = "minbase"
# Kept minimal; each package is here for a reason:
#   systemd, systemd-sysv  real PID 1 and units (what the roles install and verify)
#   dbus                   systemctl/hostnamectl/logind talk over the system bus
#   openssh-server         the only way llamafleet reaches a host
#   iproute2               `ip` and `ss` (socket checks in verify), host0 debugging
#   ca-certificates        HTTPS downloads (llama.cpp sources, package index)
#   netbase                /etc/protocols and /etc/services (firewalld refuses to start without
#                          them; nft and ss resolve port names through them)
#   sudo                   non-root login users with ansible_become, as on most real hosts
# python3 is left out: Fabric and testinfra run shell commands, nothing runs Python on hosts.
INCLUDE = ("systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "ca-certificates", "netbase", "sudo")
# Timers that would start apt in the background and race provisioning for the dpkg lock.
DISABLED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer")
FIREWALL_PACKAGES = {"ufw": ("ufw",), "firewalld": ("firewalld",), "nftables": ("nftables",)}
# A balancer's packages: HAProxy, and socat for its runtime API socket. Installed only: the balancer role
# configures and enables haproxy, so the layer takes back the enabling its package does on install.
BALANCER_PACKAGES = ("haproxy", "socat")
BALANCER_DISABLED = ("haproxy.service",)
SSHD_DROPIN = "etc/ssh/sshd_config.d/llamafleet-lab.conf"
POLICY_RC_D = "#!/bin/sh\n# llamafleet lab layer build: do not start services in the build root\nexit 101\n"


def _configure_base(root: Path) -> None:
    """Setup steps applied after debootstrap (part of the recipe hash: edit and it rebuilds)."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / SSHD_DROPIN).write_text((TEMPLATES / "sshd-lab.conf").read_text())
    (root / "etc/hostname").write_text("lab-base\n")
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")  # pam_env warns on every login without it
    run(
        ["systemctl", f"--root={root}", "enable", "systemd-networkd.service", "ssh.service"],
        what="enabling systemd-networkd and ssh in the base",
    )
    run(["systemctl", f"--root={root}", "disable", *DISABLED_UNITS], what="disabling apt timers")
    run(["chroot", str(root), "apt-get", "clean"], what="cleaning the apt cache of the base")


def recipe() -> dict:
    """Everything the base is built from; its hash names the cached root."""
    return {
        "suite": SUITE,
        "variant": VARIANT,
        "include": list(INCLUDE),
        "disabled_units": list(DISABLED_UNITS),
        "setup": inspect.getsource(_configure_base),
        "sshd": (TEMPLATES / "sshd-lab.conf").read_text(),
    }


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def base_path() -> Path:
    """The cached base directory for the current recipe (its root is base_path()/root)."""
    return cache_dir() / f"base-{_digest(recipe())}"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One builder at a time; leftovers of killed builds are removed under the lock."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in cache.glob(".tmp-*"):
            unmount_all_under(stale)
            remove_tree(stale)
        yield


def ensure_base() -> tuple[Path, float | None]:
    """The base root for the current recipe, built if missing; returns (root, build seconds|None)."""
    final = base_path()
    if (final / "root").is_dir():
        return final / "root", None
    with _build_lock():
        if (final / "root").is_dir() or _adopted(final, "root"):
            return final / "root", None
        started = time.monotonic()
        tmp = cache_dir() / f".tmp-{final.name}-{os.getpid()}"
        tmp.mkdir()
        try:
            _debootstrap(tmp / "root")
            _configure_base(tmp / "root")
            (tmp / "recipe.json").write_text(json.dumps(recipe(), indent=1))
            os.rename(tmp, final)
        finally:
            unmount_all_under(tmp)
            remove_tree(tmp)
        prune_cache(final / "root")
        return final / "root", time.monotonic() - started


def _adopted(final: Path, inside: str) -> bool:
    """The same base or layer from the cache of earlier versions, hard-linked into the cache (under the build
    lock): no rebuild and no second copy. False when there is none, or it is on another filesystem."""
    former = former_cache_dir()
    if former is None or not (former / final.name / inside).is_dir():
        return False
    tmp = cache_dir() / f".tmp-{final.name}-{os.getpid()}"
    copied = run(["cp", "-a", "--link", "--", str(former / final.name), str(tmp)], what="", check=False, timeout=600)
    if copied.returncode != 0:
        remove_tree(tmp)
        return False
    os.rename(tmp, final)
    return True


def _debootstrap(root: Path) -> None:
    argv = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", SUITE, str(root)]
    run(argv, what="building the lab base with debootstrap", timeout=1200)


@dataclass(frozen=True)
class Layer:
    """Packages installed over the base, cached as one overlay layer: a firewall frontend's, a balancer's, or both.

    `disabled`: units the packages enable on install that the roles enable themselves.
    """

    name: str
    packages: tuple[str, ...]
    disabled: tuple[str, ...] = ()


def layer_for(firewall: str, balancer: bool) -> Layer | None:
    """The layer a host boots on: its firewall frontend's packages, plus the balancer's on a balancer.

    None: the host boots on the bare base.
    """
    packages = FIREWALL_PACKAGES.get(firewall, ())
    if not balancer:
        return Layer(firewall, packages) if packages else None
    name = f"balancer-{firewall}" if packages else "balancer"
    return Layer(name, (*BALANCER_PACKAGES, *packages), BALANCER_DISABLED)


def all_layers() -> list[Layer]:
    """Every layer lab.up may ask for (the cache keeps these)."""
    layers = [layer_for(firewall, balancer) for balancer in (False, True) for firewall in ("none", *FIREWALL_PACKAGES)]
    return [layer for layer in layers if layer is not None]


def layer_path(base_root: Path, layer: Layer) -> Path:
    """The cached directory of a layer over this base (its files are layer_path()/upper)."""
    recipe = [base_root.parent.name, layer.packages, inspect.getsource(_install_in_layer)]
    key = _digest([*recipe, layer.disabled] if layer.disabled else recipe)  # firewall layers: named as before
    return cache_dir() / f"layer-{layer.name}-{key}"


def prune_cache(base_root: Path) -> None:
    """Remove bases and layers of older recipes that no mounted overlay still uses."""
    keep = {base_root.parent, *(layer_path(base_root, layer) for layer in all_layers())}
    with open("/proc/mounts", encoding="utf-8") as table:
        mounted = table.read()
    for entry in [*cache_dir().glob("base-*"), *cache_dir().glob("layer-*")]:
        if entry not in keep and f"{entry}/" not in mounted:
            remove_tree(entry)


def ensure_layer(base_root: Path, layer: Layer) -> Path:
    """The cached overlay layer over the base with the layer's packages installed, its `disabled` units off."""
    final = layer_path(base_root, layer)
    if (final / "upper").is_dir():
        return final / "upper"
    with _build_lock():
        if (final / "upper").is_dir() or _adopted(final, "upper"):
            return final / "upper"
        tmp = cache_dir() / f".tmp-{final.name}-{os.getpid()}"
        try:
            mount_overlay([base_root], tmp / "upper", tmp / "work", tmp / "root")
            _install_in_layer(tmp / "root", layer.name, layer.packages)
            if layer.disabled:
                argv = ["systemctl", f"--root={tmp / 'root'}", "disable", *layer.disabled]
                run(argv, what=f"disabling {', '.join(layer.disabled)} in the {layer.name} layer")
            unmount_all_under(tmp)
            remove_tree(tmp / "work")
            remove_tree(tmp / "root")
            os.rename(tmp, final)
        finally:
            unmount_all_under(tmp)
            remove_tree(tmp)
        return final / "upper"


def _install_in_layer(root: Path, frontend: str, packages: tuple[str, ...]) -> None:
    """apt-get install in a non-booted nspawn (host network); services are not started."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    script = 'apt-get update -q && apt-get install -y -q --no-install-recommends "$@" && apt-get clean'
    argv = [
        "systemd-nspawn",
        "-q",
        "-D",
        str(root),
        "--register=no",
        "--keep-unit",
        f"--machine=lf-build-{frontend}",
        "--resolv-conf=copy-host",
        "--console=pipe",
        "--setenv=DEBIAN_FRONTEND=noninteractive",
        "--",
        "/bin/sh",
        "-c",
        script,
        "sh",
        *packages,
    ]
    run(argv, what=f"installing {frontend} into a cached lab layer", timeout=900)
    policy.unlink()
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
