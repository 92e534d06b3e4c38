"""`invoke bench`: throughput and latency through the head's API, per concurrency level, with a history.

Each request asks for a prompt of exactly N tokens (token ids from the model's own tokenizer, prompt
cache off, so every request processes its prompt) and exactly M generated tokens (end of text
ignored), streamed: the time to the first token is measured here, the prompt and generation rates
are the server's own timings. A level runs `concurrency` clients at once, `rounds` requests each.
"""

from __future__ import annotations

import ipaddress
import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from .errors import LlamafleetError, UsageError
from .flags import parse_whole
from .inventory import clusters_of
from .yamlfile import shorten

if TYPE_CHECKING:
    from .inventory import Inventory

TIMEOUT = (10, 600)
FILLER = "The quick brown fox jumps over the lazy dog. "
MAX_TOKENS = 1_000_000
MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class Sample:
    """One request: time to first token (client side) and the server's timings."""

    ttft_s: float
    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float


@dataclass(frozen=True)
class Level:
    """One concurrency level, summarised."""

    concurrency: int
    requests: int
    wall_s: float
    prompt_tokens_per_s: float  # mean of the requests' server-side prompt rates
    gen_tokens_per_s: float  # all generated tokens of the level over its wall time
    gen_tokens_per_s_per_request: float
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_max_s: float


def levels_from(text: str) -> list[int]:
    """--concurrency '1,4,8' -> [1, 4, 8] (each a whole number from 1 to MAX_CONCURRENCY, no repeats)."""
    found: list[int] = []
    for word in str(text).split(","):
        word = word.strip()
        if not word.isdigit() or not 1 <= int(word) <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency: {word!r} is not a whole number from 1 to {MAX_CONCURRENCY}")
        if int(word) not in found:
            found.append(int(word))
    return found


class Api:
    """The head's API as the benchmark uses it; the key goes in a header, never on a command line."""

    def __init__(self, base: str, key: str | None, ca_file: Path | None = None) -> None:
        self.base = base.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.verify: str | bool = str(ca_file) if ca_file else True  # HTTPS: exactly that CA

    def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
        try:
            response = requests.post(
                self.base + path, json=body, headers=self.headers, timeout=TIMEOUT, verify=self.verify, **kwargs
            )
        except requests.RequestException as exc:
            raise LlamafleetError(f"bench: {self.base}{path}: {type(exc).__name__}: {_reason(exc)}") from None
        if response.status_code != 200:
            raise LlamafleetError(f"bench: {self.base}{path} answered {response.status_code}: {response.text[:200]}")
        return response

    def prompt(self, tokens: int) -> list[int]:
        """Exactly `tokens` token ids, from the model's own tokenizer."""
        ids = self.post("/tokenize", {"content": FILLER * 8})
        found = ids.json().get("tokens") or []
        if not found:
            raise LlamafleetError(f"bench: {self.base}/tokenize returned no tokens")
        return (found * (tokens // len(found) + 1))[:tokens]

    def complete(self, prompt: list[int], gen: int) -> Sample:
        body = {"prompt": prompt, "n_predict": gen, "ignore_eos": True, "cache_prompt": False, "stream": True}
        started = time.monotonic()
        first = None
        timings: dict[str, Any] = {}
        with self.post("/completion", body, stream=True) as response:
            try:
                for line in response.iter_lines():
                    if not line.startswith(b"data: "):
                        continue
                    chunk = json.loads(line[6:])
                    if first is None and chunk.get("content") is not None:
                        first = time.monotonic() - started
                    timings = chunk.get("timings") or timings
            except (requests.RequestException, ValueError) as exc:
                raise LlamafleetError(f"bench: {self.base}/completion stream broke: {_reason(exc)}") from None
        if not timings:
            raise LlamafleetError(f"bench: {self.base}/completion ended without timings")
        return Sample(
            first if first is not None else time.monotonic() - started,
            int(timings.get("prompt_n", 0)),
            float(timings.get("prompt_ms", 0.0)),
            int(timings.get("predicted_n", 0)),
            float(timings.get("predicted_ms", 0.0)),
        )


def measure(
    inv: Inventory,
    runs: History,
    *,
    prompt_tokens: str | int,
    gen_tokens: str | int,
    concurrency: str,
    rounds: str | int,
    label: str | None,
    out: str | None,
    at: str | None = None,
) -> dict[str, Any]:
    """Measure each --concurrency level through the endpoint (`at`: a balancer or head, default the first balancer,
    else the head); the run, kept in `runs` (and written to `out`)."""
    levels = levels_from(concurrency)
    prompt_n = parse_whole("--prompt-tokens", prompt_tokens, 1, MAX_TOKENS)
    gen_n = parse_whole("--gen-tokens", gen_tokens, 1, MAX_TOKENS)
    round_n = parse_whole("--rounds", rounds, 1, 1000)
    api = endpoint_api(inv, at)
    prompt = api.prompt(prompt_n)
    print(f"bench: {api.base}, {prompt_n} prompt + {gen_n} generated tokens, {round_n} request(s) per client")
    measured = []
    for level in levels:
        measured.append(run_level(api, prompt, gen_n, level, round_n))
        print(f"  concurrency {level}: {measured[-1].gen_tokens_per_s:.1f} generated tokens/s", flush=True)
    clusters = clusters_of(inv)
    about: dict[str, Any] = {"label": label, "head": inv.head.name, "workers": [h.name for h in inv.workers]}
    if len(clusters) > 1 or inv.groups.get("balancers"):
        about["clusters"] = [{"name": c.name, "workers": [w.name for w in c.workers]} for c in clusters.values()]
        about["endpoint"] = api.base
    run = runs.add(record(measured, prompt_tokens=prompt_n, gen_tokens=gen_n, rounds=round_n, **about))
    if out:
        Path(out).write_text(json.dumps(run, indent=2) + "\n")
    print(f"run #{run['id']} kept in {runs.path}" + (f", written to {out}" if out else ""))
    return run


def endpoint_api(inv: Inventory, at: str | None = None) -> Api:
    """The API where a client on the controller reaches it: `at` (a balancer or a head), else the first balancer,
    else the head; with the key of the first cluster's head (the balancers pass it through to the heads).

    A head with api_tls is asked over HTTPS, trusting its CA (llamafleet's, or api_tls_ca_file) and nothing else.
    Otherwise llama-server speaks plain HTTP: a key sent to a host that is not this machine crosses the network in
    clear, and a line on stderr says so (the run goes on: on a trusted LAN that is the usual setup).
    """
    from .roles.head import role as head_role  # role modules load with the task that uses them

    balancers = inv.groups.get("balancers", [])
    heads = inv.groups["head"]
    target = at or (balancers[0] if balancers else heads[0])
    if target not in balancers and target not in heads:
        choices = ", ".join([*balancers, *heads])
        raise UsageError(f"--at: {shorten(str(target))!r} is not a balancer or head of the inventory ({choices})")
    head = head_role.settings.settings(inv.hosts[target if target in heads else heads[0]], str(inv.path))
    key_file = Path(head.api_key_file)
    key = head_role.read_key(key_file).decode().strip() if key_file.exists() else None
    if target in balancers:
        listen, port = inv.hosts[target].vars["balancer_host"], inv.hosts[target].vars["balancer_port"]
    else:
        listen, port = head.api_host, head.api_port
    listens_everywhere = listen in ("0.0.0.0", "::")  # noqa: S104 - a comparison, nothing is bound
    address = inv.hosts[target].connection.address if listens_everywhere else listen
    host = f"[{address}]" if ":" in address else address  # an IPv6 address in a URL
    ca_file = head_role.api_tls.client_ca(head, str(inv.path)) if target in heads else None
    if ca_file is not None:  # api_tls: HTTPS to the head, its certificate verified with that CA only
        return Api(f"https://{host}:{port}", key, ca_file)
    if key and not is_loopback(address):
        print(
            f"bench: warning: the API key travels in clear text to {host}:{port} (plain HTTP to another "
            "machine): anyone on the network between can read it",
            file=sys.stderr,
        )
    return Api(f"http://{host}:{port}", key)


def is_loopback(address: str) -> bool:
    """Whether `address` (a name or an IP address, not resolved) is this machine's loopback."""
    name = address.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def run_level(api: Api, prompt: list[int], gen: int, concurrency: int, rounds: int) -> Level:
    """`concurrency` clients at once, `rounds` requests each; the first error stops the level."""
    samples: list[Sample] = []
    errors: list[LlamafleetError] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(rounds):
            try:
                sample = api.complete(prompt, gen)
            except LlamafleetError as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                samples.append(sample)

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    if errors:
        raise errors[0]
    return summarise(concurrency, samples, wall)


def summarise(concurrency: int, samples: list[Sample], wall: float) -> Level:
    ttft = [s.ttft_s for s in samples]
    return Level(
        concurrency=concurrency,
        requests=len(samples),
        wall_s=round(wall, 3),
        prompt_tokens_per_s=_rate(statistics.mean(_per_s(s.prompt_n, s.prompt_ms) for s in samples)),
        gen_tokens_per_s=_rate(sum(s.predicted_n for s in samples) / wall if wall else 0.0),
        gen_tokens_per_s_per_request=_rate(statistics.mean(_per_s(s.predicted_n, s.predicted_ms) for s in samples)),
        ttft_mean_s=round(statistics.mean(ttft), 4),
        ttft_p50_s=round(statistics.median(ttft), 4),
        ttft_max_s=round(max(ttft), 4),
    )


def _per_s(count: int, ms: float) -> float:
    return count / (ms / 1000) if ms > 0 else 0.0


def _rate(value: float) -> float:
    return round(value, 2)


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


# -- history -------------------------------------------------------------------------------------


class History:
    """Runs kept one JSON document per line, numbered from 1, beside the inventory (<stem>.bench.jsonl)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def beside(cls, inventory_path: Path) -> History:
        """The history of the inventory at `inventory_path`."""
        return cls(inventory_path.with_name(f"{inventory_path.stem}.bench.jsonl"))

    def runs(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        found = []
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                run = json.loads(line)
            except ValueError:
                raise UsageError(f"{self.path}: line {number} is not JSON (remove it or the file)") from None
            if isinstance(run, dict) and isinstance(run.get("levels"), list):
                found.append(run)
        return found

    def add(self, run: dict[str, Any]) -> dict[str, Any]:
        run = {"id": len(self.runs()) + 1, **run}
        with self.path.open("a") as handle:
            handle.write(json.dumps(run, sort_keys=True) + "\n")
        return run

    def pick(self, spec: str | bool) -> list[dict[str, Any]]:
        """--compare: True for the last two runs, else '3,5' (ids) or '-1,-2' (from the end)."""
        runs = self.runs()
        if spec is True or spec == "":
            if len(runs) < 2:
                raise UsageError(f"--compare: {self.path} holds {len(runs)} run(s); two are needed")
            return runs[-2:]
        chosen = []
        for word in str(spec).split(","):
            word = word.strip()
            try:
                index = int(word)
                if index == 0:
                    raise IndexError(index)
                chosen.append(runs[index - 1] if index > 0 else runs[index])
            except (ValueError, IndexError):
                raise UsageError(f"--compare: no run {word!r} in {self.path} (runs 1..{len(runs)})") from None
        return chosen


def record(levels: list[Level], **about: Any) -> dict[str, Any]:
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **about, "levels": [asdict(x) for x in levels]}


# -- output --------------------------------------------------------------------------------------

COLUMNS = (
    ("concurrency", "CONC", "{:d}"),
    ("requests", "REQS", "{:d}"),
    ("prompt_tokens_per_s", "PROMPT t/s", "{:.1f}"),
    ("gen_tokens_per_s", "GEN t/s", "{:.1f}"),
    ("gen_tokens_per_s_per_request", "GEN t/s/req", "{:.1f}"),
    ("ttft_p50_s", "TTFT p50 s", "{:.3f}"),
    ("ttft_max_s", "TTFT max s", "{:.3f}"),
)


def table(run: dict[str, Any]) -> str:
    header = [title for _, title, _ in COLUMNS]
    rows = [[fmt.format(level[key]) for key, _, fmt in COLUMNS] for level in run["levels"]]
    return _aligned([header, *rows])


def compare(runs: list[dict[str, Any]]) -> str:
    """Generation tokens/s and TTFT p50 per concurrency level, one column pair per run."""
    header = ["CONC"]
    for run in runs:
        header += [f"#{run['id']} GEN t/s", f"#{run['id']} TTFT s"]
    concurrency = sorted({level["concurrency"] for run in runs for level in run["levels"]})
    rows = []
    for level in concurrency:
        row = [str(level)]
        for run in runs:
            found = next((x for x in run["levels"] if x["concurrency"] == level), None)
            row += [f"{found['gen_tokens_per_s']:.1f}", f"{found['ttft_p50_s']:.3f}"] if found else ["-", "-"]
        rows.append(row)
    about = [f"#{run['id']}: {run['time']} {run.get('label') or ''} ({shape(run)})".rstrip() for run in runs]
    return "\n".join(about) + "\n" + _aligned([header, *rows])


def listed(run: dict[str, Any]) -> str:
    """One line of --list-runs: id, time, label and shape."""
    return f"#{run['id']}  {run['time']}  {run.get('label') or '-'}  {shape(run)}"


def shape(run: dict[str, Any]) -> str:
    """What a run measured: how many workers, how many prompt and generated tokens per request."""
    workers = run.get("workers") or []
    return f"{len(workers)} worker(s), {run.get('prompt_tokens')} prompt + {run.get('gen_tokens')} generated tokens"


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Write figure(runs) to `path` as PNG (needs matplotlib)."""
    figure(runs).savefig(path, format="png")


def figure(runs: list[dict[str, Any]]) -> Any:
    """Generation tokens/s (all clients) against concurrent clients, one line per run, as a matplotlib Figure.

    The x axis has whole-number ticks only (the levels measured, when there are few), the y axis starts at 0,
    and each run's legend entry names it and what it measured through: its clusters, else its head and workers.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib (or the package's 'plot' extra)") from None
    drawn = Figure(figsize=(8, 5), dpi=110)
    axes = drawn.subplots()
    for run in runs:
        levels = sorted(run["levels"], key=lambda x: x["concurrency"])
        xs, ys = [x["concurrency"] for x in levels], [x["gen_tokens_per_s"] for x in levels]
        axes.plot(xs, ys, marker="o", label=legend(run))
    measured = sorted({level["concurrency"] for run in runs for level in run["levels"]})
    if 0 < len(measured) <= 12:
        axes.set_xticks(measured)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0, top=max([axes.get_ylim()[1], 1.0]))
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("generated tokens/s (all clients)")
    axes.set_title("llamafleet bench: generation throughput")
    axes.grid(True, alpha=0.3)
    if runs:
        axes.legend(loc="best", fontsize="small")
    drawn.tight_layout()
    return drawn


def legend(run: dict[str, Any]) -> str:
    """A run's legend entry: `#id label: ` and its clusters (each with its worker count), else head and workers."""
    name = f"#{run['id']}" + (f" {run['label']}" if run.get("label") else "")
    clusters = run.get("clusters") or []
    if clusters:
        shown = [_cluster_shown(c) for c in clusters]
        return f"{name}: {len(shown)} cluster{'s' * (len(shown) != 1)} ({', '.join(shown)})"
    workers = [str(w) for w in run.get("workers") or []]
    head = f"{run['head']} + " if run.get("head") else ""
    listed = f" ({', '.join(workers)})" if 0 < len(workers) <= 4 else ""
    return f"{name}: {head}{len(workers)} worker{'s' * (len(workers) != 1)}{listed}"


def _cluster_shown(cluster: Any) -> str:
    """A cluster of a run: its name, with its worker count when the run recorded its workers."""
    if not isinstance(cluster, dict):
        return str(cluster)
    workers = cluster.get("workers")
    count = f" {len(workers)} worker{'s' * (len(workers) != 1)}" if isinstance(workers, list) else ""
    return f"{cluster.get('name', '?')}{':' if count else ''}{count}"
