"""Benchmark of `invoke deploy`: first transfer against the SSH channel, unchanged re-deploy, head cold starts.

Needs a provisioned lab (`invoke lab.up --name NAME --link-rate 1gbit`, then `invoke provision -i
inventory/NAME.yml ...`). Makes its models with scripts/make_gguf.py and prints, measured in one run:

- the SSH channel itself (`cat FILE | ssh head 'cat > /dev/null'`) and the first transfer of the same file
  (resumable, sha256 checked on the host while it streams), as throughput and ratio;
- an unchanged re-deploy of the large model to 1 head + 2 workers (seeding on, so every host is compared);
- the head's start (restart to /health 200) with empty worker caches (stock cold), with caches filled by the
  previous start (stock warm) and with caches filled only by seeding (first start after a deploy), with the
  bytes that reached the workers' links during each start; seeding throughput per worker.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import inventory, paths  # noqa: E402
from llamafleet.lab import state  # noqa: E402
from llamafleet.lab.inventory import ssh_argv  # noqa: E402
from llamafleet.operations import Transfer  # noqa: E402
from llamafleet.operations.files import source_sha256  # noqa: E402
from llamafleet.roles.head import role as head_role  # noqa: E402
from llamafleet.roles.model import seed, source  # noqa: E402
from llamafleet.shell import quote  # noqa: E402
from llamafleet.ssh import HostConnection  # noqa: E402

MB = 1e6
WORKERS = ("w1", "w2")
READY_LIMIT = 600
VERSION = "b11434"  # the build the lab was provisioned with


def make(path: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_gguf.py"), str(path), *args], check=True, stdout=subprocess.DEVNULL
    )


def on(lab, host: str, command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ssh_argv(lab, lab.host(host)) + [command], capture_output=True, text=True, check=True, **kwargs
    )


def pins() -> list[str]:
    """The llama.cpp build the lab was provisioned with (deploy's identity gate compares it)."""
    found = subprocess.run(
        [sys.executable, str(ROOT / "scripts/fetch_llama_source.py"), VERSION], capture_output=True, text=True
    )
    if found.returncode:
        raise SystemExit(f"no llama.cpp source: {found.stderr[-500:]}")
    return ["-e", f"llama_cpp_version={VERSION}", "-e", f"llama_cpp_source_archive={found.stdout.split()[0]}"]


PINS: list[str] = []


def deploy(lab, model: Path, *extra: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "deploy", "-i", lab.inventory, "--json", "--model", str(model), *PINS,
         *extra],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"deploy failed: {done.stdout[-3000:]} {done.stderr[-2000:]}")
    changed = [r["operation"] for r in json.loads(done.stdout)["results"] if r["status"] == "changed"]
    print(f"   deploy {model.name} {' '.join(extra)}: {elapsed:.2f} s, changed: {changed or 'nothing'}")
    return elapsed


def channel_baseline(lab, model: Path, *options: str, sink: str = "/dev/null") -> float:
    """Seconds for `cat FILE | ssh [options] head 'cat > SINK'`."""
    argv = ssh_argv(lab, lab.host("head"))
    with model.open("rb") as handle:
        start = time.perf_counter()
        subprocess.run([argv[0], *options, *argv[1:], quote("cat > %s", sink)], stdin=handle, check=True)
    return time.perf_counter() - start


def first_transfer(lab, model: Path, sha256: str) -> float:
    conn = HostConnection(inventory.load(lab.inventory).hosts["head"], base_dir=Path(lab.inventory).parent)
    target = f"{paths.INCOMING_DIR}/bench-target"
    size = model.stat().st_size
    transfer = Transfer(target, model, f"{target}.part", f"{target}.sha256", size, sha256, 0, "0400")
    try:
        start = time.perf_counter()
        conn.put_resumable(transfer)
        return time.perf_counter() - start
    finally:
        conn.check(quote("rm -f %s %s %s", target, f"{target}.part", f"{target}.sha256"))
        conn.close()


def received(lab) -> int:
    return sum(int(on(lab, w, "cat /sys/class/net/host0/statistics/rx_bytes").stdout) for w in WORKERS)


def head_start(lab) -> tuple[float, int]:
    """Restart llama-server, wait for /health 200 (from the head): seconds, and bytes the workers received."""
    before = received(lab)
    probe = quote(
        "s=$(date +%%s.%%N); systemctl restart llama-server; "
        "until timeout 5 bash -c %s probe 127.0.0.1 8080 2>/dev/null | grep -q ' 200'; do sleep 0.1; done; "
        "echo $(date +%%s.%%N) $s",
        head_role.PROBE,
    )
    end, start = map(float, on(lab, "head", probe, timeout=READY_LIMIT).stdout.split())
    return end - start, received(lab) - before


def clear_caches(lab) -> None:
    for worker in WORKERS:
        on(lab, worker, quote("rm -rf %s/* %s", paths.RPC_CACHE_DIR, f"{paths.STATE_DIR}/rpc-seeded"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="lab", help="name of a provisioned lab (lab.up --link-rate 1gbit)")
    parser.add_argument("--big", default="2G", help="size of the transfer and re-deploy model (2G)")
    parser.add_argument("--start", default="1G", help="size of the cold-start model (1G)")
    args = parser.parse_args()
    lab = state.load(args.lab)
    if lab is None:
        raise SystemExit(f"lab {args.lab} is not up")
    PINS.extend(pins())
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        big, start = Path(tmp) / "bench-big.gguf", Path(tmp) / "bench-start.gguf"
        make(big, "--size", args.big, "--seed", "21")
        make(start, "--size", args.start, "--seed", "22")
        run(lab, big, start)


def run(lab, big: Path, start: Path) -> None:
    size = big.stat().st_size
    digest = source_sha256(big)
    print(f"1. first transfer of {size / MB:.0f} MB to the head")
    gcm = ("-c", "aes128-gcm@openssh.com")  # the cipher llamafleet's transfers prefer (AES instructions)
    disk = f"{paths.INCOMING_DIR}/bench-channel"
    channel = channel_baseline(lab, big)
    channel_gcm = channel_baseline(lab, big, *gcm)
    channel_disk = channel_baseline(lab, big, *gcm, sink=disk)
    on(lab, "head", quote("rm -f %s", disk))
    ours = first_transfer(lab, big, digest)
    for label, took in (
        ("SSH channel, default cipher (cat | ssh 'cat > /dev/null')", channel),
        ("SSH channel, AES-GCM", channel_gcm),
        ("SSH channel, AES-GCM, written to the head's disk (no hash)", channel_disk),
        ("llamafleet's transfer: resumable, sha256 on the host while it streams, fsynced", ours),
    ):
        print(f"   {label}: {took:.2f} s, {size / MB / took:.0f} MB/s")
    print(f"   ratio: {channel / ours:.2f}x the default channel's throughput, {channel_gcm / ours:.2f}x AES-GCM's, "
          f"{channel_disk / ours:.2f}x AES-GCM's into a file")  # fmt: skip
    print(f"2. re-deploy of an unchanged {size / MB:.0f} MB model to 1 head + 2 workers (seeding on)")
    deploy(lab, big, "-e", "rpc_cache_seed=true")
    again = deploy(lab, big, "-e", "rpc_cache_seed=true")
    print(f"   unchanged re-deploy: {again:.2f} s")
    print(f"3. head start with a {start.stat().st_size / MB:.0f} MB model, two workers")
    deploy(lab, start)
    clear_caches(lab)
    cold, cold_bytes = head_start(lab)
    warm, warm_bytes = head_start(lab)
    clear_caches(lab)
    hashing = time.perf_counter()
    seed.entries(source.resolve(str(start), progress=False))  # kept in the controller's cache
    hashing = time.perf_counter() - hashing
    seeding = deploy(lab, start, "-e", "rpc_cache_seed=true")  # the model is deployed: this only seeds
    seeded_bytes = int(on(lab, "w1", f"du -sb {paths.RPC_CACHE_DIR}").stdout.split()[0])
    seeded, seeded_link = head_start(lab)
    print(f"   stock, empty caches:        {cold:.2f} s, {cold_bytes / MB:.0f} MB to the workers")
    print(f"   stock, caches of last start: {warm:.2f} s, {warm_bytes / MB:.0f} MB to the workers")
    print(f"   seeded, first start:        {seeded:.2f} s, {seeded_link / MB:.0f} MB to the workers")
    print(f"   seeded / warm: {seeded / warm:.2f}x; cold / seeded: {cold / seeded:.1f}x")
    print(f"   FNV-1a-64 of the large tensors on the controller: {hashing:.2f} s (once per model)")
    print(f"   seeding: {seeded_bytes / MB:.0f} MB per worker in a {seeding:.2f} s deploy, "
          f"{seeded_bytes / MB / seeding:.0f} MB/s per worker")  # fmt: skip
    deploy(lab, big, "-e", "keep_models=1")  # leave one model behind


if __name__ == "__main__":
    main()
