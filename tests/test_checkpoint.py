"""Checkpoint files: bit-exact round trip, one read per load, damage detected, format 1 still read,
and a clear error for every kind of bad file."""
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

import hear_codec
from hear_codec.checkpoint import (FORMAT_VERSION, CheckpointError, DamagedCheckpointError, UnknownFormatError,
                                   load_checkpoint, read_checkpoint, save_checkpoint)
from hear_codec.codec import build_encoder
from official_encodecmae_helpers import REPO, official_state, v1_gin, v2_gin

# Written by save_checkpoint at commit dfec59c (format 1, before weight hashes): a micro mel256
# EnCodecMAE (dim 16, 1 + 1 layers, vocab 16, torch.manual_seed(0)); it must load as it did then.
FORMAT_1_FILE = Path(__file__).parent / "data" / "encodecmae-micro-format1.ckpt.hearcodec"
# sha256 over (name, bytes) of its state_dict in sorted key order, computed at dfec59c right after writing it.
FORMAT_1_WEIGHTS_SHA256 = "70c2792ddbe4629560962248b1ccf9aeed8af4e1d3808f5ffdad18fac8c3cb1f"


def header_of(path) -> dict:
    with safetensors.safe_open(path, framework="pt") as f:
        return f.metadata()


def rewrite_header(src, dst, **changes):
    """Copy our checkpoint ``src`` to ``dst`` with header fields changed (dicts are JSON-encoded)."""
    with safetensors.safe_open(src, framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in changes.items()})
    safetensors.torch.save_file(tensors, dst, metadata=header)
    return dst


def tensor_spans(path) -> dict:
    """{tensor name: (first byte, end byte)} in the file, from the safetensors header."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    table = json.loads(raw[8:8 + n])
    return {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1]) for k, v in table.items()
            if k != "__metadata__"}


def flip_bytes(src, dst, start: int, count: int = 64):
    data = bytearray(Path(src).read_bytes())
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    Path(dst).write_bytes(bytes(data))
    return dst


def test_round_trip_is_bit_exact(tiny_checkpoints):
    for front_end, path in tiny_checkpoints.items():
        model = load_checkpoint(path)
        again = load_checkpoint(save_checkpoint(path.with_name(f"again-{front_end}.pt"), model))
        a, b = model.state_dict(), again.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert model.config == again.config and again.metadata == {"note": "random weights"}


def test_loads_without_running_pickled_code(tiny_checkpoints, tmp_path):
    header = header_of(tiny_checkpoints["mel256"])  # a safetensors file: plain data, no pickle at all
    assert header["format"] == "hear_codec" and header["format_version"] == str(FORMAT_VERSION)

    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "hear_codec", "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(evil)


@pytest.mark.parametrize("kind", ["format 2", "format 1", "published v2", "published v1"])
def test_a_load_reads_the_file_once(kind, tiny_checkpoints, tmp_path, monkeypatch):
    if kind == "format 2":
        path = tiny_checkpoints["mel256"]
    elif kind == "format 1":
        path = FORMAT_1_FILE
    elif kind == "published v2":
        path = tmp_path / "published.pt"
        torch.save({"config": v2_gin("mel256", dim=32, heads=4, st=True),
                    "state_dict": official_state("v2", 32, 2, 1, 64, 256, streams=1)}, path)
    else:
        path = tmp_path / "encodecmae-base"
        path.mkdir()
        torch.save({"state_dict": official_state("v1", 32, 2, 1, 64, 128, streams=8,
                                                 codec_encoder_state=build_encoder().state_dict())}, path / "model.pt")
        (path / "config.gin").write_text(v1_gin(dim=32, heads=4))
    reads = []

    def counting(reader, name):
        def read(*args, **kwargs):
            reads.append(name)
            return reader(*args, **kwargs)
        return read

    monkeypatch.setattr(torch, "load", counting(torch.load, "torch.load"))
    monkeypatch.setattr(safetensors, "safe_open", counting(safetensors.safe_open, "safe_open"))
    hear_codec.load_model(path)
    assert reads == (["safe_open"] if kind == "format 2" else ["torch.load"])


def test_flipped_bytes_in_the_weights_are_a_clear_error(tiny_checkpoints, tmp_path):
    """The issue's case: 64 bytes flipped in the middle of the tensor data."""
    good = tiny_checkpoints["mel256"]
    spans = tensor_spans(good)
    data_start, data_end = min(s for s, _ in spans.values()), max(e for _, e in spans.values())
    middle = (data_start + data_end) // 2
    bad = flip_bytes(good, tmp_path / "flipped.ckpt.hearcodec", middle)
    hit = sorted(k for k, (s, e) in spans.items() if s < middle + 64 and e > middle)
    with pytest.raises(DamagedCheckpointError, match="damaged checkpoint") as err:
        hear_codec.load_model(bad)
    message = str(err.value)
    assert str(bad) in message and all(k in message for k in hit)
    assert f"{len(hit)} of {len(spans)} tensors differ" in message
    # one scalar is enough: a single flipped byte in the position scale is named alone
    start, _ = spans["position.scale"]
    with pytest.raises(DamagedCheckpointError, match=r"1 of \d+ tensors differ .*: position\.scale\."):
        load_checkpoint(flip_bytes(good, tmp_path / "scale.ckpt", start, count=1))


def test_header_damage_is_caught(tiny_checkpoints, tmp_path):
    good = tiny_checkpoints["mel256"]
    # same bytes read as another dtype (F32 -> I32 in the tensor table): the hash covers the dtype
    raw = good.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    table = raw[8:8 + n].decode()
    entry = table.index('"position.scale"')
    retyped = table[:entry] + table[entry:].replace('"F32"', '"I32"', 1)
    bad = tmp_path / "retyped.ckpt"
    bad.write_bytes(raw[:8] + retyped.encode() + raw[8 + n:])
    with pytest.raises(DamagedCheckpointError, match="position.scale"):
        load_checkpoint(bad)
    hashes = json.loads(header_of(good)["weights_sha256"])
    hashes.pop("head.bias")
    with pytest.raises(DamagedCheckpointError, match="have no stored sha256: head.bias"):
        load_checkpoint(rewrite_header(good, tmp_path / "unhashed.ckpt", weights_sha256=hashes))
    with pytest.raises(DamagedCheckpointError, match="not JSON"):
        load_checkpoint(rewrite_header(good, tmp_path / "garbled.ckpt", config='{"dim": 6'))


def test_format_1_file_still_loads_with_a_one_line_notice(caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="hear_codec.checkpoint"):
        model = load_checkpoint(FORMAT_1_FILE)
    (notice,) = caplog.records
    text = notice.getMessage()
    assert "\n" not in text and str(FORMAT_1_FILE) in text and "no weight hashes" in text
    state = model.state_dict()
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(k.encode())
        digest.update(state[k].contiguous().reshape(-1).view(torch.uint8).numpy())
    assert digest.hexdigest() == FORMAT_1_WEIGHTS_SHA256
    assert model.metadata["note"].startswith("format 1, written by")
    assert read_checkpoint(FORMAT_1_FILE)["format_version"] == 1
    emb = hear_codec.get_scene_embeddings(torch.rand(2, 48000) - 0.5, hear_codec.load_model(FORMAT_1_FILE))
    assert emb.shape == (2, 16) and torch.isfinite(emb).all()
    # the notice's command rewrites it in the current format, weights unchanged
    new = tmp_path / "format2.ckpt.hearcodec"
    out = subprocess.run([sys.executable, "-m", "hear_codec.convert", str(FORMAT_1_FILE), str(new)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert header_of(new)["format_version"] == str(FORMAT_VERSION)
    caplog.clear()
    again = load_checkpoint(new)
    assert not caplog.records
    assert all(torch.equal(v, state[k]) for k, v in again.state_dict().items())
    assert again.metadata == model.metadata


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
    other = tmp_path / "model.safetensors"  # e.g. a Hugging Face model's weights
    safetensors.torch.save_file({"w": torch.zeros(2)}, other, metadata={"format": "pt"})
    with pytest.raises(UnknownFormatError, match="safetensors file but not a hear_codec checkpoint"):
        hear_codec.load_model(other)


def test_other_format_version_and_family(tiny_checkpoints, tmp_path):
    good = tiny_checkpoints["mel256"]
    newer = rewrite_header(good, tmp_path / "newer.pt", format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=f"version {FORMAT_VERSION + 1}"):
        hear_codec.load_model(newer)
    alien = rewrite_header(good, tmp_path / "alien.pt", family="wav2vec")
    with pytest.raises(CheckpointError, match="unknown model family 'wav2vec'"):
        hear_codec.load_model(alien)
    payload = torch.load(FORMAT_1_FILE, weights_only=True)  # a torch-format file claiming a later version
    torch.save({**payload, "format_version": 7}, tmp_path / "torch-newer.pt")
    with pytest.raises(CheckpointError, match="version 7"):
        hear_codec.load_model(tmp_path / "torch-newer.pt")


def test_weights_that_do_not_fit_the_config(tiny_checkpoints, tmp_path):
    config = json.loads(header_of(tiny_checkpoints["mel256"])["config"])
    bad = rewrite_header(tiny_checkpoints["mel256"], tmp_path / "mismatch.pt", config={**config, "dim": 32})
    with pytest.raises(CheckpointError, match="do not match the stored config"):
        hear_codec.load_model(bad)


def test_metadata_must_be_json_data(tiny_checkpoints, tmp_path):
    model = load_checkpoint(tiny_checkpoints["mel256"])
    with pytest.raises(ValueError, match="metadata must be JSON data"):
        save_checkpoint(tmp_path / "m.pt", model, {"when": object()})


def test_save_is_atomic(tiny_checkpoints, tmp_path, monkeypatch):
    model = load_checkpoint(tiny_checkpoints["mel256"])
    target = tmp_path / "model.pt"
    save_checkpoint(target, model)
    before = target.read_bytes()

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, model)
    assert target.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left behind


# ---- bad input found by a probe: each refused with a one-line message naming the file ----

def test_a_config_that_claims_huge_sizes_is_refused_before_anything_is_allocated(tiny_checkpoints, tmp_path):
    """A 2^20-token vocabulary claimed in the header of a small file: the shapes are compared with the
    file's tensors before the model is built, so the refusal costs no memory (the model it describes
    would take 2 GB)."""
    config = json.loads(header_of(tiny_checkpoints["mel256"])["config"])
    huge = rewrite_header(tiny_checkpoints["mel256"], tmp_path / "huge.ckpt", config={**config, "vocab_size": 2 ** 20})
    # VmHWM, this process's own peak: ru_maxrss would carry over the forking test process's (man getrusage)
    script = ("import sys, hear_codec\n"
              "try:\n    hear_codec.load_model(sys.argv[1])\n"
              "except hear_codec.checkpoint.CheckpointError as e:\n    print('REFUSED', e)\n"
              "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
              "print('PEAK_MB', int(hwm.split()[1]) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", script, str(huge)], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"REFUSED {huge}: weights do not match the stored config" in out.stdout, out.stdout
    assert "head.weight" in out.stdout and str(8 * 2 ** 20) in out.stdout  # the tensor and the shape it was told
    peak_mb = float(out.stdout.split("PEAK_MB")[1])
    assert peak_mb < 1000, f"{peak_mb:.0f} MB to refuse a {huge.stat().st_size} byte file"


def test_a_config_that_is_not_an_object_is_a_clear_error(tiny_checkpoints, tmp_path):
    listed = rewrite_header(tiny_checkpoints["mel256"], tmp_path / "list.ckpt", config=[1, 2, 3])
    with pytest.raises(DamagedCheckpointError, match=f"{listed}: .*config is a JSON list"):
        hear_codec.load_model(listed)


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "model.ckpt"
    os.mkfifo(fifo)
    script = "import sys, hear_codec\nhear_codec.load_model(sys.argv[1])\n"
    try:  # opening a FIFO for reading waits for a writer: a hang is the failure
        out = subprocess.run([sys.executable, "-c", script, str(fifo)], capture_output=True, text=True, cwd=REPO,
                             timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_model({fifo}) hung on a FIFO")
    assert f"CheckpointError: {fifo} is not a regular file" in out.stderr, out.stderr[-3000:]


def test_an_empty_path_is_named_as_such():
    with pytest.raises(CheckpointError, match=r"checkpoint path is empty \(''\)"):
        hear_codec.load_model("")


def test_an_io_error_names_the_file():
    """/proc/self/mem is a regular file whose first bytes give EIO (unmapped address 0): a real
    I/O error from the kernel, as a failing disk gives."""
    with pytest.raises(CheckpointError, match=r"/proc/self/mem: cannot read the file \(Input/output error\)"):
        hear_codec.load_model("/proc/self/mem")
