"""training/data/prepared.py and its use by the loader: a prepared corpus trains on its source
files (the same paths, draws and split as the raw folder), crops span segments, the WAV reader
equals soundfile bit for bit, malformed manifests are named by line, pipes are never opened, and
the draws are arrays (the arrays themselves: tests/test_data_index.py)."""
import dataclasses
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from training.data import crops as D
from training.data import manifest as M
from training.data import prepared as P

SR = 24000
HEADER = "# hear_codec prepared corpus\tsample_rate=24000\n# path\tframes\tsource\toffset\n"


def write_prepared(out, sources: dict, segment_frames: int, fmt: str = "wav", skipped=()) -> list:
    """A prepared corpus in ``out`` as the contract (docs/experiments/prepare-format.md) lays it
    out: ``sources`` {source path: [frames] int16 at 24 kHz} cut into segments of at most
    ``segment_frames`` samples, 16-bit WAV or FLAC, and a manifest of one row per segment.
    Returns the rows [(relative path, frames, source, offset)]."""
    rows = []
    for k, (source, samples) in enumerate(sources.items()):
        for s, offset in enumerate(range(0, len(samples), segment_frames)):
            chunk = samples[offset:offset + segment_frames]
            rel = f"audio/{k % 7:02x}/{os.path.basename(source)}.{s:03d}.{fmt}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(out / rel, chunk, SR, subtype="PCM_16", format=fmt.upper())
            rows.append((rel, len(chunk), source, offset))
    with open(out / "manifest.tsv", "w", encoding="utf-8") as f:
        f.write(HEADER + "".join(f"{r}\t{n}\t{s}\t{o}\n" for r, n, s, o in rows))
    if skipped:
        (out / "skipped.tsv").write_text("source\treason\n" + "".join(f"{s}\t{r}\n" for s, r in skipped))
    return rows


def raw_and_prepared(tmp_path, seconds=(2.5, 10.0, 41.3, 7.99, 3.0), segment_seconds=3.0, fmt="wav"):
    """24 kHz 16-bit files in tmp_path/raw and their prepared corpus in tmp_path/prepared."""
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    raw.mkdir()
    prepared.mkdir()
    rng = np.random.default_rng(0)
    sources = {}
    for i, s in enumerate(seconds):
        samples = rng.integers(-32768, 32768, int(round(s * SR)), dtype=np.int16)
        path = raw / f"clip{i}.wav"
        sf.write(path, samples, SR, subtype="PCM_16")
        sources[str(path)] = samples
    write_prepared(prepared, sources, int(segment_seconds * SR), fmt)
    return raw, prepared, sources


def config(sources, **overrides):
    return D.DataConfig(sources=[str(s) for s in sources], crop_seconds=overrides.pop("crop_seconds", 4.0),
                        batch_size=4, num_workers=0, **{"val_fraction": 0.0, **overrides})


# ---------------------------------------------------------------- items are sources

def test_a_prepared_run_lists_the_raw_runs_files_draws_and_split(tmp_path):
    """OUT/data_index.tsv of a run on the prepared folder (or its manifest) is the raw run's, byte
    for byte: the same source paths, seconds and draws, the same files held out for validation."""
    raw, prepared, sources = raw_and_prepared(tmp_path)
    options = dict(val_fraction=0.4, crop_seconds=2.0)
    train_raw, val_raw, meta_raw = D.file_datasets(config([raw], **options), tmp_path / "out_raw")
    for i, data in enumerate([prepared, prepared / "manifest.tsv"]):
        train, val, meta = D.file_datasets(config([data], **options), tmp_path / f"out{i}")
        assert (tmp_path / f"out{i}" / "data_index.tsv").read_text() == (tmp_path / "out_raw" / "data_index.tsv").read_text()
        assert train.draws_per_epoch.tolist() == train_raw.draws_per_epoch.tolist() == [
            M.draws_per_epoch(len(sources[train.path(i)]) / SR, 2.0) for i in range(len(train))]
        assert len(val) == 2 and sum(train.draws_per_epoch) > len(train)
        assert [train.path(i) for i in range(len(train))] == [train_raw.path(i) for i in range(len(train_raw))]
        assert [val.path(i) for i in range(len(val))] == [val_raw.path(i) for i in range(len(val_raw))]
        assert {k: v for k, v in meta.items() if k != "data"} == {k: v for k, v in meta_raw.items() if k != "data"}
    index = train.index
    assert len(index) == 5 and len(index.seg_offset) == 1 + 4 + 14 + 3 + 1  # sources, not segments
    assert index.frames.tolist() == [len(s) for s in sources.values()]
    # the prepared run never opens its files at start-up: gone segments are found when read
    for wav in (prepared / "audio").rglob("*.wav"):
        wav.unlink()
    train, _, _ = D.file_datasets(config([prepared]), tmp_path / "out_gone")
    assert len(train) == 5


def test_a_crop_spanning_two_segments_reads_both(tmp_path):
    _, prepared, sources = raw_and_prepared(tmp_path, seconds=(41.3,), segment_seconds=3.0)
    crops = D.AudioCrops(P.read_prepared(prepared / "manifest.tsv"), 4.0)
    source = next(iter(sources.values())).astype(np.float32) / 32768
    spans = 0
    for seed in range(20):
        start = int(round(np.random.default_rng(seed).uniform(0.0, 41.3 - 4.0) * SR))
        item = crops[(0, seed)]
        assert item["ok"] and item["length"] == 96000
        assert np.array_equal(item["wav"].numpy(), source[start:start + 96000]), seed
        spans += start // 72000 != (start + 96000 - 1) // 72000
    assert spans >= 19  # a 4 s crop of 3 s segments always spans two or three
    middle = int(round((41.3 - 4.0) / 2 * SR))
    assert np.array_equal(crops[0]["wav"].numpy(), source[middle:middle + 96000])  # validation: the middle
    # the crop at the end reads the last, short segment (41.3 s: 14 segments, the last 0.3 s)
    end = P.read_item(crops.index, 0, len(source) - 96000, 96000)
    assert np.array_equal(end, source[-96000:])
    with pytest.raises(ValueError, match="samples"):
        P.read_item(crops.index, 0, len(source) - 10, 11)


def test_short_sources_are_padded_and_flac_segments_read_by_soundfile(tmp_path):
    _, prepared, sources = raw_and_prepared(tmp_path, seconds=(2.5, 9.0), segment_seconds=4.0, fmt="flac")
    crops = D.AudioCrops(P.read_prepared(prepared / "manifest.tsv"), 4.0)
    short, long = (s.astype(np.float32) / 32768 for s in sources.values())
    item = crops[(0, 3)]
    assert item["length"] == 60000 and np.array_equal(item["wav"][:60000].numpy(), short)
    assert not item["wav"][60000:].any()
    start = int(round(np.random.default_rng(8).uniform(0.0, 5.0) * SR))
    assert np.array_equal(crops[(1, 8)]["wav"].numpy(), long[start:start + 96000])


def test_segments_missing_or_not_regular_are_replaced_not_fatal(tmp_path):
    _, prepared, _ = raw_and_prepared(tmp_path, seconds=(5.0, 5.0), segment_seconds=3.0)
    index = P.read_prepared(prepared / "manifest.tsv")
    crops = D.AudioCrops(index, 4.0)
    os.unlink(index.segment_path(0, 0))
    item = crops[0]  # the middle crop of source 0 needs its first segment: source 1 stands in
    assert item["ok"] is False and item["length"] == 96000


def test_prepared_skipped_sources_are_reported_and_list_sources_lists_segments(tmp_path):
    _, prepared, sources = raw_and_prepared(tmp_path, seconds=(5.0,), segment_seconds=3.0)
    write_prepared(prepared, sources, 3 * SR, skipped=[("/data/broken.mp3", "unreadable: bad header")])
    _, _, meta = D.file_datasets(config([prepared]), tmp_path / "out")
    assert meta["files"] == 2 and meta["skipped"] == 1
    report = (tmp_path / "out" / "skipped_files.tsv").read_text()
    assert "/data/broken.mp3\tunreadable: bad header (skipped by training.prepare)" in report
    # as a plain listing (what training.prepare reads), a prepared manifest is its segment files
    rows = M.list_sources(prepared / "manifest.tsv")
    assert [(r.split("/")[-1], s) for r, s in rows] == [("clip0.wav.000.wav", 3.0), ("clip0.wav.001.wav", 2.0)]


# ---------------------------------------------------------------- the manifest at scale

def generated_manifest(path, rows: int) -> tuple:
    """A prepared manifest of ``rows`` rows: 9 in 10 sources of one 10 s segment, the rest of 10
    segments of 60 s (as tests/…/gen.py at 2 M rows). Returns (sources, segment rows per source)."""
    short = rows * 9 // 10
    long = (rows - short) // 10
    with open(path, "w") as f:
        f.write(HEADER)
        for i in range(short):
            f.write(f"audio/s{i % 100:03d}.wav\t240000\t/data/as/{i:08d}.flac\t0\n")
        for j in range(long):
            f.write("".join(f"audio/l{s}.wav\t1440000\t/data/ll/{j:06d}/chapter.flac\t{s * 1440000}\n" for s in range(10)))
    return short + long, [1] * short + [10] * long


def test_a_large_generated_manifest_parses_into_sources(tmp_path):
    n, per_source = generated_manifest(tmp_path / "manifest.tsv", 200_000)
    index = P.read_prepared(tmp_path / "manifest.tsv")
    assert len(index) == n == 182_000 and len(index.seg_offset) == 200_000
    assert np.diff(index.seg_first).tolist() == per_source
    assert index.paths[0] == "/data/as/00000000.flac" and index.paths[n - 1] == "/data/ll/001999/chapter.flac"
    assert index.segment_path(n - 1, 199_999) == str(tmp_path / "audio" / "l9.wav")
    assert index.seconds[0] == 10.0 and index.seconds[-1] == 600.0 and index.frames[-1] == 14_400_000
    assert index.seg_offset[-1] == 9 * 1_440_000
    # the listing of the sources as the report writes them: the same as a list of strings gives
    sample = np.random.default_rng(0).integers(0, n, 50)
    assert [index.paths[i] for i in sample] == [list(index.paths)[i] for i in sample]


@pytest.mark.parametrize("row, message", [
    ("audio/x.wav\t240000\t/data/x.flac\n", "expected path<TAB>frames<TAB>source<TAB>offset"),
    ("audio/x.wav\t24k\t/data/x.flac\t0\n", "whole numbers"),
    ("audio/x.wav\t0\t/data/x.flac\t0\n", "0 frames"),
    ("audio/x.wav\t100\t/data/x.flac\t100\n", "does not continue the row above"),
    ("audio/x.wav\t100\t/data/y.flac\t200\n", "does not continue the row above"),
    ("audio/x.wav\t100\t/data/y.flac\t100\n", "does not continue the row above"),  # the same offset, another source
])
def test_a_malformed_row_is_named_by_its_line(tmp_path, row, message):
    (tmp_path / "manifest.tsv").write_text(HEADER + "audio/a.wav\t200\t/data/x.flac\t0\n" + row)
    with pytest.raises(ValueError, match=message) as error:
        P.read_prepared(tmp_path / "manifest.tsv")
    assert "manifest.tsv:4:" in str(error.value)


# ---------------------------------------------------------------- the WAV reader

def test_the_pcm16_reader_equals_soundfile_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    samples = rng.integers(-32768, 32768, 50_000, dtype=np.int16)
    samples[:2] = (-32768, 32767)
    path = str(tmp_path / "seg.wav")
    sf.write(path, samples, SR, subtype="PCM_16")
    for start, count in [(0, 96000 // 2), (123, 4567), (50_000 - 96000 // 4, 96000 // 4), (49_999, 1), (0, 50_000),
                         (7, 0)]:
        ours = P.read_pcm16_wav(path, start, count)
        theirs = sf.read(path, dtype="float32", start=start, frames=count)[0]
        assert ours.dtype == np.float32 and ours.view(np.uint32).tolist() == theirs.view(np.uint32).tolist()
    with pytest.raises(P.AudioReadError, match="shorter than its manifest row"):
        P.read_pcm16_wav(path, 49_990, 11)
    # WAVE_FORMAT_EXTENSIBLE with the PCM sub-format is 16-bit PCM too
    sf.write(tmp_path / "ext.wav", samples, SR, subtype="PCM_16", format="WAVEX")
    assert (tmp_path / "ext.wav").read_bytes()[20:22] == b"\xfe\xff"
    assert np.array_equal(P.read_pcm16_wav(str(tmp_path / "ext.wav"), 3, 1000), samples[3:1003] / np.float32(32768))
    # another kind of WAV is left to soundfile, which reads it the same way
    sf.write(tmp_path / "float.wav", samples / 32768, SR, subtype="FLOAT")
    assert P.read_pcm16_wav(str(tmp_path / "float.wav"), 0, 10) is None
    assert np.array_equal(P.read_segment_file(str(tmp_path / "float.wav"), 5, 10), samples[5:15] / np.float32(32768))


def test_the_pcm16_reader_walks_chunks_before_the_data(tmp_path):
    """A LIST chunk of odd length (padded) between fmt and data, and a data length of 0 (written
    before the length was known): the samples are still found where soundfile finds them."""
    samples = np.arange(-500, 500, dtype=np.int16) * 61
    sf.write(tmp_path / "plain.wav", samples, SR, subtype="PCM_16")
    plain = (tmp_path / "plain.wav").read_bytes()
    fmt_end = plain.index(b"data")
    listing = b"LIST" + (5).to_bytes(4, "little") + b"INFOx" + b"\x00"
    data = plain[fmt_end:]
    for name, body in [("list.wav", plain[12:fmt_end] + listing + data),
                       ("zero.wav", plain[12:fmt_end] + b"data" + bytes(4) + data[8:])]:
        blob = b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body
        (tmp_path / name).write_bytes(blob)
        ours = P.read_pcm16_wav(str(tmp_path / name), 100, 800)
        if name == "list.wav":
            assert np.array_equal(ours, sf.read(tmp_path / name, dtype="float32", start=100, frames=800)[0])
        assert np.array_equal(ours, samples[100:900] / np.float32(32768))


# ---------------------------------------------------------------- faults

PROBE = """
import sys
from training.data.manifest import list_sources, probe_files
entries, skipped = probe_files(list_sources(sys.argv[1]))
print(repr(skipped))
"""


def probe_in_subprocess(manifest, timeout=60):
    """probe_files in a child with a time limit: a probe that opens a FIFO waits for a writer
    forever, and a test must fail, not hang."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", PROBE, str(manifest)], capture_output=True, text=True,
                              timeout=timeout, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        pytest.fail(f"probing {manifest} did not return in {timeout} s (a FIFO opened?)")
    assert done.returncode == 0, done.stderr
    return dict(eval(done.stdout))


def test_a_fifo_or_missing_file_in_a_manifest_is_skipped_with_its_reason(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    sf.write(tmp_path / "ok.wav", np.zeros(2400, dtype=np.int16), SR, subtype="PCM_16")
    (tmp_path / "list.txt").write_text(f"{fifo}\n{tmp_path / 'gone.wav'}\n{tmp_path / 'ok.wav'}\n{tmp_path}\n")
    reasons = probe_in_subprocess(tmp_path / "list.txt")
    assert reasons == {str(fifo): "not a regular file (a pipe, device or socket)",
                       str(tmp_path / "gone.wav"): "no such file", str(tmp_path): "a folder, not a file"}
    # and in the run's report
    D.file_datasets(config([tmp_path / "list.txt"]), tmp_path / "out")
    report = (tmp_path / "out" / "skipped_files.tsv").read_text()
    assert f"{fifo}\tnot a regular file (a pipe, device or socket)\n" in report
    assert f"{tmp_path / 'gone.wav'}\tno such file\n" in report


READ_FIFO = """
import sys
from training.data import crops as D
from training.data.index import AudioIndex
from training.data.prepared import read_prepared
files = AudioIndex.of_files(sys.argv[2:], [5.0, 1.0])
crops = D.AudioCrops(AudioIndex.concat([read_prepared(sys.argv[1]), files]), 1.0)
print(crops[0]["ok"], crops[1]["ok"], crops[2]["ok"])
"""


def test_a_fifo_is_not_opened_when_a_crop_is_read(tmp_path):
    """A FIFO where a segment should be, and one listed with its duration (so never probed): the
    crops are replaced, the worker does not wait for a writer."""
    import subprocess
    import sys

    _, prepared, _ = raw_and_prepared(tmp_path, seconds=(2.0,), segment_seconds=3.0)
    segment = next((prepared / "audio").rglob("*.wav"))
    segment.unlink()
    os.mkfifo(segment)
    os.mkfifo(tmp_path / "pipe.flac")
    ok = tmp_path / "raw" / "clip0.wav"
    done = subprocess.run([sys.executable, "-c", READ_FIFO, str(prepared / "manifest.tsv"), str(tmp_path / "pipe.flac"),
                           str(ok)],
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.stdout.split() == ["False", "False", "True"], done.stderr  # the FIFOs replaced by the next file
    assert done.stderr.count("not a regular file (a pipe, device or socket)") == 3


# ---------------------------------------------------------------- draws as arrays

def test_vectorised_draws_equal_the_official_rule():
    seconds = np.array([0.5, 2, 3.99, 4, 7.9, 8, 40, 400, 9999, 12000, 0.3, 1.0, 8.000000001, 7.999999999])
    for crop in (4.0, 0.1, 2.5):
        for cap in (0.0, M.MAX_FILE_SECONDS):
            assert M.draws_of(seconds, crop, cap).tolist() == [M.draws_per_epoch(s, crop, cap) for s in seconds]


def test_the_step_sampler_takes_the_draws_as_an_array():
    draws = np.array([1, 3, 2], dtype=np.int64)
    sampler = D.StepSampler(draws, batch_size=2, seed=1)
    it = iter(sampler)
    items = [next(it)[0] for _ in range(6)]
    assert np.bincount(items, minlength=3).tolist() == [1, 3, 2]
    assert torch.equal(sampler.item_ends, torch.tensor([1, 4, 6]))


def test_self_training_and_pretraining_take_a_prepared_folder_as_data(tmp_path):
    """Both CLIs' --data reach file_datasets; a batch of the EnCodecMAE loaders (what pretraining
    and self-training's k-means features draw) comes from the prepared segments."""
    from hear_codec import encodecmae as emae
    from training.encodecmae import self_train
    from training.encodecmae.train import build_loaders
    from training.pretrain import build_parser as pretrain_parser

    _, prepared, _ = raw_and_prepared(tmp_path, seconds=(5.0, 6.0), segment_seconds=3.0)
    for args in (self_train.build_parser().parse_args(["--teacher", "t.ckpt", "--data", str(prepared),
                                                        "--crop-seconds", "4", "--num-workers", "0"]),
                 pretrain_parser().parse_args(["--data", str(prepared), "--num-workers", "0"])):
        data = D.DataConfig.from_args(args)
        train, val, meta = D.file_datasets(data, tmp_path / "out")
        assert meta["files"] == 2 and len(train) + (len(val) if val else 0) == 2
        config = emae.preset("tiny", chunk_seconds=4.0, num_codec_streams=0, num_kmeans_streams=1)
        loader, _, _ = build_loaders(train, None, dataclasses.replace(data, batch_size=2), config)
        batch = next(iter(loader))
        assert batch["wav"].shape == (2, 96000) and bool(batch["ok"].all()) and bool(batch["wav"].abs().sum() > 0)
