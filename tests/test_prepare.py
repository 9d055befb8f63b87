"""python -m training.prepare: one corpus (MP3, FLAC, OGG, WAV at 8-48 kHz, mono and stereo, a
corrupt and an empty file, a 2-hour recording) prepared once straight and once killed and resumed;
the module-scoped fixtures share those runs between the tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hear_codec.audio import read_audio
from hear_codec.errors import UserError
from hear_codec.files import _host
from conftest import REPO, assert_user_error, run_module
from training import prepare
from training.data.manifest import list_sources

SEGMENT_SECONDS = 60.0  # the default; the 2-hour file makes 120 segments of it
LONG_SECONDS = 2 * 3600


def _tone(freq: float, seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """[frames] or [frames, channels] float32: a tone at 0.5, each channel at another phase."""
    t = np.arange(int(seconds * sr)) / sr
    x = np.stack([0.5 * np.sin(2 * np.pi * freq * t + c) for c in range(channels)], axis=1).astype(np.float32)
    return x if channels > 1 else x[:, 0]


def _write_long(path: Path, seconds: int, sr: int = 8000) -> None:
    """A cheap long recording, 8 kHz mono 16-bit: a 1 s chirp-like block repeated, written block
    by block (2 hours never sit in memory)."""
    block = np.clip(np.rint(_tone(200, 1.0, sr) * (1 + 0.5 * _tone(3, 1.0, sr)) * 32768), -32768, 32767)
    block = block.astype(np.int16)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as f:
        for i in range(seconds):
            f.write(np.roll(block, 37 * i))  # rolled, so that segments differ


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """The input folder: lengths are whole numbers of 24 kHz samples at every rate (so that a raw
    run's header lengths and the prepared lengths agree to the sample)."""
    folder = tmp_path_factory.mktemp("raw")
    (folder / "sub").mkdir()
    (folder / "other").mkdir()
    sf.write(folder / "a48k_stereo.wav", _tone(440, 3.0, 48000, 2), 48000)
    sf.write(folder / "b16k.flac", _tone(1000, 5.0, 16000), 16000)
    sf.write(folder / "c22k_stereo.ogg", _tone(330, 4.0, 22050, 2), 22050)
    sf.write(folder / "d44k_stereo.mp3", _tone(550, 3.0, 44100, 2), 44100)
    sf.write(folder / "e8k.wav", _tone(300, 130.0, 8000), 8000)  # longer than a segment: 3 of 43.3 s
    sf.write(folder / "sub" / "same.wav", _tone(700, 2.0, 24000), 24000)  # two sources, one basename
    sf.write(folder / "other" / "same.wav", _tone(900, 2.0, 32000), 32000)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage that is not audio" * 10)
    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 24000)
    (folder / "long").mkdir()
    _write_long(folder / "long" / "two_hours.wav", LONG_SECONDS)
    return folder


@pytest.fixture(scope="module")
def straight(raw, tmp_path_factory) -> tuple:
    """A straight run, in processes: (DIR, summary)."""
    out = tmp_path_factory.mktemp("straight") / "prepared"
    summary = prepare.main([str(raw), "--out", str(out), "--workers", "2", "--no-progress-bar"])
    return out, summary


def _rows(out: Path) -> list:
    lines = (out / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[2:]]


def _files(out: Path) -> dict:
    """Every file below DIR/audio, relative path -> bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "audio").rglob("*")) if p.is_file()}


def test_the_manifest_lists_every_readable_source_in_order_with_exact_frames(raw, straight):
    """The contract's manifest: its two header lines; a row per segment whose frames are the
    file's own (24 kHz mono 16-bit, at most --segment-seconds); sources absolute, in list_sources
    order, each one's rows contiguous and tiling [0, length) from offset 0."""
    out, summary = straight
    lines = (out / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# hear_codec prepared corpus\tsample_rate=24000"
    assert lines[1] == "# path\tframes\tsource\toffset"
    rows = _rows(out)
    order = []
    ends = {}
    for path, frames, source, offset in rows:
        info = sf.info(out / path)
        assert (info.frames, info.samplerate, info.channels, info.subtype) == (int(frames), 24000, 1, "PCM_16")
        assert int(frames) <= SEGMENT_SECONDS * 24000
        assert os.path.isabs(source)
        if not order or order[-1] != source:
            assert source not in order, f"{source}'s rows are not contiguous"
            order.append(source)
        assert int(offset) == ends.get(source, 0), f"{path} leaves a gap or an overlap"
        ends[source] = int(offset) + int(frames)
    readable = [p for p, _ in list_sources([raw]) if Path(p).name not in ("corrupt.wav", "empty.wav")]
    assert order == readable
    assert ends[str(raw / "long" / "two_hours.wav")] == LONG_SECONDS * 24000
    assert ends[str(raw / "e8k.wav")] == 130 * 24000
    assert [r[1] for r in rows if r[2] == str(raw / "e8k.wav")] == ["1040000"] * 3  # not 60 + 60 + 10 s
    assert len({r[0] for r in rows}) == len(rows)
    same = {r[2]: r[0] for r in rows if Path(r[2]).name == "same.wav"}
    assert len({Path(p).name for p in same.values()}) == 2  # one basename, two sources: two file names
    assert summary["files"] == len(readable) and summary["segments"] == len(rows)
    assert summary["frames"] == sum(ends.values()) and summary["skipped"] == 2
    assert summary["bytes"] == sum(os.path.getsize(out / r[0]) for r in rows)
    assert json.loads((out / "summary.json").read_text()) == summary


def test_the_segments_joined_are_the_decoded_source(raw, straight):
    """Each source's segments, joined, equal read_audio(source, 24000) within the int16 step
    (half a step of rounding, and the float arithmetic of the resampler)."""
    out, _ = straight
    by_source = {}
    for path, _, source, _ in _rows(out):
        by_source.setdefault(source, []).append(sf.read(out / path, dtype="float32")[0])
    for source, parts in by_source.items():
        ours = np.concatenate(parts)
        wav, sr = read_audio(source, 24000)
        assert sr == 24000 and len(ours) == len(wav), source
        assert np.abs(ours - wav.numpy()).max() <= 0.5 / 32768 + 1e-6, source


def test_unreadable_files_are_listed_in_skipped_tsv(raw, straight):
    out, _ = straight
    lines = (out / "skipped.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "source\treason"
    reasons = dict(line.split("\t") for line in lines[1:])
    assert set(reasons) == {str(raw / "corrupt.wav"), str(raw / "empty.wav")}
    assert "Format not recognised" in reasons[str(raw / "corrupt.wav")]
    assert reasons[str(raw / "empty.wav")] == "no samples"


def test_a_killed_run_resumes_to_the_straight_runs_outputs(raw, straight, tmp_path):
    """SIGKILL a one-process run once segments of the 2-hour file exist (it is decoded first:
    longest first); a second run into that DIR meanwhile is refused; the next run removes the
    temporary file a killed writer left and ends with the straight run's manifest and segment
    bytes."""
    out = tmp_path / "prepared"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "training.prepare", str(raw), "--out", str(out), "--workers", "1",
                             "--no-progress-bar"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while len(list(out.glob("audio/*/two_hours.*.wav"))) < 3:
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-3000:]
            time.sleep(0.2)
        with pytest.raises(UserError, match="is in use by another run"):
            prepare.main([str(raw), "--out", str(out), "--no-progress-bar"])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "manifest.tsv").exists()
    written = len(list(out.glob("audio/*/*.wav")))
    assert 3 <= written < 120
    stale = next(out.glob("audio/*")) / f".x.0001.wav.{_host()}.{proc.pid}.0123456789ab.tmp"  # as if killed mid-write
    stale.write_bytes(b"half a segment")
    summary = prepare.main([str(raw), "--out", str(out), "--workers", "1", "--no-progress-bar"])
    assert not stale.exists()
    assert summary["decoded_this_run"] == 10  # the 2-hour file was not done: nothing to reuse
    assert (out / "manifest.tsv").read_bytes() == (straight[0] / "manifest.tsv").read_bytes()
    assert _files(out) == _files(straight[0])


def test_a_finished_source_is_not_decoded_again(raw, straight, tmp_path):
    """A rerun reuses every done record (the segment files are not even rewritten); a source
    changed since is decoded again; a source removed from the input loses its segments."""
    import shutil

    out = tmp_path / "prepared"
    shutil.copytree(straight[0], out)
    times = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.wav")}
    summary = prepare.main([str(raw), "--out", str(out), "--no-progress-bar"])
    assert summary["decoded_this_run"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.wav")} == times
    assert (out / "manifest.tsv").read_bytes() == (straight[0] / "manifest.tsv").read_bytes()
    source = raw / "b16k.flac"
    os.utime(source, ns=(time.time_ns(), time.time_ns()))  # "changed": another modification time
    # a manifest of all sources but one: the missing one's segments go
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p, _ in list_sources([raw]) if not p.endswith("a48k_stereo.wav")))
    summary = prepare.main([str(listing), "--out", str(out), "--no-progress-bar"])
    assert summary["decoded_this_run"] == 1 and summary["removed_stale_files"] == 2  # its segment and done record
    assert not list(out.glob("audio/*/a48k_stereo.*"))
    assert "a48k_stereo" not in (out / "manifest.tsv").read_text()


def test_flac_and_other_segment_lengths(raw, tmp_path):
    """--format flac --segment-seconds 10: FLAC segments of at most 10 s that hold the same
    samples as the WAV ones would (both are 16-bit)."""
    out = tmp_path / "prepared"
    source = raw / "e8k.wav"
    prepare.main([str(source), "--out", str(out), "--format", "flac", "--segment-seconds", "10", "--no-progress-bar"])
    rows = _rows(out)
    assert [int(r[1]) for r in rows] == [int(130 * 24000 / 13)] * 13  # 130 s in 13 equal segments
    assert all(r[0].endswith(".flac") and sf.info(out / r[0]).format == "FLAC" for r in rows)
    joined = np.concatenate([sf.read(out / r[0], dtype="float32")[0] for r in rows])
    assert np.abs(joined - read_audio(source, 24000)[0].numpy()).max() <= 0.5 / 32768 + 1e-6


def test_bad_input_is_a_one_line_message(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("not audio")
    assert_user_error(run_module("training.prepare", tmp_path / "missing", "--out", tmp_path / "o"),
                      r"error: SOURCE .*missing is neither a folder, an audio file nor a manifest")
    assert_user_error(run_module("training.prepare", tmp_path / "nothing", "--out", tmp_path / "o"),
                      r"error: no audio files in .*nothing")
    assert_user_error(run_module("training.prepare", tmp_path / "nothing", "--out", tmp_path / "file"),
                      r"error: --out .*file is a file, not a folder")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def trained(raw, straight, tmp_path_factory) -> dict:
    """Two tiny pretraining runs (the options of tests/test_pretrain.py's data run), one on the raw
    folder and one on the prepared DIR: {"raw": OUT, "prepared": OUT}."""
    from training import pretrain

    runs = {}
    for name, data in (("raw", raw), ("prepared", straight[0])):
        out = tmp_path_factory.mktemp(f"run_{name}") / "run"
        pretrain.main(["--data", str(data), "--out", str(out), "--codec", "offline", "--max-steps", "2",
                       "--batch-size", "2", "--crop-seconds", "1.0", "--num-workers", "0", "--no-progress-bar",
                       "--val-every", "0"])
        runs[name] = out
    return runs


def _index(out: Path) -> list:
    return [line.split("\t") for line in (out / "data_index.tsv").read_text(encoding="utf-8").splitlines()[1:]]


def test_pretraining_trains_on_the_prepared_corpus(raw, trained):
    """``training.pretrain --data DIR``: the items are the original sources (the loader joins their
    segments), and the run writes its model."""
    out = trained["prepared"]
    assert (out / "last.ckpt.hearcodec").is_file()
    listed = {row[0] for row in _index(out)}
    assert str(raw / "long" / "two_hours.wav") in listed and not any("/audio/" in p for p in listed)


def test_each_file_is_drawn_as_often_before_and_after_preparation(trained):
    """OUT/data_index.tsv of a run on the raw folder and of a run on its prepared DIR: the same
    files, seconds and draws per epoch (and so the same validation split)."""
    assert _index(trained["prepared"]) == _index(trained["raw"])


def test_a_dir_inside_a_source_folder_is_not_read_as_a_source(raw, tmp_path):
    """prepare FOLDER --out FOLDER/prepared, twice: the segments in DIR are never sources."""
    import shutil

    folder = tmp_path / "audio"
    folder.mkdir()
    for name in ("b16k.flac", "d44k_stereo.mp3"):
        shutil.copy(raw / name, folder / name)
    out = folder / "prepared"
    first = prepare.main([str(folder), "--out", str(out), "--no-progress-bar"])
    second = prepare.main([str(folder), "--out", str(out), "--no-progress-bar"])
    assert first["files"] == second["files"] == 2 and second["decoded_this_run"] == 0
    assert {row[2] for row in _rows(out)} == {str(folder / "b16k.flac"), str(folder / "d44k_stereo.mp3")}
