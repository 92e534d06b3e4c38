"""invoke bench: levels, summaries, the history and its comparisons (the API side runs on the lab)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from llamafleet import bench, inventory
from llamafleet.errors import UsageError


def test_concurrency_levels_are_read_once_each_in_order_and_bad_ones_refused():
    assert bench.levels_from("1,4, 8,4") == [1, 4, 8]
    for bad in ("0", "1,,2", "two", "-1", "1.5", str(bench.MAX_CONCURRENCY + 1)):
        with pytest.raises(UsageError, match="--concurrency"):
            bench.levels_from(bad)


def test_a_level_is_summarised_from_the_server_timings():
    samples = [
        bench.Sample(ttft_s=0.2, prompt_n=128, prompt_ms=100.0, predicted_n=64, predicted_ms=640.0),
        bench.Sample(ttft_s=0.4, prompt_n=128, prompt_ms=200.0, predicted_n=64, predicted_ms=1280.0),
    ]
    level = bench.summarise(2, samples, wall=1.6)
    assert level.prompt_tokens_per_s == pytest.approx((1280 + 640) / 2)
    assert level.gen_tokens_per_s == pytest.approx(128 / 1.6)  # both clients' tokens over the wall time
    assert level.gen_tokens_per_s_per_request == pytest.approx((100 + 50) / 2)
    assert (level.ttft_p50_s, level.ttft_max_s, level.requests) == (pytest.approx(0.3), 0.4, 2)


def run(levels, **about):
    return bench.record(
        [bench.summarise(c, [bench.Sample(0.1 * c, 8, 10.0, 8, 80.0 * c)], 0.1 * c) for c in levels], **about
    )


def test_history_numbers_runs_and_picks_them(tmp_path):
    history = bench.History(tmp_path / "lab.bench.jsonl")
    assert history.runs() == []
    with pytest.raises(UsageError, match="two are needed"):
        history.pick(True)
    first = history.add(run([1, 2], label="1 worker", workers=["w1"], prompt_tokens=8, gen_tokens=8))
    second = history.add(run([1, 2, 4], label="2 workers", workers=["w1", "w2"], prompt_tokens=8, gen_tokens=8))
    assert (first["id"], second["id"]) == (1, 2)
    assert [r["id"] for r in history.pick(True)] == [1, 2]
    assert [r["id"] for r in history.pick("2,1")] == [2, 1]
    assert [r["id"] for r in history.pick("-1")] == [2]
    for bad in ("3", "x", "0,1"):
        with pytest.raises(UsageError, match="--compare: no run"):
            history.pick(bad)
    text = bench.compare(history.pick(True))
    assert "#1 GEN t/s" in text and "#2 TTFT s" in text and "2 workers" in text
    row4 = next(line for line in text.splitlines() if line.split()[:1] == ["4"])
    assert row4.split()[1:3] == ["-", "-"]  # run 1 did not measure 4 clients


def test_a_damaged_history_is_named(tmp_path):
    path = tmp_path / "lab.bench.jsonl"
    path.write_text(json.dumps(run([1])) + "\n{not json\n")
    with pytest.raises(UsageError, match="line 2 is not JSON"):
        bench.History(path).runs()


def test_table_has_a_row_per_level():
    lines = bench.table(run([1, 2, 4])).splitlines()
    assert lines[0].split()[:2] == ["CONC", "REQS"] and [line.split()[0] for line in lines[1:]] == ["1", "2", "4"]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    runs = [{"id": 1, **run([1, 2])}, {"id": 2, **run([1, 2, 4])}]
    bench.plot(runs, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class FakeHead(http.server.BaseHTTPRequestHandler):
    """llama-server's /tokenize and streamed /completion, with fixed server timings; keeps each request's headers."""

    seen: list[tuple[str, str | None]] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeHead.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/tokenize":
            self.reply(json.dumps({"tokens": [1, 2, 3]}).encode())
            return
        timings = {
            "prompt_n": len(body["prompt"]),
            "prompt_ms": 10.0,
            "predicted_n": body["n_predict"],
            "predicted_ms": 20.0,
        }
        chunks = [{"content": "x"}, {"content": "", "timings": timings}]
        self.reply(b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks))

    def reply(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_head():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHead)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHead.seen = []
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_measure_asks_the_heads_api_and_keeps_the_run(tmp_path, fake_head, capsys):
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  children:\n    head: {hosts: {h1: {ansible_host: 127.0.0.1}}}\n"
        "    workers: {hosts: {w1: {ansible_host: 127.0.0.2}}}\n"
    )
    inv = inventory.load(path, {"api_port": fake_head, "api_key_file": str(tmp_path / "key")})
    (tmp_path / "key").write_text("sekrit\n")
    runs = bench.History.beside(path)
    flags = {"prompt_tokens": "5", "gen_tokens": 4, "concurrency": "1,2", "rounds": 2, "label": "one"}
    run = bench.measure(inv, runs, **flags, out=str(tmp_path / "run.json"))
    assert runs.path == tmp_path / "hosts.bench.jsonl" and runs.runs() == [run]
    assert json.loads((tmp_path / "run.json").read_text()) == run
    assert (run["id"], run["label"], run["head"], run["workers"], run["prompt_tokens"]) == (1, "one", "h1", ["w1"], 5)
    assert [(level["concurrency"], level["requests"]) for level in run["levels"]] == [(1, 2), (2, 4)]
    assert set(FakeHead.seen) == {("/tokenize", "Bearer sekrit"), ("/completion", "Bearer sekrit")}
    printed = capsys.readouterr().out
    assert f"bench: http://127.0.0.1:{fake_head}, 5 prompt + 4 generated tokens, 2 request(s) per client" in printed
    assert f"run #1 kept in {runs.path}, written to {tmp_path / 'run.json'}" in printed
    assert bench.listed(run).startswith("#1  ") and bench.listed(run).endswith(
        "  one  1 worker(s), 5 prompt + 4 generated tokens"
    )


@pytest.mark.parametrize(("flag", "value"), [("--prompt-tokens", "0"), ("--gen-tokens", "x"), ("--rounds", "1001")])
def test_measure_refuses_a_bad_size_before_asking_the_api(tmp_path, flag, value):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    head: {hosts: {h1: {ansible_host: 127.0.0.1, api_port: 1}}}\n")
    flags = {"prompt_tokens": 1, "gen_tokens": 1, "concurrency": "1", "rounds": 1, "label": None, "out": None}
    flags[flag.lstrip("-").replace("-", "_")] = value
    with pytest.raises(UsageError, match=flag):
        bench.measure(inventory.load(path), bench.History.beside(path), **flags)
