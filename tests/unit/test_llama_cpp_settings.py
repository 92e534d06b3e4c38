"""Role llama_cpp's knobs: documented once in its defaults.yml, read for each host, refused naming host and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from inventory_tree import GOOD, write_tree
from llama_cpp_samples import SOURCE_SHA, settings

from llamafleet import inventory, variables, yamlfile
from llamafleet.errors import InventoryError
from llamafleet.roles.llama_cpp import settings as llama_cpp_settings

ROLE_DIR = Path(llama_cpp_settings.__file__).resolve().parent


def test_defaults_document_every_variable_in_the_required_shape():
    defaults = yamlfile.load_own(ROLE_DIR / "defaults.yml")
    expected = {
        "llama_cpp_version", "llama_cpp_install", "llama_cpp_backend", "llama_cpp_source_url",
        "llama_cpp_source_archive", "llama_cpp_source_sha256", "llama_cpp_cpu_variants",
        "llama_cpp_cmake_args", "llama_cpp_keep_releases", "llama_cpp_release_url", "llama_cpp_release_sha256",
    }  # fmt: skip
    assert expected <= set(defaults)
    allowed_types = {"str", "int", "bool", "list", "dict", "path", "cidr_list", "enum", "url_template"}
    for name, spec in defaults.items():
        assert set(spec) == {"default", "type", "choices", "required", "doc"}, name
        assert spec["type"] in allowed_types, name
        assert spec["doc"].strip(), name
        if spec["type"] == "enum":
            assert spec["default"] in spec["choices"], name


def test_defaults_are_the_documented_values():
    catalogue = variables.catalogue()
    defaults = {name: var.default for name, var in catalogue.items() if var.role == "llama_cpp"}
    assert defaults["llama_cpp_install"] == "build"
    assert defaults["llama_cpp_backend"] == "cpu"
    assert defaults["llama_cpp_cpu_variants"] == "all"
    assert defaults["llama_cpp_keep_releases"] == 3
    assert defaults["llama_cpp_cmake_args"] == []
    assert catalogue["llama_cpp_version"].required is True


def test_readme_lists_every_variable():
    readme = (ROLE_DIR / "README.md").read_text()
    names = [name for name, var in variables.catalogue().items() if var.role == "llama_cpp"]
    assert [name for name in names if f"`{name}`" not in readme] == []


def test_settings_take_the_defaults_and_fill_in_the_urls():
    host = settings()
    assert (host.install, host.backend, host.cpu_variants, host.keep_releases) == ("build", "cpu", "all", 3)
    assert host.source_url == "https://github.com/ggml-org/llama.cpp/archive/refs/tags/b11434.tar.gz"
    assert host.release_url == "https://github.com/ggml-org/llama.cpp/releases/download/b11434/"
    assert host.build_number == 11434


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"llama_cpp_version": None}, "is required (a build tag like b11434)"),
        ({"llama_cpp_version": ""}, "is required (a build tag like b11434)"),
        ({"llama_cpp_version": "11434"}, "'11434' is not a llama.cpp build tag like b11434"),
        ({"llama_cpp_version": "b11434x"}, "'b11434x' is not a llama.cpp build tag like b11434"),
        ({"llama_cpp_backend": None}, "None is not one of cpu, cuda, vulkan, rocm"),
        ({"llama_cpp_source_sha256": "abc"}, "'abc' is not a sha256 (64 hex digits)"),
        ({"llama_cpp_release_sha256": "z" * 64}, f"'{'z' * 64}' is not a sha256 (64 hex digits)"),
        ({"llama_cpp_cmake_args": ["-DGGML_CUDA=ON", 1]}, "must be a list of strings"),
        ({"llama_cpp_keep_releases": 0}, "0 is not a whole number >= 1"),
        ({"llama_cpp_source_url": None}, "must not be null (leave it out for the default, "),
    ],
)
def test_values_their_type_allows_but_the_role_cannot_use_are_refused_naming_host_and_key(overrides, message):
    with pytest.raises(InventoryError) as caught:
        settings("w7", **overrides)
    (key,) = overrides
    assert (caught.value.where, caught.value.key) == ("w7", key)
    assert str(caught.value).startswith(f"w7: {key}: {message}")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("llama_cpp_backend: metal", "must be one of cpu, cuda, vulkan, rocm, not 'metal'"),
        ("llama_cpp_install: pip", "must be one of build, release, not 'pip'"),
        ("llama_cpp_cpu_variants: avx2", "must be one of all, native, not 'avx2'"),
        ("llama_cpp_cmake_args: -DGGML_CUDA=ON", "must be a list, not a string"),
        ("llama_cpp_keep_releases: three", "must be an integer, not a string"),
    ],
)
def test_values_of_another_type_are_refused_when_the_inventory_loads(tmp_path, line, message):
    path = write_tree(tmp_path, {"hosts.yml": GOOD, "host_vars/w1.yml": line + "\n"})
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    assert (caught.value.where, caught.value.key) == ("host w1", line.split(":")[0])
    assert str(caught.value).endswith(message)


def test_a_sha256_in_upper_case_is_taken_in_lower_case():
    assert settings(llama_cpp_source_sha256=SOURCE_SHA.upper()).source_sha256 == SOURCE_SHA


def test_empty_optional_values_are_unset():
    host = settings(llama_cpp_source_archive="", llama_cpp_source_sha256="", llama_cpp_release_toolkit="")
    assert (host.source_archive, host.source_sha256, host.release_toolkit) == (None, None, None)
