"""Progress of long commands: build steps parsed from make and ninja output, plain lines when not a TTY."""

from __future__ import annotations

import io

from llamafleet import progress

MAKE = b"""-- Configuring done (1.2s)
[  2%] Building C object ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o
[ 45%] Building CXX object src/CMakeFiles/llama.dir/llama-model.cpp.o
[100%] Linking CXX executable ../../bin/llama-server
"""
NINJA = b"[12/300] Building CXX object src/CMakeFiles/llama.dir/llama.cpp.o\n[300/300] Linking CXX executable bin/rpc\n"


def sink(stream):
    found = progress.CommandProgress("w1: build llama.cpp b11434", stream)
    found.progress.every = 0  # every change printed, for the test
    return found


def test_make_percentages_become_progress_lines():
    stream = io.StringIO()
    build = sink(stream)
    for start in range(0, len(MAKE), 7):  # arrives in arbitrary pieces
        build.write(MAKE[start : start + 7])
    build.close(ok=True)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("w1: build llama.cpp b11434: started")
    assert [line.split(": ")[-1].split(",")[0] for line in lines[1:-1]] == ["2%", "45%", "100%"]
    assert "done after" in lines[-1]
    assert "\r" not in stream.getvalue()  # not a terminal: plain timestamped lines


def test_ninja_steps_and_the_tail_kept_for_errors():
    stream = io.StringIO()
    build = sink(stream)
    build.write(NINJA + b"error: something broke")
    build.close(ok=False)
    assert "12/300 steps" in stream.getvalue() and "failed after" in stream.getvalue()
    assert build.tail().splitlines()[-1] == "error: something broke"


def test_quiet_between_updates_when_not_a_terminal():
    stream = io.StringIO()
    build = progress.CommandProgress("head: build", stream)  # default: at most one line per 30 s
    build.write(MAKE)
    build.close(ok=True)
    assert len(stream.getvalue().splitlines()) == 2  # started, done


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_line_rewritten():
    stream = Terminal()
    build = progress.CommandProgress("head: build", stream)
    build.write(MAKE)
    build.close(ok=True)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.count("\r\033[K") >= 4 and "100%" in text


def test_a_large_transfer_shows_megabytes_sent_and_the_end():
    stream = io.StringIO()
    with progress.Sending("head: model.gguf", 100_000_000, stream) as meter:
        meter.progress.every = 0
        for _ in range(4):
            meter.looked = 0.0  # as if a quarter second passed between chunks
            meter.sent(25_000_000)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("head: model.gguf: started")
    assert any("head: model.gguf: 50/100 MB, " in line and " MB/s, " in line for line in lines), lines
    assert lines[-1].split(" ", 1)[1].startswith("head: model.gguf: 100 MB sent after ")


def test_a_small_transfer_prints_nothing_and_a_failure_says_so():
    quiet = io.StringIO()
    with progress.Sending("head: tiny.gguf", 1_000_000, quiet) as meter:
        meter.sent(1_000_000)
    assert quiet.getvalue() == ""
    stream = io.StringIO()
    try:
        with progress.Sending("w1: cache entries from m.gguf", 64 << 20, stream) as meter:
            meter.sent(1 << 20)
            raise OSError("link down")
    except OSError:
        pass
    assert stream.getvalue().splitlines()[-1].split(" ", 1)[1].startswith("w1: cache entries from m.gguf: failed")
