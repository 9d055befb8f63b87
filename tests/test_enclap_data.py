"""EnCLAP data: Clotho / AudioCaps / generic CSV readers on generated miniature files, feature cache."""
import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from training.enclap.data import CaptionPairs, ClipReferences, read_audiocaps, read_caption_csv, read_clotho


def _wav(path, seconds=0.4, rate=16_000, seed=0):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_clotho_reader(tmp_path):
    for name in ("a.wav", "b c.wav"):
        _wav(tmp_path / name)
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    path = _csv(tmp_path / "clotho_captions_development.csv", header,
                [["a.wav", *[f"a caption {i}" for i in range(5)]], ["b c.wav", *[f"b, caption {i}" for i in range(5)]]])
    clips = read_clotho(path, tmp_path)
    assert [c.id for c in clips] == ["a.wav", "b c.wav"]
    assert clips[1].captions == [f"b, caption {i}" for i in range(5)]
    assert len(CaptionPairs(clips, {}).items) == 10  # every caption is a training example
    refs = ClipReferences(clips, {"a.wav": ("codes", "clap"), "b c.wav": ("codes", "clap")})
    assert refs[1]["references"] == clips[1].captions

    with pytest.raises(ValueError, match="caption_5"):
        read_clotho(_csv(tmp_path / "bad.csv", header[:-1], [["a.wav", "x", "y", "z", "w"]]), tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_clotho(_csv(tmp_path / "missing.csv", header, [["missing.wav", *"abcde"]]), tmp_path)
    with pytest.raises(ValueError, match="no rows"):
        read_clotho(_csv(tmp_path / "empty.csv", header, []), tmp_path)


def test_audiocaps_reader_groups_captions_and_finds_file_names(tmp_path):
    _wav(tmp_path / "Yabc123.wav")  # one downloader's naming
    _wav(tmp_path / "xyz_30.wav")  # another one's: <id>_<start>
    path = _csv(tmp_path / "train.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], [
        [1, "abc123", 0, "A dog barks"], [2, "xyz", 30, "Wind blows"], [3, "abc123", 0, "A dog is barking"],
    ])
    clips = {c.id: c for c in read_audiocaps(path, tmp_path)}
    assert clips["abc123"].captions == ["A dog barks", "A dog is barking"]
    assert clips["abc123"].path.name == "Yabc123.wav" and clips["xyz"].path.name == "xyz_30.wav"
    with pytest.raises(ValueError, match="youtube_id"):
        read_audiocaps(_csv(tmp_path / "bad.csv", ["id", "caption"], [[1, "x"]]), tmp_path)


def test_generic_csv_reader(tmp_path):
    _wav(tmp_path / "x.wav")
    path = _csv(tmp_path / "c.csv", ["file", "caption"], [["x.wav", "one"], ["x.wav", "two"]])
    (clip,) = read_caption_csv(path, tmp_path)
    assert clip.captions == ["one", "two"]


def test_feature_cache_round_trip_and_resume(tmp_path, monkeypatch):
    from training.enclap.cache import AudioFeaturizer, FeatureCache, build_cache, read_audio

    for i, seconds in enumerate([0.5, 0.3, 0.7]):
        _wav(tmp_path / f"{i}.wav", seconds, rate=[16_000, 44_100, 48_000][i], seed=i)
    path = _csv(tmp_path / "c.csv", ["file", "caption"], [[f"{i}.wav", f"caption {i}"] for i in range(3)])
    clips = read_caption_csv(path, tmp_path)
    featurizer = AudioFeaturizer(codec="offline", clap="tiny-random")
    build_cache(clips, tmp_path / "cache", featurizer, shard_size=2, progress=False)

    cache = FeatureCache(tmp_path / "cache")
    assert [c.captions for c in cache.clips] == [["caption 0"], ["caption 1"], ["caption 2"]]
    direct = featurizer([read_audio(c.path) for c in clips])
    for clip, (codes, clap) in zip(clips, direct):
        got_codes, got_clap = cache.features[clip.id]
        assert got_codes.dtype == torch.int16 and got_codes.shape[1] == 16
        assert torch.equal(got_codes, codes)
        torch.testing.assert_close(got_clap, clap)
        assert got_clap.norm().item() == pytest.approx(1.0, abs=1e-5)
    # 0.5 s at 75 frames/s
    assert cache.features["0.wav"][0].shape[0] == 38

    # resume: only the missing shard is recomputed
    (tmp_path / "cache" / "shard-00001.pt").unlink()
    with pytest.raises(ValueError, match="incomplete"):
        FeatureCache(tmp_path / "cache")
    calls = []
    original = AudioFeaturizer.__call__
    monkeypatch.setattr(AudioFeaturizer, "__call__", lambda self, x: calls.append(len(x)) or original(self, x))
    build_cache(clips, tmp_path / "cache", featurizer, shard_size=2, progress=False)
    assert calls == [1]
    assert torch.equal(FeatureCache(tmp_path / "cache").features["2.wav"][0], direct[2][0])

    # a cache made with other settings is never mixed into
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["settings"]["codec"] == "offline" and manifest["settings"]["codebooks"] == 16
    with pytest.raises(ValueError, match="other settings"):
        build_cache(clips, tmp_path / "cache", featurizer, shard_size=3, progress=False)


def test_unreadable_audio_is_named(tmp_path):
    from training.enclap.cache import read_audio

    (tmp_path / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="broken.wav"):
        read_audio(tmp_path / "broken.wav")
