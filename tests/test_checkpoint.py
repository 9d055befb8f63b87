"""Checkpoint files: bit-exact round trip, and a clear error for every kind of bad file."""
import pytest
import torch

import hear_codec
from hear_codec.checkpoint import CheckpointError, FORMAT_VERSION, load_checkpoint, save_checkpoint


def test_round_trip_is_bit_exact(tiny_checkpoints):
    for front_end, path in tiny_checkpoints.items():
        model = load_checkpoint(path)
        again = load_checkpoint(save_checkpoint(path.with_name(f"again-{front_end}.pt"), model))
        a, b = model.state_dict(), again.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert model.config == again.config and again.metadata == {"note": "random weights"}


def test_loads_without_running_pickled_code(tiny_checkpoints, tmp_path):
    payload = torch.load(tiny_checkpoints["mel256"], weights_only=True)  # plain data only
    assert payload["format"] == "hear_codec" and payload["format_version"] == FORMAT_VERSION

    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "hear_codec", "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(evil)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        hear_codec.load_model("/nonexistent/model.pt")


def test_truncated_file(tiny_checkpoints, tmp_path):
    data = tiny_checkpoints["mel256"].read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, damaged"):
        hear_codec.load_model(bad)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n"])
def test_not_a_torch_file(tmp_path, content):
    bad = tmp_path / "notes.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="could not be read"):
        hear_codec.load_model(bad)


def test_foreign_torch_file(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a hear_codec checkpoint"):
        hear_codec.load_model(foreign)


def test_other_format_version_and_family(tiny_checkpoints, tmp_path):
    payload = torch.load(tiny_checkpoints["mel256"], weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(CheckpointError, match=f"version {FORMAT_VERSION + 1}"):
        hear_codec.load_model(newer)
    alien = tmp_path / "alien.pt"
    torch.save({**payload, "family": "wav2vec"}, alien)
    with pytest.raises(CheckpointError, match="unknown model family 'wav2vec'"):
        hear_codec.load_model(alien)


def test_weights_that_do_not_fit_the_config(tiny_checkpoints, tmp_path):
    payload = torch.load(tiny_checkpoints["mel256"], weights_only=True)
    payload["config"]["dim"] = 32
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="do not match the stored config"):
        hear_codec.load_model(bad)


def test_save_is_atomic(tiny_checkpoints, tmp_path, monkeypatch):
    model = load_checkpoint(tiny_checkpoints["mel256"])
    target = tmp_path / "model.pt"
    save_checkpoint(target, model)
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, model)
    assert target.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left behind
