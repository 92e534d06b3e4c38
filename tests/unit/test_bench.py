"""invoke bench: levels, summaries, the history and its comparisons (the API side runs on the lab)."""

from __future__ import annotations

import json

import pytest

from llamafleet import bench
from llamafleet.errors import UsageError


def test_concurrency_levels():
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
