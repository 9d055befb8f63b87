"""The log-mel k-means stand-in for EnCodec's targets (training/spectral_targets.py)."""
import numpy as np
import pytest
import torch

from training import data as D
from training import pretrain
from training import spectral_targets as S

SR = 24_000


def tones(freqs, seconds=1.0, delay=0):
    t = (np.arange(int(seconds * SR)) - delay) / SR
    return torch.tensor(np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in freqs]), dtype=torch.float32)


def harmonic(f0, seconds=1.0, partials=(1.0, 0.8, 0.6, 0.4)):
    t = np.arange(int(seconds * SR)) / SR
    return 0.3 * sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t + k) for k, a in enumerate(partials))


@pytest.fixture(scope="module")
def stand_in():
    front_end = S.SpectralTargets.fit(torch.randn(16, 256), clusters=1).front_end
    frames = front_end(tones([110 * 2 ** (i / 4) for i in range(24)])).reshape(-1, 256)
    return S.SpectralTargets.fit(frames, clusters=16, seed=0)


def test_codes_have_the_codec_layout_and_the_weights_name_hashes_the_centroids(stand_in):
    codes = stand_in.encode_codes(tones([300, 500]), n_q=8)
    assert codes.shape == (2, 8, 1 + (SR - 637) // 318) and codes.dtype == torch.int64
    assert S.STREAMS == 8 and len(stand_in.centroids) == 7  # 7 band codebooks + the pitch stream
    assert [c.shape[1] for c in stand_in.centroids] == [32] * 6 + [64]
    assert 0 <= int(codes[:, :7].min()) and int(codes[:, :7].max()) < 16
    assert torch.equal(codes[:, 7], S.pitch_codes(tones([300, 500])))  # the last stream is the pitch
    assert torch.equal(stand_in.encode_codes(tones([300, 500]), n_q=3), codes[:, :3])
    assert stand_in.weights.startswith("mel-kmeans-16x7+pitch-")
    other = S.SpectralTargets([c + 1e-3 for c in stand_in.centroids])
    assert other.weights != stand_in.weights  # cached targets of other centroids are not reused
    with pytest.raises(ValueError, match="n_q must be in 1..8"):
        stand_in.encode_codes(tones([300]), n_q=9)
    with pytest.raises(ValueError, match="one \\[K, width\\] per band"):
        S.SpectralTargets(stand_in.centroids[:6])


def test_band_codes_are_the_nearest_centroid_of_their_own_bins(stand_in):
    wav = tones([437.0, 2900.0])
    frames = stand_in.front_end(wav)  # [2, T, 256]
    codes = stand_in.encode_codes(wav)
    for q, (lo, hi) in enumerate(zip(S.BAND_EDGES, S.BAND_EDGES[1:])):
        dist = ((frames[..., None, lo:hi] - stand_in.centroids[q]) ** 2).sum(-1)  # [2, T, K]
        assert torch.equal(codes[:, q], dist.argmin(-1)), q


def test_fit_is_deterministic_and_caps_clusters_at_the_frames():
    frames = torch.randn(40, 256)
    a = S.SpectralTargets.fit(frames, clusters=8, seed=1)
    b = S.SpectralTargets.fit(frames, clusters=8, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.centroids, b.centroids))
    assert [tuple(c.shape) for c in S.SpectralTargets.fit(frames, clusters=64).centroids] == [(40, 32)] * 6 + [(40, 64)]


def test_codes_follow_the_spectrum_not_the_waveform_phase(stand_in):
    """The point of the stand-in: the codes of a tone at any pitch (here off the 75 Hz grid) are
    the same when it starts a few samples later, unlike the offline codec's (tests/test_data.py)."""
    freqs = [437.0, 1230.0, 173.0]
    codes = stand_in.encode_codes(tones(freqs))[..., 2:-2]
    shifted = stand_in.encode_codes(tones(freqs, delay=5))[..., 2:-2]
    assert (codes == shifted).float().mean() > 0.95
    # ...and they do tell the pitches apart (the low bands resolve the partial)
    assert not torch.equal(codes[0, :3], codes[1, :3]) and not torch.equal(codes[0, :3], codes[2, :3])


@pytest.mark.parametrize("f0", [61.0, 106.0, 173.0, 437.0, 1230.0, 2900.0])
def test_pitch_stream_is_the_semitone_of_the_period_for_any_waveform(f0):
    """Pure tones and harmonic tones (whose second partial is nearly as strong as the first:
    no octave error) get the semitone of f0 above PITCH_MIN_HZ, wherever it lies."""
    expected = 1 + round(12 * np.log2(f0 / S.PITCH_MIN_HZ))
    wav = torch.tensor(np.stack([0.3 * np.sin(2 * np.pi * f0 * np.arange(SR) / SR), harmonic(f0)]),
                       dtype=torch.float32)
    codes = S.pitch_codes(wav)[:, 2:-2]
    assert codes.shape == (2, 1 + (SR - 637) // 318 - 4)
    assert (codes == expected).float().mean() > 0.95, (expected, codes.unique())
    # a semitone higher is the next code
    assert (S.pitch_codes(tones([f0 * 2 ** (1 / 12)]))[:, 2:-2] == expected + 1).float().mean() > 0.95


def test_pitch_stream_is_zero_for_noise_and_silence():
    rng = np.random.default_rng(0)
    wav = torch.tensor(np.stack([0.3 * rng.standard_normal(SR), np.zeros(SR), 1e-5 * harmonic(300.0)]),
                       dtype=torch.float32)
    codes = S.pitch_codes(wav)
    assert (codes[0] == 0).float().mean() > 0.95  # white noise has no period
    assert (codes[1:] == 0).all()  # silence, and a tone at -100 dBFS
    assert int(S.pitch_codes(torch.tensor(harmonic(S.PITCH_MAX_HZ * 0.99, partials=(1.0,)),
                                          dtype=torch.float32)[None]).max()) == S.PITCH_SEMITONES


def test_the_built_in_default_fits_the_stand_in_on_its_corpus():
    cfg = D.DataConfig(sources=None, codec=S.NAME, crop_seconds=1.0, batch_size=2, num_workers=0,
                       synthetic_clips=4, seed=3)
    codec = D.frozen_codec(cfg)
    assert isinstance(codec, S.SpectralTargets) and codec.num_streams == S.STREAMS == 8
    assert codec.weights == D.frozen_codec(cfg).weights  # same corpus and seed: same targets (resume)


def test_stand_in_is_refused_where_it_cannot_serve(tmp_path):
    with pytest.raises(SystemExit, match="fitted on the built-in corpus"):
        D.frozen_codec(D.DataConfig(sources=[str(tmp_path)], codec=S.NAME, crop_seconds=1.0, batch_size=2,
                                    num_workers=0))
    with pytest.raises(SystemExit, match="no EnCodec encoder for the ec front end"):
        pretrain.main(["--out", str(tmp_path / "run"), "--codec", S.NAME, "--front-end", "ec", "--max-steps", "1"])
    with pytest.raises(SystemExit) as exit_info:  # AudioFormer's input is the codec itself
        pretrain.main(["--model", "audioformer", "--out", str(tmp_path / "af"), "--codec", S.NAME])
    assert exit_info.value.code == 2


def test_the_stand_in_says_so_when_the_published_weights_are_there(tmp_path, monkeypatch, caplog):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "encodec_24khz-d7cc33bc.th").write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cfg = D.DataConfig(sources=None, codec=S.NAME, crop_seconds=1.0, batch_size=2, num_workers=0, synthetic_clips=4)
    with caplog.at_level("INFO", logger="training.data"):
        D.frozen_codec(cfg)
    assert "stand-in for EnCodec's codes" in caplog.text
    assert "published EnCodec weights are on this machine" in caplog.text and "--codec pretrained" in caplog.text
