"""training/data/crops.py: crops resampled, mixed down and padded; a file that fails later is
replaced, not fatal; the datasets and loaders of a run of files, their draws and reports."""
import numpy as np
import soundfile as sf
import torch

from audio_files import dominant_hz, make_folder
from test_data_manifest import official_compensate_lengths
from training.data import crops as D
from training.data.manifest import index_sources


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_decode_failure_later_is_replaced_not_fatal(tmp_path):
    folder = make_folder(tmp_path)
    index, _, _ = index_sources(folder)
    crops = D.AudioCrops(index, 0.5)
    (folder / "b16k.flac").unlink()  # passes the probe, then disappears
    bad = [i for i, p in enumerate(index.paths) if p.endswith("b16k.flac")][0]
    item = crops[(bad, 123)]
    assert item["ok"] is False and item["wav"].shape == (12000,)
    assert crops[((bad + 1) % len(index), 5)]["ok"] is True


def test_resample_downmix_crop_and_padding(tmp_path):
    folder = make_folder(tmp_path)
    index, _, _ = index_sources(folder)
    by_name = {p.split("/")[-1]: i for i, p in enumerate(index.paths)}
    crops = D.AudioCrops(index, 2.0)
    stereo = crops[(by_name["a48k_stereo.wav"], 7)]
    assert stereo["wav"].shape == (48000,) and stereo["wav"].dtype == torch.float32
    assert stereo["length"] == 48000
    assert abs(dominant_hz(stereo["wav"].numpy()) - 440) < 2
    short = crops[(by_name["b16k.flac"], 7)]  # 1 s clip, 2 s crop: padded
    assert short["length"] == 24000
    assert abs(dominant_hz(short["wav"][:24000].numpy()) - 1000) < 2
    assert torch.all(short["wav"][24000:] == 0)
    # different crop seeds give different crops of a long file; the same seed the same crop
    long = by_name["c24k.wav"]
    assert not torch.equal(crops[(long, 1)]["wav"], crops[(long, 2)]["wav"])
    assert torch.equal(crops[(long, 1)]["wav"], crops[(long, 1)]["wav"])
    assert crops[long]["length"] == 48000  # validation crop: the middle


def test_length_proportional_draws_follow_the_official_rule(tmp_path):
    """Files of 2, 4, 40 and 400 s: one epoch of the training stream draws them 1, 1, 10 and 100
    times (a file shorter than the 4 s crop still once), and OUT/data_index.tsv says so."""
    audio = tmp_path / "audio"
    audio.mkdir()
    durations = {"a2.wav": 2, "b4.wav": 4, "c40.wav": 40, "d400.flac": 400}
    for name, seconds in durations.items():
        sf.write(audio / name, np.zeros(8000 * seconds, dtype=np.int16), 8000, subtype="PCM_16")
    expected = [official_compensate_lengths(s) for s in durations.values()]
    assert expected == [1, 1, 10, 100]
    loader, _, sampler, meta = _loaders(_data_config([str(audio)]), tmp_path / "out")
    crops = loader.dataset.dataset
    names = [crops.path(i).split("/")[-1] for i in range(len(crops))]
    assert names == list(durations)
    stream = take(sampler, 2 * sum(expected))
    for epoch in range(2):
        items = [i for i, _ in stream[epoch * sum(expected): (epoch + 1) * sum(expected)]]
        assert np.bincount(items, minlength=4).tolist() == expected
    assert meta["draws_per_epoch"] == sum(expected) == sampler.epoch_draws
    # the draws of a long file are crops at different offsets (each draw its own crop seed)
    long_seeds = {seed for i, seed in stream if i == 3}
    assert len(long_seeds) == 200
    index = (tmp_path / "out" / "data_index.tsv").read_text().splitlines()
    assert index[0].startswith("#")
    rows = {line.split("\t")[0].split("/")[-1]: line.split("\t")[1:] for line in index[1:]}
    assert {name: int(r[1]) for name, r in rows.items()} == dict(zip(durations, expected))
    assert {name: float(r[0]) for name, r in rows.items()} == {k: float(v) for k, v in durations.items()}


def test_long_files_are_capped_or_dropped(tmp_path):
    """Longer than --max-file-seconds: kept with draws capped (default) or dropped (official)."""
    manifest = tmp_path / "list.tsv"
    manifest.write_text("short.wav\t8\nlong.wav\t12000\nhuge.wav\t99999\n")  # durations trusted, not probed
    loader, _, sampler, _ = _loaders(_data_config([str(manifest)]), tmp_path / "crop")
    assert loader.dataset.dataset.draws_per_epoch.tolist() == [2, 2500, 2500]
    drop = _data_config([str(manifest)], long_files="drop")
    loader, _, sampler, meta = _loaders(drop, tmp_path / "drop")
    crops = loader.dataset.dataset
    assert [crops.path(i) for i in range(len(crops))] == [str(tmp_path / "short.wav")]
    assert meta["skipped"] == 2
    skipped = (tmp_path / "drop" / "skipped_files.tsv").read_text()
    assert "long.wav\t12000 s, not shorter than --max-file-seconds 10000" in skipped and "huge.wav" in skipped


def _data_config(sources, **overrides):
    return D.DataConfig(sources=sources, crop_seconds=4.0, batch_size=4, num_workers=0,
                        val_fraction=0.0, **overrides)


def _loaders(data, out_dir):
    """(train loader, val loader, sampler, metadata) as EnCodecMAE training builds them from files."""
    from hear_codec import encodecmae as emae
    from training.encodecmae.train import build_loaders

    train_set, val_set, meta = D.file_datasets(data, out_dir)
    config = emae.preset("tiny", chunk_seconds=4.0, num_codec_streams=0, num_kmeans_streams=1)
    return (*build_loaders(train_set, val_set, data, config), meta)
