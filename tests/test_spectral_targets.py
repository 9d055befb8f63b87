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


@pytest.fixture(scope="module")
def stand_in():
    front_end = S.MelBandKMeans(torch.zeros(8, 1, 32)).front_end
    frames = front_end(tones([110 * 2 ** (i / 4) for i in range(24)])).reshape(-1, 256)
    return S.MelBandKMeans.fit(frames, bands=8, clusters=16, seed=0)


def test_codes_have_the_codec_layout_and_the_weights_name_hashes_the_centroids(stand_in):
    codes = stand_in.encode_codes(tones([300, 500]), n_q=8)
    assert codes.shape == (2, 8, 1 + (SR - 637) // 318) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 16
    assert torch.equal(stand_in.encode_codes(tones([300, 500]), n_q=3), codes[:, :3])
    assert stand_in.weights.startswith("mel-kmeans-16x8-")
    other = S.MelBandKMeans(stand_in.centroids + 1e-3)
    assert other.weights != stand_in.weights  # cached targets of other centroids are not reused
    with pytest.raises(ValueError, match="n_q must be in 1..8"):
        stand_in.encode_codes(tones([300]), n_q=9)


def test_fit_is_deterministic_and_caps_clusters_at_the_frames():
    frames = torch.randn(40, 256)
    a = S.MelBandKMeans.fit(frames, bands=8, clusters=8, seed=1)
    b = S.MelBandKMeans.fit(frames, bands=8, clusters=8, seed=1)
    assert torch.equal(a.centroids, b.centroids)
    assert S.MelBandKMeans.fit(frames, bands=8, clusters=64).centroids.shape == (8, 40, 32)


def test_codes_follow_the_spectrum_not_the_waveform_phase(stand_in):
    """The point of the stand-in: the codes of a tone at any pitch (here off the 75 Hz grid) are
    the same when it starts a few samples later, unlike the offline codec's (tests/test_data.py)."""
    freqs = [437.0, 1230.0, 173.0]
    codes = stand_in.encode_codes(tones(freqs))[..., 2:-2]
    shifted = stand_in.encode_codes(tones(freqs, delay=5))[..., 2:-2]
    assert (codes == shifted).float().mean() > 0.95
    # ...and they do tell the pitches apart (the low bands resolve the partial)
    assert not torch.equal(codes[0, :3], codes[1, :3]) and not torch.equal(codes[0, :3], codes[2, :3])


def test_the_built_in_default_fits_the_stand_in_on_its_corpus():
    cfg = D.DataConfig(sources=None, codec=S.NAME, crop_seconds=1.0, batch_size=2, num_workers=0,
                       synthetic_clips=4, seed=3)
    codec = D.frozen_codec(cfg)
    assert isinstance(codec, S.MelBandKMeans) and codec.centroids.shape[0] == S.BANDS
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
