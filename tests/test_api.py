"""The HEAR API: shapes, timestamps, chunking of long audio, layer choice, precision, bad input."""
import math

import pytest
import torch

import hear_codec
from conftest import noise


@pytest.fixture(scope="module")
def mel_model(tiny_checkpoints):
    return hear_codec.load_model(tiny_checkpoints["mel256"])


@pytest.fixture(scope="module")
def ec_model(tiny_checkpoints):
    return hear_codec.load_model(tiny_checkpoints["ec"])


def test_attributes_and_shapes(mel_model, ec_model):
    for model, frames in ((mel_model, 149), (ec_model, 150)):
        assert model.sample_rate == 48000
        assert model.scene_embedding_size == model.timestamp_embedding_size == 64
        emb, ts = hear_codec.get_timestamp_embeddings(noise(3, 2.0, 48000), model)
        assert emb.shape == (3, frames, 64) and ts.shape == (3, frames)
        assert emb.dtype == ts.dtype == torch.float32
        scene = hear_codec.get_scene_embeddings(noise(3, 2.0, 48000), model)
        assert scene.shape == (3, 64) and scene.dtype == torch.float32
        assert torch.allclose(scene, emb.mean(dim=1), atol=1e-6)


def test_timestamps_are_frame_centres_in_ms(mel_model, ec_model):
    _, ts = hear_codec.get_timestamp_embeddings(noise(1, 1.0, 48000), mel_model)
    k = torch.arange(ts.shape[1], dtype=torch.float64)
    # mel frame k covers 24 kHz samples [318 k, 318 k + 637)
    assert torch.allclose(ts[0].double(), (318 * k + 637 / 2) / 24, atol=1e-3)
    _, ts = hear_codec.get_timestamp_embeddings(noise(1, 1.0, 48000), ec_model)
    k = torch.arange(ts.shape[1], dtype=torch.float64)
    assert torch.allclose(ts[0].double(), (320 * k + 160) / 24, atol=1e-3)  # EnCodec frame k: [320 k, 320 k + 320)


def _local_features_model(model):
    """Make the model's 'embedding' its per-frame input features, which depend on the frame's own
    samples only: then any chunking error (wrong offset, wrong stitching) shows as a mismatch."""
    inner = model.model
    model.model.embed_layers = lambda wav, padding_mask=None: [inner.input_proj(inner.input_features(wav))]
    model.layer = 0
    return model


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_chunked_long_clip_aligns_with_frame_grid(tiny_checkpoints, sample_rate):
    model = _local_features_model(hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=sample_rate))
    audio = noise(2, 13.0, sample_rate)
    assert len(model.chunk_plan(13 * 24000)) > 2
    emb, ts = hear_codec.get_timestamp_embeddings(audio, model)
    wav24 = hear_codec.codec.resample(audio, sample_rate, 24000)
    whole = model.model.input_proj(model.model.input_features(wav24))  # one pass, no chunks
    assert emb.shape == whole.shape
    assert torch.allclose(emb, whole, atol=1e-5)
    steps = torch.diff(ts[0].double())
    assert (steps - 318 / 24).abs().max() < 1e-3  # regular to well under 1 ms


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_click_lands_at_its_timestamp(tiny_checkpoints, sample_rate):
    """A click at time t peaks in the frame whose window centre is nearest to t, and that frame's
    timestamp is within half a hop of t: a one-frame shift anywhere would put it >= 6.6 ms off."""
    model = hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=sample_rate)
    inner = model.model
    inner.embed_layers = lambda wav, padding_mask=None: [inner.front_end.fbank(wav).exp().sum(-1, keepdim=True)]
    model.layer = 0
    for click_s in (0.5, 5.0, 7.31, 11.9):  # 5.0 s and 7.31 s lie in chunk overlaps of a 13 s clip
        audio = torch.zeros(1, 13 * sample_rate)
        audio[0, round(click_s * sample_rate)] = 1.0
        energy, ts = hear_codec.get_timestamp_embeddings(audio, model)
        peak = int(energy[0, :, 0].argmax())
        click24 = click_s * 24000
        nearest = round((click24 - 637 / 2) / 318)  # frame k spans [318 k, 318 k + 637)
        assert peak == nearest, (click_s, peak, nearest)
        assert abs(float(ts[0, peak]) - 1000 * click_s) <= 318 / 24 / 2 + 0.05


def test_chunked_equals_unchunked_inside_one_chunk(mel_model, ec_model):
    for model in (mel_model, ec_model):
        audio = noise(2, 3.5, 48000)
        emb, _ = hear_codec.get_timestamp_embeddings(audio, model)
        direct = model.model.embed_layers(hear_codec.codec.resample(audio, 48000, 24000))[-1]
        assert torch.allclose(emb, direct, atol=1e-5)


def test_overlap_keeps_long_clip_close_to_unchunked(mel_model):
    """Every frame keeps >= 0.5 s of context on each side of a cut: outputs stay close."""
    audio = noise(1, 6.0, 48000)
    emb, _ = hear_codec.get_timestamp_embeddings(audio, mel_model)
    direct = mel_model.model.embed_layers(hear_codec.codec.resample(audio, 48000, 24000))[-1]
    cos = torch.nn.functional.cosine_similarity(emb, direct, dim=-1)
    assert cos.min() > 0.95


def test_memory_is_bounded_by_the_chunk_batch(tiny_checkpoints):
    model = hear_codec.load_model(tiny_checkpoints["mel256"], batch_size=2, sample_rate=16000)
    calls = []
    original = model.model.embed_layers

    def spy(wav, padding_mask=None):
        calls.append(tuple(wav.shape))
        return original(wav, padding_mask)

    model.model.embed_layers = spy
    audio = noise(3, 60.0, 16000)  # 3 one-minute clips
    emb, ts = hear_codec.get_timestamp_embeddings(audio, model)
    assert emb.shape[1] == model.model.num_frames(60 * 24000)
    assert max(b for b, _ in calls) <= 2 and max(s for _, s in calls) <= model.model.chunk_samples
    assert torch.isfinite(emb).all()


def test_twenty_minute_clip(tiny_checkpoints):
    """20 minutes at 16 kHz: the chunk plan covers every frame once and timestamps reach the end.
    (The transformer is replaced by a cheap stand-in: the arithmetic is what is under test here,
    the real forward over chunks is covered above.)"""
    model = hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=16000, batch_size=64)
    inner = model.model
    inner.embed_layers = lambda wav, padding_mask=None: [  # each frame's index inside its chunk
        torch.arange(inner.num_frames(wav.shape[1]), dtype=torch.float32)[None, :, None].expand(wav.shape[0], -1, 64)]
    model.layer = 0
    audio = torch.zeros(1, 20 * 60 * 16000)
    emb, ts = hear_codec.get_timestamp_embeddings(audio, model)
    total = inner.num_frames(20 * 60 * 24000)
    assert emb.shape == (1, total, 64) and ts.shape == (1, total)
    # each frame came from a chunk in which it has local index emb; chunk starts are on the frame grid
    starts = {first for _, _, first, _, _ in model.chunk_plan(20 * 60 * 24000)}
    local = emb[0, :, 0].long()
    assert all(int(k - j) in starts for k, j in zip(torch.arange(total).tolist(), local.tolist()))
    assert abs(float(ts[0, -1]) - 20 * 60 * 1000) < 20


def test_layer_choice(tiny_checkpoints):
    audio = noise(1, 1.0, 48000)
    outputs = [hear_codec.get_scene_embeddings(audio, hear_codec.load_model(tiny_checkpoints["mel256"], layer=i))
               for i in (0, 1, -1)]
    assert not torch.allclose(outputs[0], outputs[1])
    assert torch.equal(outputs[1], outputs[2])
    with pytest.raises(ValueError, match="layer must be in"):
        hear_codec.load_model(tiny_checkpoints["mel256"], layer=2)


def test_chunk_context_sets_the_overlap(tiny_checkpoints):
    plan = hear_codec.load_model(tiny_checkpoints["mel256"], chunk_context=1.0).chunk_plan(13 * 24000)
    assert len(plan) > 2
    for i, (_, _, first, own_from, own_to) in enumerate(plan):  # 1 s = 75 mel frames each side of a cut
        assert i == 0 or own_from - first >= 75
        assert i == len(plan) - 1 or first + 300 - own_to >= 75
    with pytest.raises(ValueError, match="chunk_context"):
        hear_codec.load_model(tiny_checkpoints["mel256"], chunk_context=2.0)


def test_bf16_stays_close_to_fp32(tiny_checkpoints):
    audio = noise(2, 2.0, 48000)
    fp32 = hear_codec.get_timestamp_embeddings(audio, hear_codec.load_model(tiny_checkpoints["mel256"]))[0]
    bf16 = hear_codec.get_timestamp_embeddings(
        audio, hear_codec.load_model(tiny_checkpoints["mel256"], precision="bf16"))[0]
    assert bf16.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(fp32, bf16, dim=-1).min() > 0.999


def test_short_audio_gives_one_frame(mel_model, ec_model):
    for model in (mel_model, ec_model):
        emb, ts = hear_codec.get_timestamp_embeddings(noise(2, 0.005, 48000), model)  # 5 ms
        assert emb.shape == (2, 1, 64) and torch.isfinite(emb).all()


@pytest.mark.parametrize("audio, error, match", [
    (torch.zeros(48000), ValueError, "n_sounds, n_samples"),
    (torch.zeros(1, 1, 48000), ValueError, "n_sounds, n_samples"),
    (torch.zeros(1, 48000, dtype=torch.int16), TypeError, "floating point"),
    (torch.zeros(0, 48000), ValueError, "empty"),
    (torch.zeros(2, 0), ValueError, "zero length"),
    (torch.full((1, 4800), float("nan")), ValueError, "NaN"),
    (torch.tensor([[0.0, float("inf")] * 100]), ValueError, "Inf"),
    ([[0.0] * 100], TypeError, "torch.Tensor"),
])
def test_bad_input(mel_model, audio, error, match):
    with pytest.raises(error, match=match):
        hear_codec.get_timestamp_embeddings(audio, mel_model)
    with pytest.raises(error, match=match):
        hear_codec.get_scene_embeddings(audio, mel_model)


def test_options_are_checked_and_random_weights_are_explicit(tiny_checkpoints):
    with pytest.raises(ValueError, match="sample_rate must be one of"):
        hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=24000)
    with pytest.raises(ValueError, match="precision"):
        hear_codec.load_model(tiny_checkpoints["mel256"], precision="fp8")
    with pytest.raises(ValueError, match="random_weights must look like"):
        hear_codec.load_model(random_weights="tiny")
    with pytest.raises(ValueError, match="model_file_path.*random_weights"):
        hear_codec.load_model(tiny_checkpoints["mel256"], random_weights="encodecmae-tiny-mel256")
