"""EnCodec front end: shapes, the offline codec's codebooks, clear errors offline."""
import pytest
import torch

from hear_codec import codec as codec_lib


@pytest.fixture(scope="module")
def offline_codec():
    return codec_lib.load_codec("offline", seed=0)


def test_shapes_and_frame_rate(offline_codec, rng):
    wav = torch.rand(2, 24000 + 5, generator=rng) * 2 - 1
    features = offline_codec.encode_features(wav)
    assert features.shape == (2, 76, 128)  # ceil(24005 / 320) frames at 75 Hz
    codes = offline_codec.encode_codes(wav, n_q=codec_lib.codebooks_for_bandwidth(6.0))
    assert codes.shape == (2, 8, 76) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 1024


def test_offline_codebooks_are_not_degenerate(offline_codec, rng):
    wav = codec_lib._synthetic_audio(2, 48000, rng)
    codes = offline_codec.encode_codes(wav, n_q=16)
    for stream in range(16):  # pretrained=False would give one constant code per stream
        assert len(torch.unique(codes[:, stream])) > 20, stream


def test_offline_codec_is_deterministic_and_frozen(offline_codec, rng):
    again = codec_lib.load_codec("offline", seed=0)
    wav = torch.rand(1, 4800, generator=rng) - 0.5
    assert torch.equal(offline_codec.encode_codes(wav), again.encode_codes(wav))
    offline_codec.train()
    assert not offline_codec.training and not offline_codec.quantizer.training  # codebooks never EMA-update
    assert not any(p.requires_grad for p in offline_codec.parameters())


def test_pretrained_weights_missing_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(codec_lib, "PRETRAINED_URL", "http://127.0.0.1:9/encodec_24khz-d7cc33bc.th")
    with pytest.raises(codec_lib.CodecWeightsUnavailable, match="encodec_24khz-d7cc33bc.th") as err:
        codec_lib.load_codec("pretrained")
    assert str(tmp_path) in str(err.value) and "offline" in str(err.value)
    with pytest.raises(codec_lib.CodecWeightsUnavailable, match="not found"):
        codec_lib.load_codec("pretrained", path=tmp_path / "missing.th")
    bad = tmp_path / "bad.th"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(codec_lib.CodecWeightsUnavailable, match="not a readable"):
        codec_lib.load_codec("pretrained", path=bad)


def test_bad_bandwidth_and_audio(offline_codec):
    with pytest.raises(ValueError, match="bandwidth"):
        codec_lib.codebooks_for_bandwidth(5.0)
    with pytest.raises(ValueError, match="batch, samples"):
        offline_codec.encode_features(torch.zeros(100))
    with pytest.raises(TypeError, match="floating"):
        offline_codec.encode_features(torch.zeros(1, 100, dtype=torch.int16))

