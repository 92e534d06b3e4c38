"""`invoke render`: the service roles' files for every host, written to a folder with no connection."""

from __future__ import annotations

import pytest
from inventory_tree import WITH_W2_VAR, write_tree

from llamafleet import inventory, paths, render
from llamafleet.errors import UsageError


@pytest.fixture
def inv(tmp_path):
    return inventory.load(write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % "rpc_port: 50099"}))


def test_the_head_unit_loads_the_model_deploy_would_install():
    assert render.model_on_head("/srv/models/tiny.gguf") == f"{paths.MODELS_DIR}/tiny.gguf"
    assert render.model_on_head("hf://owner/repo/tiny.gguf") == f"{paths.MODELS_DIR}/tiny.gguf"
    assert render.model_on_head(None).startswith(f"{paths.MODELS_DIR}/")  # a placeholder until deploy names one
    for bad in ("..", "/", "bad\nname.gguf"):
        with pytest.raises(UsageError, match="--model: .* does not name a file"):
            render.model_on_head(bad)


def test_every_host_gets_its_unit_under_its_own_folder(tmp_path, inv):
    written = render.write(inv, tmp_path / "out", f"{paths.MODELS_DIR}/tiny.gguf")
    relative = sorted(str(path.relative_to(tmp_path / "out")) for path in written)
    assert relative == [
        f"h1/etc/systemd/system/{paths.SERVER_UNIT}",
        f"w1/etc/systemd/system/{paths.RPC_UNIT}",
        f"w2/etc/systemd/system/{paths.RPC_UNIT}",
    ]
    head_unit = (tmp_path / "out" / "h1/etc/systemd/system" / paths.SERVER_UNIT).read_text()
    assert f"{paths.MODELS_DIR}/tiny.gguf" in head_unit and "10.0.0.2:50052,10.0.0.3:50099" in head_unit
    assert "10.0.0.3" in (tmp_path / "out" / "w2/etc/systemd/system" / paths.RPC_UNIT).read_text()


def test_a_folder_that_cannot_be_written_is_named(tmp_path, inv):
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(UsageError, match=f"--out: cannot write {tmp_path / 'out'}/"):
        render.write(inv, tmp_path / "out", f"{paths.MODELS_DIR}/tiny.gguf")
