"""training/data.py: listing, probing, skipping bad files, resampling/downmixing, padding, order."""
import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from training import data as D


def sine(freq, seconds, sr, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def dominant_hz(wav, sr=24000):
    spec = np.abs(np.fft.rfft(wav))
    return np.fft.rfftfreq(len(wav), 1 / sr)[spec.argmax()]


def make_folder(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    sf.write(tmp_path / "a48k_stereo.wav", sine(440, 3.0, 48000, channels=2), 48000)
    sf.write(tmp_path / "b16k.flac", sine(1000, 1.0, 16000), 16000)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "c24k.wav", sine(300, 5.0, 24000), 24000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage that is not audio" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 24000)
    (tmp_path / "notes.txt").write_text("not audio, not listed")
    return tmp_path


def test_bad_files_are_skipped_counted_and_reported(tmp_path):
    folder = make_folder(tmp_path / "audio")
    rows = D.list_sources(folder)
    assert len(rows) == 5  # the .txt is not listed
    entries, skipped = D.probe_files(rows)
    assert sorted(e.path.split("/")[-1] for e in entries) == ["a48k_stereo.wav", "b16k.flac", "c24k.wav"]
    reasons = {p.split("/")[-1]: r for p, r in skipped}
    assert set(reasons) == {"corrupt.wav", "empty.wav"}
    assert reasons["corrupt.wav"].startswith("unreadable") and reasons["empty.wav"].startswith("empty")
    D.write_report(tmp_path / "out", entries, skipped)
    report = (tmp_path / "out" / "skipped_files.tsv").read_text()
    assert "corrupt.wav\tunreadable" in report and "empty.wav\tempty" in report
    # the index is a manifest with durations that lists only the readable files
    again, skipped_again = D.probe_files(D.list_sources(tmp_path / "out" / "data_index.tsv"))
    assert len(again) == 3 and not skipped_again
    assert sorted(round(e.seconds, 2) for e in again) == [1.0, 3.0, 5.0]


def test_decode_failure_later_is_replaced_not_fatal(tmp_path):
    folder = make_folder(tmp_path)
    entries, _ = D.probe_files(D.list_sources(folder))
    crops = D.AudioCrops(entries, 0.5)
    (folder / "b16k.flac").unlink()  # passes the probe, then disappears
    bad = [i for i, e in enumerate(entries) if e.path.endswith("b16k.flac")][0]
    item = crops[(bad, 123)]
    assert item["ok"] is False and item["wav"].shape == (12000,)
    assert crops[((bad + 1) % len(entries), 5)]["ok"] is True


def test_resample_downmix_crop_and_padding(tmp_path):
    folder = make_folder(tmp_path)
    entries, _ = D.probe_files(D.list_sources(folder))
    by_name = {e.path.split("/")[-1]: i for i, e in enumerate(entries)}
    crops = D.AudioCrops(entries, 2.0)
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


def test_manifest_relative_paths(tmp_path):
    folder = make_folder(tmp_path / "audio")
    (tmp_path / "list.txt").write_text("# comment\naudio/b16k.flac\n\naudio/sub/c24k.wav\t5.0\n")
    rows = D.list_sources(tmp_path / "list.txt")
    assert rows == [(str(folder / "b16k.flac"), None), (str(folder / "sub" / "c24k.wav"), 5.0)]


def test_split_is_stable_and_disjoint():
    entries = [D.AudioEntry(f"/x/{i}.wav", 1.0) for i in range(100)]
    train, val = D.split_train_val(entries, 0.05, 200)
    assert len(val) == 5 and len(train) == 95
    assert not {e.path for e in train} & {e.path for e in val}
    train2, val2 = D.split_train_val(entries + [D.AudioEntry("/x/new.wav", 1 / 24000)], 0.05, 200)
    assert len(val2) == 5 and len({e.path for e in val} - {e.path for e in val2}) <= 1  # adding a file moves at most one


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_step_sampler_resumes_and_shards():
    draws = [1, 3, 1, 2, 1, 1, 4, 1, 1, 1]  # 16 draws per epoch
    full = D.StepSampler(draws, batch_size=4, seed=3)
    full.accumulate = 2
    stream = take(full, 4 * 2 * 6)  # 6 optimiser steps: three epochs
    resumed = D.StepSampler(draws, batch_size=4, seed=3)
    resumed.accumulate, resumed.start_step = 2, 4
    assert take(resumed, 16) == stream[32:48]
    # every item as often as it is drawn, in every epoch; epochs in different orders
    for epoch in range(3):
        items = [i for i, _ in stream[16 * epoch: 16 * (epoch + 1)]]
        assert np.bincount(items, minlength=10).tolist() == draws
    assert stream[:16] != stream[16:32]
    # two ranks split each micro-batch: together they are the single-process stream
    ranks = []
    for r in range(2):
        s = D.StepSampler(draws, batch_size=2, seed=3)
        s.rank, s.world = r, 2
        ranks.append(take(s, 4))
    single = take(D.StepSampler(draws, batch_size=2, seed=3), 8)
    assert ranks[0][:2] + ranks[1][:2] + ranks[0][2:] + ranks[1][2:] == single
    with pytest.raises(ValueError, match="at least 1"):
        D.StepSampler([1, 0], batch_size=2)
    assert take(D.StepSampler(10, batch_size=2, seed=3), 12) == take(D.StepSampler([1] * 10, batch_size=2, seed=3), 12)


def official_compensate_lengths(seconds, chunk_length=4.0):
    """habla-liaa/encodecmae tasks/data/__init__.py at 2dd6759 (compensate_lengths), per file:
    ``int(max(1, row['duration'] // chunk_length))`` indices per epoch (MAX_AUDIO_DURATION = 4)."""
    return int(max(1, seconds // chunk_length))


def test_length_proportional_draws_follow_the_official_rule(tmp_path):
    """Files of 2, 4, 40 and 400 s: one epoch of the training stream draws them 1, 1, 10 and 100
    times (a file shorter than the 4 s crop still once), and OUT/data_index.tsv says so."""
    from training.encodecmae.train import build_loaders

    audio = tmp_path / "audio"
    audio.mkdir()
    durations = {"a2.wav": 2, "b4.wav": 4, "c40.wav": 40, "d400.flac": 400}
    for name, seconds in durations.items():
        sf.write(audio / name, np.zeros(8000 * seconds, dtype=np.int16), 8000, subtype="PCM_16")
    expected = [official_compensate_lengths(s) for s in durations.values()]
    assert expected == [1, 1, 10, 100]
    loader, _, sampler, meta = build_loaders(_data_config([str(audio)]), tmp_path / "out", _mae_config(), None)
    names = [e.path.split("/")[-1] for e in loader.dataset.dataset.entries]
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
    from training.encodecmae.train import build_loaders

    manifest = tmp_path / "list.tsv"
    manifest.write_text("short.wav\t8\nlong.wav\t12000\nhuge.wav\t99999\n")  # durations trusted, not probed
    loader, _, sampler, _ = build_loaders(_data_config([str(manifest)]), tmp_path / "crop", _mae_config(), None)
    assert loader.dataset.dataset.draws_per_epoch == [2, 2500, 2500]
    drop = _data_config([str(manifest)], long_files="drop")
    loader, _, sampler, meta = build_loaders(drop, tmp_path / "drop", _mae_config(), None)
    assert [e.path for e in loader.dataset.dataset.entries] == [str(tmp_path / "short.wav")]
    assert meta["skipped"] == 2
    skipped = (tmp_path / "drop" / "skipped_files.tsv").read_text()
    assert "long.wav\t12000 s, not shorter than --max-file-seconds 10000" in skipped and "huge.wav" in skipped
    assert D.draws_per_epoch(99999, 4.0, max_file_seconds=0) == 24999  # 0 = no cap


def _data_config(sources, **overrides):
    return D.DataConfig(sources=sources, codec="offline", crop_seconds=4.0, batch_size=4, num_workers=0,
                        val_fraction=0.0, **overrides)


def _mae_config():
    from hear_codec import encodecmae as emae

    return emae.preset("tiny", chunk_seconds=4.0, num_codec_streams=0, num_kmeans_streams=1)


def test_synthetic_corpus_has_classes_and_short_clips():
    corpus = D.SyntheticCorpus(60, seconds=1.0, seed=0)
    labels = corpus.labels()
    assert set(labels) == set(range(len(D.SYNTH_CLASSES)))
    lengths = [corpus[i]["length"] for i in range(60)]
    assert min(lengths) < 24000 and max(lengths) == 24000
    item = corpus[0]
    assert item["wav"].shape == (24000,) and float(item["wav"].abs().max()) <= 1.0
    assert torch.equal(corpus[5]["wav"], D.SyntheticCorpus(60, seconds=1.0, seed=0)[5]["wav"])
    other = D.SyntheticCorpus(10, seconds=1.0, seed=0, offset=60)
    assert not torch.equal(other[0]["wav"], corpus[0]["wav"])


def _share_below(kind, words, hz=300.0, events=200, sr=24000):
    """Mean share of an event's energy below ``hz``, over ``events`` events of one kind."""
    rng = np.random.default_rng(0)
    t = np.arange(sr // 2) / sr
    f = np.fft.rfftfreq(len(t), 1 / sr)
    shares = []
    for _ in range(events):
        power = np.abs(np.fft.rfft(D._event(kind, rng, t, t, sr, words))) ** 2
        shares.append(power[f < hz].sum() / power.sum())
    return float(np.mean(shares))


def test_spectral_vocabulary_puts_sound_below_300_hz():
    """The spectral words (the stand-in targets' corpus) fill the octaves the grid words leave
    almost empty (docs/pretraining.md, "A fourth pass"): low tones and carriers, noise bursts
    whose bands reach down to 60 Hz."""
    for kind, grid_most, spectral_least in (("tone", 0.25, 0.6), ("am", 0.1, 0.5), ("noise_burst", 0.01, 0.1)):
        grid, spectral = _share_below(kind, D.GRID_SOUNDS), _share_below(kind, D.SPECTRAL_SOUNDS)
        assert grid < grid_most and spectral > spectral_least, (kind, grid, spectral)


def test_corpus_sounds_follow_the_codec():
    """The offline codec gets the frame-grid words, every spectral target the spectral ones; the
    cached codes are keyed on the choice, so a cache of one is never read as the other."""
    assert D.corpus_sounds("offline") == "grid"
    assert D.corpus_sounds("mel-kmeans") == D.corpus_sounds("pretrained") == "spectral"
    grid, spectral = D.SyntheticCorpus(4, 1.0, sounds="grid"), D.SyntheticCorpus(4, 1.0, sounds="spectral")
    assert D.codes_cache_key(grid, "w", 8) != D.codes_cache_key(spectral, "w", 8)
    assert grid.labels() == spectral.labels()  # same classes, different words
    assert not all(torch.equal(grid[i]["wav"], spectral[i]["wav"]) for i in range(4))
    with pytest.raises(ValueError, match="unknown corpus sounds 'loud'"):
        D.SyntheticCorpus(4, 1.0, sounds="loud")


def test_vocabulary_sounds_keep_their_codes_while_they_last():
    """Why the offline codec's corpus puts pitches on the 75 Hz frame grid (training/data.py): the
    offline codec's codes hold still through a sustained grid sound and flicker for an off-grid one."""
    from hear_codec.codec import load_codec

    codec = load_codec("offline")
    sr = 24000
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    waves = [
        0.35 * np.sin(2 * np.pi * D.GRID_SOUNDS.tone_hz[2] * t),
        0.35 * D._event("harmonic", rng, t, t, sr, D.GRID_SOUNDS),
        0.35 * np.sin(2 * np.pi * (D.GRID_SOUNDS.tone_hz[2] + 10) * t),  # 10 Hz off the grid
    ]
    codes = codec.encode_codes(torch.tensor(np.stack(waves), dtype=torch.float32), 8)[..., 10:-5]
    steady = (codes[..., 1:] == codes[..., :-1]).float().mean(dim=(1, 2))
    # Deep codebooks flip now and then between near-tied codewords; the contrast is the point.
    assert steady[0] > 0.9 and steady[1] > 0.9, steady
    assert steady[2] < 0.3, steady


def test_event_envelopes_hold_decay_or_swell_in_equal_shares():
    rng = np.random.default_rng(0)
    tt = np.arange(12000) / 24000  # 0.5 s
    shapes = {"hold": 0, "decay": 0, "swell": 0}
    for _ in range(600):
        env = D.event_envelope(rng, tt)
        assert env.shape == tt.shape and env.min() >= 0.0 and env.max() <= 1.0
        if np.all(env == 1.0):
            shapes["hold"] += 1
        elif env[0] == 1.0 and np.all(np.diff(env) < 0) and env[-1] < np.exp(-0.5 / 0.3) + 1e-9:
            shapes["decay"] += 1  # falls from the onset, at least as fast as the slowest time constant
        elif env[0] == 0.0 and np.all(np.diff(env) >= 0) and env[-1] == 1.0:
            shapes["swell"] += 1  # rises from silence to full level within 0.3 s
    assert sum(shapes.values()) == 600 and all(150 < n < 250 for n in shapes.values()), shapes


def _tone_event_spreads(sounds: str, clips: int = 60) -> list:
    """Max / min of the 10 ms RMS inside each tone event of ``clips`` tone clips (frames above the
    noise floor, two dropped at each end for the fades)."""
    spreads = []
    for i in range(clips * len(D.SYNTH_CLASSES)):
        wav, label = D.corpus_clip(i, 2.0, seed=3, sounds=sounds)
        if D.SYNTH_CLASSES[label] != "tone":
            continue
        rms = np.sqrt((wav[: len(wav) // 240 * 240].reshape(-1, 240) ** 2).mean(1))
        loud = np.concatenate([[False], rms > 0.05, [False]]).astype(int)
        starts, ends = np.flatnonzero(np.diff(loud) == 1), np.flatnonzero(np.diff(loud) == -1)
        spreads += [rms[a + 2:b - 2].max() / rms[a + 2:b - 2].min() for a, b in zip(starts, ends) if b - a > 8]
    return spreads


def test_spectral_words_shape_their_events_and_grid_words_hold_them():
    """The grid words keep every event flat (the offline codec's codes must hold still through
    it); the spectral words decay or swell two events in three (docs/pretraining.md, sixth pass)."""
    grid, spectral = _tone_event_spreads("grid"), _tone_event_spreads("spectral")
    assert len(grid) > 30 and max(grid) < 1.1, max(grid)
    shaped = np.mean(np.array(spectral) > 2.0)
    assert len(spectral) > 30 and 0.3 < shaped < 0.9, shaped


def test_half_the_spectral_clips_hold_a_quieter_second_class_and_grid_clips_none(monkeypatch):
    """The underlay (data._add_underlay) is drawn after the clip's own events, so the same index with
    mixtures off gives the clip without it: their difference is the underlay alone. It is in about
    MIX_SHARE of the spectral clips, quieter than the clip's own events, and in no grid clip."""
    def clips(sounds):
        return [D.corpus_clip(i, 2.0, seed=5, sounds=sounds)[0] for i in range(160)]

    mixed = clips("spectral")
    monkeypatch.setitem(D.SOUNDS, "spectral", dataclasses.replace(D.SPECTRAL_SOUNDS, mixtures=False))
    alone = clips("spectral")
    under = [np.sqrt(np.mean((m - a) ** 2)) for m, a in zip(mixed, alone)]
    own = [np.sqrt(np.mean(a ** 2)) for a in alone]
    with_underlay = [i for i, u in enumerate(under) if u > 1e-6]
    assert 0.35 < len(with_underlay) / len(mixed) < 0.65, len(with_underlay)
    quieter = np.mean([under[i] < own[i] for i in with_underlay])
    assert quieter > 0.8, quieter  # 3-15 dB down, though event lengths and classes vary
    assert not D.GRID_SOUNDS.mixtures  # the offline codec's words stay one class at a time
