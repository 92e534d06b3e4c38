"""bench --plot: whole client counts on the x axis, y from 0, each run's clusters or workers in the legend.

tests/fixtures/recorded/bench/lab.bench.jsonl is the history `invoke bench` kept on a 1 head + 2 workers lab.
"""

from __future__ import annotations

import pytest
from recordings import RECORDED

from llamafleet import bench

pytest.importorskip("matplotlib")


def recorded_runs() -> list[dict]:
    return bench.History(RECORDED / "bench" / "lab.bench.jsonl").runs()


def drawn(runs: list[dict]):
    figure = bench.figure(runs)
    figure.canvas.draw()  # ticks and limits as the saved file has them
    return figure.axes[0]


def test_recorded_runs_are_drawn_on_whole_client_counts_from_zero_with_their_workers():
    axes = drawn(recorded_runs())
    assert list(axes.get_xticks()) == [1, 2, 3, 4], "the levels measured, nothing between them"
    assert axes.get_ylim()[0] == 0
    assert max(line.get_ydata().max() for line in axes.get_lines()) <= axes.get_ylim()[1]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [
        "#1 2 workers: head + 2 workers (w1, w2)",
        "#2 again: head + 2 workers (w1, w2)",
    ]


def test_many_levels_still_get_whole_ticks():
    run = recorded_runs()[0]
    levels = [dict(run["levels"][0], concurrency=c) for c in range(1, 19)]  # matplotlib alone would tick 2.5, 7.5
    axes = drawn([dict(run, levels=levels)])
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks)


def test_the_legend_names_a_runs_clusters_when_it_measured_through_a_balancer():
    run = recorded_runs()[0]
    clusters = [{"name": "c1", "head": "c1-head", "workers": ["c1-w1", "c1-w2"]}, {"name": "c2", "workers": ["c2-w1"]}]
    runs = [dict(run, id=3, label=None, clusters=clusters), dict(run, id=4, label="x", clusters=["c1"])]
    runs.append(dict(run, id=5, label=None, workers=[f"w{n}" for n in range(1, 7)]))
    axes = drawn(runs)
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [
        "#3: 2 clusters (c1: 2 workers, c2: 1 worker)",
        "#4 x: 1 cluster (c1)",
        "#5: head + 6 workers",
    ]


def test_plot_writes_a_png_of_the_figure(tmp_path):
    bench.plot(recorded_runs(), tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
