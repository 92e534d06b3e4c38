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
