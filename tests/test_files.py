"""hear_codec.files: a writer killed mid-write leaves the old file (or none) and no temporary."""
import errno
import json
import os
import re
import stat
import subprocess

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


def test_a_torch_checkpoint_that_fills_the_disk_is_one_line_naming_the_file(tmp_path, filling_disk):
    """torch's own error on a full disk is a C++ message that names neither the file nor the cause."""
    import torch

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"step 10")
    with pytest.raises(files.DiskFullError) as info:
        files.atomic_torch_save({"w": torch.zeros(100_000)}, target)
    message = str(info.value)
    assert re.fullmatch(rf"could not write {re.escape(str(target))}: no space left on device \(\d+ bytes into the file; "
                        rf"free some space or raise the quota\); {re.escape(str(target))} still holds its previous "
                        rf"version", message), message
    assert "\n" not in message and info.value.errno == errno.ENOSPC
    assert isinstance(info.value.__cause__, (RuntimeError, OSError))  # torch's error, kept for a debugger
    assert target.read_bytes() == b"step 10" and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_quota_is_a_full_disk_too_and_a_first_write_says_nothing_was_written(tmp_path, filling_disk):
    filling_disk.error = errno.EDQUOT
    with pytest.raises(files.DiskFullError, match=r"could not write .*results.md: disk quota exceeded .*; no "
                                                  r"results.md was written$"):
        files.write_text(tmp_path / "results.md", "x" * 100_000)
    assert list(tmp_path.iterdir()) == []
    filling_disk.error = errno.EIO  # any other failure keeps its own error
    with pytest.raises(OSError) as info:
        files.write_text(tmp_path / "results.md", "x" * 100_000)
    assert type(info.value) is OSError and info.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB file system (tmpfs; mounting one needs root, else the test is skipped: the
    injected full disk above tests the same code everywhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_real_full_disk_gives_the_same_line_for_torch_and_safetensors(tiny_disk):
    import safetensors.torch
    import torch

    (tiny_disk / "last.ckpt").write_bytes(b"old")
    with pytest.raises(files.DiskFullError, match=r"^could not write .*last.ckpt: no space left on device .*still "
                                                  r"holds its previous version$"):
        files.atomic_torch_save({"w": torch.zeros(1_000_000)}, tiny_disk / "last.ckpt")
    with pytest.raises(files.DiskFullError, match=r"^could not write .*w.safetensors: no space left on device"):
        with files.atomic_path(tiny_disk / "w.safetensors") as tmp:
            safetensors.torch.save_file({"w": torch.zeros(1_000_000)}, tmp)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["last.ckpt"]  # no temporary file left
    assert (tiny_disk / "last.ckpt").read_bytes() == b"old"
