"""EnCLAP's feature cache (training/enclap/cache.py): round trip, resume, settings, unreadable audio."""
import json

import pytest
import torch

from conftest import write_csv, write_noise_wav
from training.enclap.data import read_caption_csv


def test_feature_cache_round_trip_and_resume(tmp_path, monkeypatch):
    from hear_codec.audio import read_audio
    from training.enclap.cache import AudioFeaturizer, FeatureCache, build_cache

    for i, seconds in enumerate([0.5, 0.3, 0.7]):
        write_noise_wav(tmp_path / f"{i}.wav", seconds, rate=[16_000, 44_100, 48_000][i], seed=i)
    path = write_csv(tmp_path / "c.csv", ["file", "caption"], [[f"{i}.wav", f"caption {i}"] for i in range(3)])
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
    from hear_codec.audio import read_audio

    (tmp_path / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="broken.wav"):
        read_audio(tmp_path / "broken.wav")
