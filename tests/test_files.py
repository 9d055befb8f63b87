"""hear_codec.files: a writer killed mid-write leaves the old file (or none) and no temporary."""
import json
import os
import stat

import pytest

from hear_codec import files


def test_atomic_path_replaces_the_file_only_when_the_body_finishes(tmp_path):
    target = tmp_path / "sub" / "results.json"  # the folder is created
    with files.atomic_path(target) as tmp:
        assert not target.exists()  # nothing is visible until the body is done
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_a_write_killed_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.md"
    target.write_text("old")

    def killed(f):
        f.write(b"half a fi")
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        files.write_bytes(target, killed)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_write_json_refuses_data_that_is_not_json_before_touching_the_file(tmp_path):
    target = tmp_path / "results.json"
    files.write_json(target, {"accuracy": [0.5, 0.75]})
    assert json.loads(target.read_text()) == {"accuracy": [0.5, 0.75]}
    with pytest.raises(TypeError):
        files.write_json(target, {"accuracy": object()})
    assert json.loads(target.read_text()) == {"accuracy": [0.5, 0.75]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_write_text_is_utf8(tmp_path):
    target = tmp_path / "table.md"
    files.write_text(target, "trained − init ± std\n")
    assert target.read_bytes().decode("utf-8") == "trained − init ± std\n"


def test_the_file_gets_the_mode_a_plain_write_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "results.md", "x")
        plain = tmp_path / "plain.md"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.md").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_a_writer_that_recreates_the_file_privately_still_gives_the_plain_mode(tmp_path):
    """safetensors' save_file writes its file 0600; the result must still be readable as before."""
    import safetensors.torch
    import torch

    old = os.umask(0o022)
    try:
        with files.atomic_path(tmp_path / "w.safetensors") as tmp:
            safetensors.torch.save_file({"a": torch.zeros(2)}, tmp)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644
